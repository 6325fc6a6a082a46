//! When and how long to wait before trying a request again.

use std::time::{Duration, SystemTime};

use rand::Rng;

use crate::error::Error;

/// Retry policy for requests that failed in a way that may pass.
///
/// Retried: connection errors, timeouts, broken bodies, and the statuses
/// 408, 429, 500, 502, 503 and 504. Never retried: 401, 403, 404 and other
/// client errors. A `Retry-After` header (seconds or an HTTP date) sets the
/// wait, capped at [`max_retry_after`](Self::max_retry_after).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retries after the first attempt. Default 4.
    pub max_retries: u32,
    /// Wait before the first retry; doubles each time. Default 250 ms.
    pub initial_backoff: Duration,
    /// Upper bound of the exponential wait. Default 8 s.
    pub max_backoff: Duration,
    /// Upper bound of a server's `Retry-After`. Default 60 s.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    /// No retries at all.
    pub fn disabled() -> Self {
        RetryConfig {
            max_retries: 0,
            ..Self::default()
        }
    }

    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    pub fn with_initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    pub fn with_max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    pub fn with_max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// The wait before retry number `retry` (0-based): exponential with
    /// "equal jitter" — half fixed, half random — so that many clients
    /// failing together do not come back together.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(16)))
            .min(self.max_backoff);
        let half = exp / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    /// The wait a server asked for, capped.
    pub(crate) fn server_wait(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.max_retry_after)
    }
}

/// Statuses worth another try.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Why an attempt failed, and whether to try again.
pub(super) enum Failure {
    Transient { error: Error, wait: Option<Duration> },
    Fatal(Error),
}

impl Failure {
    /// The error, for callers outside the retry loop.
    pub(super) fn into_error(self) -> Error {
        match self {
            Failure::Transient { error, .. } | Failure::Fatal(error) => error,
        }
    }
}

/// Errors from below the status check (the token service, a provider) are
/// retried when they are transient; an open circuit fails at once.
impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        // Seen through a provider's tag: its API's `Retry-After` counts too.
        let wait = match error.underlying() {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        };
        if error.is_retryable() && !error.is_circuit_open() {
            Failure::Transient { error, wait }
        } else {
            Failure::Fatal(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let cfg = RetryConfig::default();
        for retry in 0..10 {
            let exp = (cfg.initial_backoff * 2u32.pow(retry)).min(cfg.max_backoff);
            for _ in 0..50 {
                let wait = cfg.backoff(retry);
                assert!(wait >= exp / 2 && wait <= exp, "retry {retry}: {wait:?}");
            }
        }
        assert_eq!(
            cfg.server_wait(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s));
        }
        for s in [200, 301, 400, 401, 403, 404, 405, 416, 501] {
            assert!(!is_retryable_status(s));
        }
    }
}
