//! The HTTP clients (one verifying TLS, one not, chosen per host), which
//! schemes a host may use, and reading bounded bodies.

use std::sync::OnceLock;

use bytes::Bytes;
use reqwest::Response;
use url::Url;

use super::config::TransportConfig;
use super::request::{host_port, is_loopback};
use super::retry::Failure;
use crate::error::{Error, Result};

/// The HTTP clients of one transport.
#[derive(Debug)]
pub(super) struct HttpClients {
    /// Verifies TLS against the platform's roots; built on first HTTPS use,
    /// because loading the certificate store is most of a warm pull's start-up.
    secure: OnceLock<Result<reqwest::Client, String>>,
    /// No TLS verification: for insecure hosts, and for plain HTTP where it is moot.
    insecure: reqwest::Client,
    config: TransportConfig,
}

impl HttpClients {
    pub(super) fn new(config: TransportConfig) -> Result<Self> {
        Ok(HttpClients {
            secure: OnceLock::new(),
            insecure: http_client(&config, true).map_err(Error::InvalidConfig)?,
            config,
        })
    }

    pub(super) fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The HTTP client for `url`: TLS verification off only for insecure hosts.
    pub(super) fn client_for(&self, url: &Url) -> Result<&reqwest::Client> {
        if url.scheme() == "http" || self.is_insecure(url) {
            return Ok(&self.insecure);
        }
        self.secure
            .get_or_init(|| http_client(&self.config, false))
            .as_ref()
            .map_err(|e| Error::InvalidConfig(e.clone()))
    }

    /// Whether `url` may be used: HTTPS always, plain HTTP only for loopback
    /// and insecure hosts.
    pub(crate) fn check_scheme(&self, url: &Url) -> Result<()> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.is_insecure(url) || is_loopback(url) => Ok(()),
            "http" => Err(Error::InvalidConfig(format!(
                "refusing plain HTTP to {}: mark the registry insecure to allow it",
                host_port(url)
            ))),
            other => Err(Error::InvalidConfig(format!(
                "unsupported URL scheme {other:?} for {}",
                host_port(url)
            ))),
        }
    }

    pub(crate) fn is_insecure(&self, url: &Url) -> bool {
        self.config.insecure_all
            || self.config.insecure_hosts.contains(&host_port(url))
            || url.host_str().is_some_and(|h| {
                self.config.insecure_hosts.contains(h)
                    || self
                        .config
                        .insecure_domains
                        .iter()
                        .any(|d| h.ends_with(d.as_str()))
            })
    }
}

/// Reads a body up to `limit` bytes; a broken body is a transient failure.
pub(super) async fn read_limited(mut response: Response, limit: usize, host: &str) -> Result<Bytes, Failure> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Failure::Fatal(Error::invalid_response(
            host,
            format!("response larger than the {limit} byte limit"),
        )));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Failure::Fatal(Error::invalid_response(
                        host,
                        format!("response larger than the {limit} byte limit"),
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.into()),
            Err(e) => {
                return Err(Failure::Transient {
                    error: map_reqwest_error(e, host),
                    wait: None,
                });
            }
        }
    }
}

/// A reqwest error as ours, without its URL (a presigned URL is a secret).
pub(crate) fn map_reqwest_error(error: reqwest::Error, host: &str) -> Error {
    let host = host.to_owned();
    if error.is_timeout() {
        Error::Timeout { host }
    } else {
        Error::Connection {
            host,
            source: Box::new(error.without_url()),
        }
    }
}

fn http_client(config: &TransportConfig, accept_invalid_certs: bool) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(config.user_agent.clone())
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(accept_invalid_certs)
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// Whether a send failed because the server's TLS certificate was refused.
pub(super) fn is_certificate_error(error: &reqwest::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        // `io::Error::source()` skips the error it wraps; look inside it instead.
        next = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    false
}
