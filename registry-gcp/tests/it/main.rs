//! The gcp provider's tests, one binary: the conformance suite with tokens from a fake Google
//! OAuth2 endpoint, and Application Default Credentials from a file, the environment and a
//! fake metadata server.

mod adc_env;
mod common;
mod conformance;
mod metadata_server;
mod provider;
