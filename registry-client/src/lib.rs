#![doc = include_str!("../README.md")]

pub mod auth;
pub mod driver;
pub mod error;
pub mod oci;
pub mod reference;

pub use auth::{Challenge, Credentials};
pub use driver::{AbstractRegistry, AuthRequest, ProviderConfig, ProviderRecord, register_provider};
pub use error::{Error, Result};
pub use reference::ImageReference;

#[doc(hidden)]
pub use inventory as __inventory;
