#![doc = include_str!("../README.md")]

//! The crate in layers, each a folder that imports only from those below it:
//! [`model`] (the shared vocabulary) and [`error`] at the bottom; [`driver`]
//! (providers, authentication, the transport, mirror routing and the registry
//! protocol); [`formats`] (images on disk) and [`config`] (the files users
//! already have); and the portable layer on top: [`RepositoryClient`], [`pull`]
//! and [`push`].

pub mod config;
pub mod driver;
pub mod error;
pub mod formats;
pub mod model;
mod portable;

pub use driver::auth::{Challenge, Credentials};
pub use driver::protocol::blobs::{
    BlobHead, BlobPush, BlobSink, BlobStream, FetchedBlob, GetBlobOptions, RestartRefused,
};
pub use driver::protocol::cache::{DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL};
pub use driver::sources::{Mirror, RegistrySources, Serves};
pub use driver::transport::circuit::{CIRCUIT_BREAKER_LOG_TARGET, CircuitBreakerConfig};
pub use driver::transport::retry::RetryConfig;
pub use driver::{
    AbstractRegistry, AuthRequest, HostMatch, ProviderConfig, ProviderRecord, register_provider,
};
pub use error::{Error, ErrorKind, ReferencePart, Result};
pub use model::events::{Progress, ProgressEvent, SkipReason};
pub use model::manifest::{
    ImageConfig, Manifest, ManifestDescriptor, ManifestKind, RawManifest, media_types,
};
pub use model::platform::Platform;
pub use model::reference::ImageReference;
pub use model::referrers::{Discovery, Referrers};
pub use model::tags::TagList;
pub use portable::client::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, RepositoryClient, RepositoryClientBuilder,
};
pub use portable::{image, pull, push, referrers, write};

/// Re-exported so provider crates can `inventory::submit!` without their own dependency.
#[doc(hidden)]
pub use inventory;
