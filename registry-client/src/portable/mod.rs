//! The portable layer: what users call. [`RepositoryClient`](client::RepositoryClient)
//! and its builder, resolving and writing images ([`pull`]), and pushing them
//! ([`push`]).

pub(crate) mod client;
pub mod pull;
pub mod push;
