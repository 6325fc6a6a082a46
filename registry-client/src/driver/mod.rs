//! The driver layer: what a provider supplies ([`AbstractRegistry`]), how
//! providers are registered and found, and the generic OCI provider.

pub mod abstract_registry;
pub mod oci;
pub mod registration;

pub use abstract_registry::{AbstractRegistry, AuthRequest, ProviderConfig};
pub use registration::{
    HostMatch, ProviderFactory, ProviderRecord, provider, provider_for_host, providers, register_provider,
};
