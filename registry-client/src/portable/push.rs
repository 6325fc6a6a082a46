//! Pushing ([`RepositoryClient::push`](crate::RepositoryClient::push)): any
//! [`ImageSource`] into a registry, one resolved from another registry or one
//! read from disk ([`LocalImage`]). The work is [`write`](crate::write)'s.

pub use crate::portable::image::{ImageSource, LocalImage};
pub use crate::portable::write::{CopiedBlob, CopyOptions, CopyResult, DEFAULT_COPY_CONCURRENCY};
