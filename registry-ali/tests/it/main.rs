//! The ali provider's tests, one binary: the conformance suite with ACR's temporary user from
//! a fake signed `cr` API, Enterprise and Personal editions, hosts, failures, and the
//! AccessKey from the environment.

mod common;
mod conformance;
mod editions;
mod env;
mod failures;
mod hosts;
