//! The aws provider's tests, one binary: the conformance suite against a registry that takes
//! ECR's credentials from moto, and the provider against a fake ECR API (hosts, refresh, the
//! standard AWS chain from the environment, logs that never show a token).

mod chain;
mod conformance;
mod hosts;
mod logs;
mod refresh;
