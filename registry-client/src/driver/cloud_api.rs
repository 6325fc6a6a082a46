//! A provider's calls to its own cloud API (a token or authorization-token
//! service): their answers as the core's errors, and their SDK's TRACE logs
//! kept out. A provider does not retry its calls: it returns these errors,
//! and the client's one retry policy (429 and 5xx with `Retry-After`,
//! timeouts, broken connections) retries the request that needed the
//! credentials, exchange included, as for any registry answer.

use std::future::Future;

use http::HeaderMap;
use tracing::instrument::WithSubscriber as _;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

use crate::driver::transport::{map_reqwest_error, retry_after};
use crate::error::{Error, RateLimit, RegistryError};

/// The error for a failed answer of `host`: 401 [`Error::Unauthorized`],
/// 403 [`Error::Denied`], 429 [`Error::RateLimited`] (with its `Retry-After`),
/// anything else [`Error::Registry`] with the API's `code` and `message`
/// (retried when the status is 408, 500, 502, 503 or 504). Tag it with
/// [`Error::provider`]; the kind shows through the tag.
pub fn status_error(host: &str, status: u16, headers: &HeaderMap, code: &str, message: &str) -> Error {
    let host = host.to_owned();
    let described = || match (code, message) {
        ("", message) => message.to_owned(),
        (code, "") => code.to_owned(),
        (code, message) => format!("{code}: {message}"),
    };
    match status {
        401 => Error::Unauthorized {
            host,
            message: described(),
        },
        403 => Error::Denied {
            host,
            message: described(),
        },
        429 => Error::RateLimited {
            host,
            retry_after: retry_after(headers),
            limit: RateLimit::from_headers(headers),
        },
        status => Error::Registry {
            host,
            status,
            errors: vec![RegistryError {
                code: if code.is_empty() {
                    "UNKNOWN".into()
                } else {
                    code.to_owned()
                },
                message: message.to_owned(),
            }],
        },
    }
}

/// The error for a call that got no answer: [`Error::Timeout`] or
/// [`Error::Connection`], both retried; the URL is left out (it may be signed).
pub fn network_error(error: reqwest::Error, host: &str) -> Error {
    map_reqwest_error(error, host)
}

/// Runs `future` (a cloud SDK's call) with its TRACE events dropped: some SDKs
/// log whole responses at TRACE, tokens and session keys included (the AWS SDK
/// does). Everything else goes to the current subscriber.
pub async fn without_trace<F: Future>(future: F) -> F::Output {
    let outer = tracing::dispatcher::get_default(Dispatch::clone);
    future.with_subscriber(NoTrace(outer)).await
}

/// A subscriber that passes everything but TRACE events on.
struct NoTrace(Dispatch);

impl Subscriber for NoTrace {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes() // decided by `enabled`, per dispatcher
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() != Level::TRACE && self.0.enabled(metadata)
    }
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() != Level::TRACE {
            self.0.event(event);
        }
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.0.new_span(span)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        self.0.record(span, values);
    }
    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.0.record_follows_from(span, follows);
    }
    fn enter(&self, span: &Id) {
        self.0.enter(span);
    }
    fn exit(&self, span: &Id) {
        self.0.exit(span);
    }
    fn clone_span(&self, id: &Id) -> Id {
        self.0.clone_span(id)
    }
    fn try_close(&self, id: Id) -> bool {
        self.0.try_close(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_kinds_the_retry_policy_knows() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        let limited = status_error("api.example", 429, &headers, "Throttling", "slow down");
        assert!(
            matches!(&limited, Error::RateLimited { retry_after: Some(wait), .. } if wait.as_secs() == 7),
            "{limited:?}"
        );
        assert!(limited.is_retryable());

        let down = status_error(
            "api.example",
            503,
            &HeaderMap::new(),
            "ServiceUnavailable",
            "later",
        );
        assert!(down.is_retryable(), "{down:?}");
        assert_eq!(
            down.to_string(),
            "api.example answered 503: ServiceUnavailable later"
        );

        let bad = status_error("api.example", 400, &HeaderMap::new(), "InvalidParameter", "no");
        assert!(!bad.is_retryable(), "{bad:?}");
        let denied = status_error("api.example", 403, &HeaderMap::new(), "Forbidden", "no role");
        assert!(denied.is_auth() && !denied.is_retryable());
        assert_eq!(
            denied.to_string(),
            "access denied at api.example: Forbidden: no role"
        );
    }
}
