//! The transport's settings, filled by the client builder.

use std::collections::HashSet;
use std::time::Duration;

use super::circuit::CircuitBreakerConfig;
use super::retry::RetryConfig;

/// Connection settings, filled by the client builder.
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub user_agent: String,
    pub retry: RetryConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    /// Every host is insecure (plain HTTP, no TLS verification).
    pub insecure_all: bool,
    /// Hosts (`host` or `host:port`) allowed plain HTTP and unverified TLS.
    pub insecure_hosts: HashSet<String>,
    /// Domains (`.example.com`) whose subdomains are allowed the same.
    pub insecure_domains: Vec<String>,
}
