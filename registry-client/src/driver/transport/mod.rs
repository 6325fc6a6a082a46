//! HTTP transport: TLS, timeouts, redirects, retries, the circuit breaker and auth.

mod auth;
pub mod circuit;
mod config;
mod http;
mod request;
pub mod retry;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use reqwest::Response;
use url::Url;

pub(crate) use config::TransportConfig;
pub(crate) use request::{RegistryRequest, RetryObserver, accept_header, host_port, is_loopback};

use crate::driver::abstract_registry::AbstractRegistry;
use crate::error::{Error, RateLimit, RegistryError, Resource, Result};
use auth::{Auth, Authenticator};
use circuit::CircuitBreakers;
pub(crate) use http::map_reqwest_error;
use http::{HttpClients, is_certificate_error, read_limited};
use retry::{Failure, RetryConfig, is_retryable_status, parse_retry_after};

const MAX_REDIRECTS: usize = 10;
/// Error bodies are small JSON; never read more than this of one.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Sends registry requests. Shared by every clone of a client.
#[derive(Debug)]
pub(crate) struct Transport {
    http: HttpClients,
    breakers: CircuitBreakers,
    auth: Authenticator,
}

impl Transport {
    pub(crate) fn new(config: TransportConfig, provider: Arc<dyn AbstractRegistry>) -> Result<Self> {
        Ok(Transport {
            breakers: CircuitBreakers::new(config.circuit_breaker.clone()),
            auth: Authenticator::new(provider),
            http: HttpClients::new(config)?,
        })
    }

    pub(crate) fn retry_config(&self) -> &RetryConfig {
        &self.http.config().retry
    }

    /// Whether `url` may be used: HTTPS always, plain HTTP only for loopback
    /// and insecure hosts.
    pub(crate) fn check_scheme(&self, url: &Url) -> Result<()> {
        self.http.check_scheme(url)
    }

    pub(crate) fn is_insecure(&self, url: &Url) -> bool {
        self.http.is_insecure(url)
    }

    /// Sends `request` and returns a successful (2xx) response. Error
    /// statuses become [`Error`]s; transient failures are retried.
    pub(crate) async fn send(&self, request: &RegistryRequest) -> Result<Response> {
        self.send_then(request, |r| async { Ok(r) }).await
    }

    /// Sends `request` and reads the whole body (at most `limit` bytes).
    /// A body that breaks off is retried like a failed request.
    pub(crate) async fn send_and_read(
        &self,
        request: &RegistryRequest,
        limit: usize,
    ) -> Result<(HeaderMap, Bytes)> {
        let host = host_port(&request.url);
        self.send_then(request, |response| {
            let host = host.clone();
            async move {
                let headers = response.headers().clone();
                let body = read_limited(response, limit, &host).await?;
                Ok((headers, body))
            }
        })
        .await
    }

