//! The driver layer: what a provider supplies ([`AbstractRegistry`]), how
//! providers are registered and found, the generic OCI provider, and the
//! shared code every provider stands on: authentication and the transport.

pub mod abstract_registry;
pub mod auth;
pub mod cloud_api;
pub mod oci;
pub(crate) mod protocol;
pub(crate) mod provider_options;
pub mod registration;
pub mod sources;
pub(crate) mod transport;

pub use abstract_registry::{AbstractRegistry, AuthRequest, ProviderConfig};
pub use registration::{
    HostMatch, ProviderFactory, ProviderRecord, provider, provider_for_host, providers, register_provider,
};
