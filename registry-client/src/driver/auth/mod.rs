//! Authentication: challenges, credentials, docker's config, bearer tokens.

pub mod challenge;
pub mod credential_helper;
pub mod credentials;
pub mod docker_config;
pub mod expiring;
pub mod token;

pub use challenge::{AuthScheme, Challenge};
pub use credentials::Credentials;
pub use docker_config::DockerConfig;
pub use expiring::{Expiring, ExpiringCredentials, RefreshPolicy};
