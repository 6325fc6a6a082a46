//! The portable layer: what users call. Images to copy ([`image`]: an
//! [`ImageSource`](image::ImageSource) from a registry or from disk), one
//! routine writing any of them anywhere ([`write`]), and on top
//! [`RepositoryClient`](client::RepositoryClient) with its builder, and the
//! pull and push entry points ([`pull`], [`push`]); a manifest's tree of
//! [`referrers`].

pub(crate) mod client;
pub mod image;
pub mod pull;
pub mod push;
pub mod referrers;
pub mod write;
