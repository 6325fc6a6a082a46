//! The conformance crate's integration tests, one binary: the harness itself, the suite for the
//! `oci` provider, and the SDK end to end against real registries and real consumers.

mod artifact_entries;
mod consumers;
mod copy;
mod fault_proxy;
mod harness;
mod layer_tars;
mod mirror_configs;
mod mirrors;
mod nested_index;
mod oci;
mod oci_credentials;
mod referrers;
mod tls;
