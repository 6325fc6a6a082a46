//! Real-registry test harness and conformance suite.

pub mod harness;
pub mod suite;
