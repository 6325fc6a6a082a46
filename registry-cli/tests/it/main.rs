//! The `mcreg` command line, run as a user runs it: the built binary against real registries
//! and real clients, isolated from the user's configuration (one test binary for the crate).

mod commands;
mod common;
mod copy;
mod credential_helper;
mod errors;
mod mirrors;
mod referrers;
mod serve;
