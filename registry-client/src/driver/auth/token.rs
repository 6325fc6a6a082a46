//! Bearer tokens from a registry's token service, and their cache.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::Result;

/// Lifetime assumed when the token service does not say (distribution's token spec).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    value: SecretString,
    /// Unique per fetched token, so a refresh can tell "the token that just
    /// failed" from "a newer one another task already fetched".
    serial: u64,
    use_until: Instant,
}

impl Token {
    /// A token usable until shortly before `lifetime` runs out: a tenth of
    /// the lifetime, at most 30 s, is kept as a margin for clock skew and
    /// the request's own travel time.
    pub fn new(value: String, lifetime: Duration) -> Self {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        Token {
            value: SecretString::from(value),
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            use_until: Instant::now() + lifetime - margin,
        }
    }

    pub fn secret(&self) -> &str {
        self.value.expose_secret()
    }

    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.use_until
    }

    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("serial", &self.serial)
            .field("use_until", &self.use_until)
            .finish()
    }
}

/// The token service's answer.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    issued_at: Option<String>,
}

impl TokenResponse {
    /// The token and its remaining lifetime. `token` wins over `access_token`
    /// (both are allowed; Docker Hub sends both, equal).
    pub(crate) fn into_token(self, now: SystemTime) -> Option<Token> {
        let value = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = self
            .expires_in
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Some(Token::new(
            value,
            remaining(lifetime, self.issued_at.as_deref(), now),
        ))
    }
}

/// How much of `lifetime` is left, counting from `issued_at` when the
/// server's clock agrees with ours to within a minute; a skewed clock would
/// otherwise make every token look expired (or everlasting).
fn remaining(lifetime: Duration, issued_at: Option<&str>, now: SystemTime) -> Duration {
    let Some(issued) = issued_at.and_then(|s| humantime::parse_rfc3339_weak(s.trim()).ok()) else {
        return lifetime;
    };
    match now.duration_since(issued) {
        Ok(age) if age < Duration::from_secs(60) => lifetime.saturating_sub(age),
        _ => lifetime,
    }
}

/// One key's token; its lock makes concurrent fetches for the key wait for one.
type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// Tokens per (registry host, scope), fetched at most once at a time per key.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl TokenCache {
    /// The cached token, or a new one from `fetch`. When `rejected` is the
    /// token the registry just refused, it is not reused; if another task
    /// has meanwhile replaced it, that newer token is returned instead of
    /// fetching again.
    pub(crate) async fn get_or_fetch<F>(
        &self,
        host: &str,
        scope: &str,
        rejected: Option<u64>,
        fetch: F,
    ) -> Result<Token>
    where
        F: Future<Output = Result<Token>>,
    {
        let slot = self.slot(host, scope);
        let mut guard = slot.lock().await;
        if let Some(token) = guard.as_ref()
            && token.is_fresh()
            && Some(token.serial) != rejected
        {
            return Ok(token.clone());
        }
        let token = fetch.await?;
        *guard = token.is_fresh().then(|| token.clone());
        Ok(token)
    }

    fn slot(&self, host: &str, scope: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry((host.to_owned(), scope.to_owned()))
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn response(json: &str) -> TokenResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_token_or_access_token() {
        let now = SystemTime::now();
        let t = response(r#"{"token":"a","access_token":"b"}"#)
            .into_token(now)
            .unwrap();
        assert_eq!(t.secret(), "a");
        let t = response(r#"{"access_token":"b","expires_in":300}"#)
            .into_token(now)
            .unwrap();
        assert_eq!(t.secret(), "b");
        assert!(response(r#"{"expires_in":300}"#).into_token(now).is_none());
        assert!(response(r#"{"token":""}"#).into_token(now).is_none());
    }

    #[test]
    fn lifetime_defaults_to_60s_and_counts_from_issued_at() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:30 GMT").unwrap();
        assert_eq!(
            remaining(Duration::from_secs(60), None, now),
            Duration::from_secs(60)
        );
        assert_eq!(
            remaining(Duration::from_secs(60), Some("2026-11-22T10:00:00Z"), now),
            Duration::from_secs(30)
        );
        assert_eq!(
            remaining(
                Duration::from_secs(60),
                Some("2026-11-22T10:00:10.123456789Z"),
                now
            ),
            Duration::new(40, 123_456_789)
        );
        // A server clock an hour off is not trusted.
        assert_eq!(
            remaining(Duration::from_secs(60), Some("2026-11-22T09:00:00Z"), now),
            Duration::from_secs(60)
        );
        assert_eq!(
            remaining(Duration::from_secs(60), Some("junk"), now),
            Duration::from_secs(60)
        );
        let t = response(r#"{"token":"a"}"#)
            .into_token(SystemTime::now())
            .unwrap();
        let left = t.use_until - Instant::now();
        assert!(
            left > Duration::from_secs(50) && left <= Duration::from_secs(54),
            "{left:?}"
        );
    }

    #[tokio::test]
    async fn fetches_once_and_refreshes_only_the_rejected_token() {
        let cache = TokenCache::default();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok(Token::new("t".into(), Duration::from_secs(60)))
        };
        let a = cache.get_or_fetch("h", "s", None, fetch()).await.unwrap();
        let b = cache.get_or_fetch("h", "s", None, fetch()).await.unwrap();
        assert_eq!(a.serial, b.serial);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        let c = cache
            .get_or_fetch("h", "s", Some(a.serial), fetch())
            .await
            .unwrap();
        assert_ne!(c.serial, a.serial);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // A second task that also saw `a` rejected gets `c`, no new fetch.
        let d = cache
            .get_or_fetch("h", "s", Some(a.serial), fetch())
            .await
            .unwrap();
        assert_eq!(d.serial, c.serial);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        cache.get_or_fetch("h", "other", None, fetch()).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 3, "keyed by scope");
    }

    #[tokio::test]
    async fn expired_tokens_are_not_cached() {
        let cache = TokenCache::default();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok(Token::new("t".into(), Duration::ZERO))
        };
        cache.get_or_fetch("h", "s", None, fetch()).await.unwrap();
        cache.get_or_fetch("h", "s", None, fetch()).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn debug_hides_the_token() {
        let t = Token::new("sekrit-value".into(), Duration::from_secs(1));
        assert!(!format!("{t:?}").contains("sekrit"));
    }
}
