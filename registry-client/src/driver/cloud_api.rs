//! What a provider's own cloud API (a token or authorization-token service)
//! answered, as the core's errors. A provider does not retry its calls: it
//! returns these, and the client's one retry policy (429 and 5xx with
//! `Retry-After`, timeouts, broken connections) retries the request that
//! needed the credentials, exchange included, as for any registry answer.

use http::HeaderMap;

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