    /// Sends `request` once with `body`, a stream that cannot be sent again: with the
    /// credentials the request's scope already has (a request before it authenticated),
    /// no retry, no redirect. What failed is for the caller to start over.
    pub(crate) async fn send_streaming(
        &self,
        request: &RegistryRequest,
        body: reqwest::Body,
    ) -> Result<Response> {
        self.check_scheme(&request.url)?;
        let host = host_port(&request.url);
        self.breakers.check(&host)?;
        let auth = self
            .auth
            .prepare(request, &self.http)
            .await
            .map_err(Failure::into_error)?;
        let mut builder = self
            .http
            .client_for(&request.url)?
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone())
            .body(body);
        if let Some(value) = auth.header() {
            builder = builder.header(header::AUTHORIZATION, value.clone());
        }
        let response = builder.send().await.map_err(|e| map_reqwest_error(e, &host))?;
        self.check_status(request, response)
            .await
            .map_err(Failure::into_error)
    }

    async fn send_then<T, F, Fut>(&self, request: &RegistryRequest, then: F) -> Result<T>
    where
        F: Fn(Response) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.check_scheme(&request.url)?;
        let max_retries = if request.fail_fast {
            0
        } else {
            self.http.config().retry.max_retries
        };
        self.retrying(request, max_retries, || async {
            let response = self.authenticated(request).await?;
            then(response).await
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails for good, or retries run out;
    /// within the request's deadline, if it has one. An attempt the deadline
    /// cuts short counts as a timeout against the host's circuit breaker.
    async fn retrying<T, F, Fut>(&self, request: &RegistryRequest, max_retries: u32, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let retry = &self.http.config().retry;
        let url = &request.url;
        let timed_out = || Error::Timeout { host: host_port(url) };
        let mut retries = 0;
        loop {
            let outcome = match request.deadline {
                Some(deadline) if Instant::now() >= deadline => return Err(timed_out()),
                Some(deadline) => match tokio::time::timeout_at(deadline.into(), attempt()).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        self.breakers.record_failure(&host_port(url));
                        return Err(timed_out());
                    }
                },
                None => attempt().await,
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Transient { error, .. }) if retries >= max_retries => {
                    return Err(error);
                }
                Err(Failure::Transient { error, wait }) => {
                    let wait = wait.map_or_else(|| retry.backoff(retries), |w| retry.server_wait(w));
                    // No time for another attempt after the wait: this error is the answer.
                    if request.deadline.is_some_and(|d| Instant::now() + wait >= d) {
                        return Err(error);
                    }
                    retries += 1;
                    if let Some(observer) = &request.on_retry {
                        (observer.0)(retries, &error);
                    }
                    tracing::info!(
                        host = %host_port(url),
                        path = url.path(),
                        retry = retries,
                        wait_ms = wait.as_millis() as u64,
                        "retrying: {error}"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt, authenticating on a 401: with the token or credentials
    /// we have, and once more with fresh ones if the registry refuses them.
    async fn authenticated(&self, request: &RegistryRequest) -> Result<Response, Failure> {
        let mut auth = self.auth.prepare(request, &self.http).await?;
        let mut answered_challenge = false;
        loop {
            let response = self.follow_redirects(request, &auth).await?;
            if response.status() == StatusCode::UNAUTHORIZED && !answered_challenge {
                answered_challenge = true;
                if let Some(fresh) = self
                    .auth
                    .answer(request, response.headers(), &auth, &self.http)
                    .await?
                {
                    auth = fresh;
                    continue;
                }
            }
            return self.check_status(request, response).await;
        }
    }

    /// Sends the request, following redirects by hand so that the
    /// `Authorization` header only ever goes to the registry's own origin.
    async fn follow_redirects(&self, request: &RegistryRequest, auth: &Auth) -> Result<Response, Failure> {
        let origin = request.url.origin();
        let mut url = request.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let host = host_port(&url);
            self.breakers.check(&host)?;
            let mut builder = self
                .http
                .client_for(&url)?
                .request(request.method.clone(), url.clone())
                .headers(request.headers.clone());
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            if url.origin() == origin
                && let Some(value) = auth.header()
            {
                builder = builder.header(header::AUTHORIZATION, value.clone());
            }
            let response = match builder.send().await {
                Ok(response) => response,
                // A certificate the client refuses will be refused again:
                // not worth a retry, and no sign the host is down.
                Err(e) if is_certificate_error(&e) => {
                    return Err(Failure::Fatal(map_reqwest_error(e, &host)));
                }
                Err(e) => {
                    self.breakers.record_failure(&host);
                    return Err(Failure::Transient {
                        error: map_reqwest_error(e, &host),
                        wait: None,
                    });
                }
            };
            tracing::debug!(
                method = %request.method,
                host = %host,
                path = url.path(),
                status = response.status().as_u16(),
                version = ?response.version(),
                "response"
            );
            // A 429 says nothing about the host's health: it is up, just busy.
            match response.status().as_u16() {
                500..=599 => self.breakers.record_failure(&host),
                429 => {}
                _ => self.breakers.record_success(&host),
            }
            let Some(next) = redirect_target(&url, &response)? else {
                return Ok(response);
            };
            self.check_scheme(&next)?;
            tracing::debug!(from = %host, to = %host_port(&next), "following redirect");
            url = next;
        }
        Err(Failure::Fatal(Error::invalid_response(
            &host_port(&request.url),
            format!("more than {MAX_REDIRECTS} redirects"),
        )))
    }

    /// Maps an error status to an [`Error`], deciding whether it is worth another try.
    async fn check_status(&self, request: &RegistryRequest, response: Response) -> Result<Response, Failure> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let host = host_port(response.url());
        let headers = response.headers().clone();
        let body = read_limited(response, MAX_ERROR_BODY, &host)
            .await
            .unwrap_or_default();
        let errors = RegistryError::parse_body(&body);
        let message = errors.first().map(|e| e.message.clone()).unwrap_or_default();
        let error = match status.as_u16() {
            401 => Error::Unauthorized { host, message },
            403 => Error::Denied { host, message },
            404 if request.not_found.is_some() => {
                let (what, name, reference) =
                    request
                        .not_found
                        .clone()
                        .unwrap_or((Resource::Registry, String::new(), String::new()));
                Error::NotFound {
                    what,
                    name,
                    reference,
                }
            }
            429 => Error::RateLimited {
                host,
                retry_after: retry_after(&headers),
                limit: RateLimit::from_headers(&headers),
            },
            code => Error::Registry {
                host,
                status: code,
                errors,
            },
        };
        if is_retryable_status(status.as_u16()) {
            Err(Failure::Transient {
                error,
                wait: retry_after(&headers),
            })
        } else {
            Err(Failure::Fatal(error))
        }
    }
}

pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// The `Location` of a redirect, resolved against the request URL.
fn redirect_target(url: &Url, response: &Response) -> Result<Option<Url>> {
    if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    let host = host_port(url);
    let location = response
        .headers()
        .get(header::LOCATION)
        .ok_or_else(|| Error::invalid_response(&host, "redirect without a Location header"))?;
    let location = location
        .to_str()
        .map_err(|_| Error::invalid_response(&host, "redirect Location is not text"))?;
    url.join(location)
        .map(Some)
        .map_err(|e| Error::invalid_response(&host, format!("invalid redirect Location: {e}")))
}
