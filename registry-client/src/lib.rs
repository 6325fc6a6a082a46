#![doc = include_str!("../README.md")]

mod client;
pub mod config;
pub mod driver;
pub mod error;
pub mod layer_cache;
pub mod model;
pub mod output;
pub mod pull;
pub mod push;
mod tar_reader;

pub use client::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, RepositoryClient, RepositoryClientBuilder};
pub use driver::auth::{Challenge, Credentials};
pub use driver::protocol::blobs::{BlobHead, BlobPush, BlobSink, FetchedBlob};
pub use driver::protocol::cache::{DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL};
pub use driver::sources::{Mirror, RegistrySources, Serves};
pub use driver::transport::circuit::CircuitBreakerConfig;
pub use driver::transport::retry::RetryConfig;
pub use driver::{
    AbstractRegistry, AuthRequest, HostMatch, ProviderConfig, ProviderRecord, register_provider,
};
pub use error::{Error, Result};
pub use model::events::{Progress, ProgressEvent};
pub use model::manifest::{
    ImageConfig, Manifest, ManifestDescriptor, ManifestKind, RawManifest, media_types,
};
pub use model::platform::Platform;
pub use model::reference::ImageReference;
pub use model::tags::TagList;

/// Re-exported so provider crates can `inventory::submit!` without their own dependency.
#[doc(hidden)]
pub use inventory;
