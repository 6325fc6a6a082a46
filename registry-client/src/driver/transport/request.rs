//! One registry request, described before it is sent, and the URL helpers
//! every request uses.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use url::Url;

use crate::error::{Error, Resource};

/// One request to a registry, described before it is sent (so it can be
/// sent again on a retry or after re-authenticating).
#[derive(Debug, Clone)]
pub(crate) struct RegistryRequest {
    /// The registry as named in the image reference; asked about credentials.
    pub registry: String,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    /// Token scope, e.g. `repository:library/alpine:pull`; `None` for `/v2/`.
    pub scope: Option<String>,
    /// What a 404 means, for the error.
    pub not_found: Option<(Resource, String, String)>,
    /// Told about each retry before its wait (progress reporting).
    pub on_retry: Option<RetryObserver>,
    /// Fail on the first transient error instead of retrying: another
    /// source (a mirror, the registry) is there to try next.
    pub fail_fast: bool,
    /// What an upload sends (kept whole, so that it can be sent again).
    pub body: Option<Bytes>,
    /// When the answer must have come by, across retries (see
    /// [`RepositoryClient::with_deadline`](crate::RepositoryClient::with_deadline)).
    pub deadline: Option<Instant>,
}

/// Called with the retry number and the error being retried.
pub(crate) type RetryFn = dyn Fn(u32, &Error) + Send + Sync;

#[derive(Clone)]
pub(crate) struct RetryObserver(pub Arc<RetryFn>);

impl std::fmt::Debug for RetryObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryObserver")
    }
}

/// `host[:port]` of a URL, as used for breaker and insecure lookups.
pub(crate) fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Docker's rule: loopback registries may speak plain HTTP.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

pub(crate) fn accept_header(media_types: &[&str]) -> HeaderValue {
    HeaderValue::from_str(&media_types.join(", ")).expect("media types are ASCII")
}
