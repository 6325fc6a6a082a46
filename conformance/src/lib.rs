//! Real-registry test harness and conformance suite.
