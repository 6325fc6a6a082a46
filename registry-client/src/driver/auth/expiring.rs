//! Credentials that a cloud API hands out for a limited time (ECR tokens,
//! OAuth2 access tokens, ACR temporary passwords), cached per key.
//!
//! Shared by the cloud providers so none of them re-implements the rules:
//! refresh early, keep the old credentials when a refresh fails while they
//! are still valid, and never cache credentials that arrive already expired.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::driver::auth::credentials::Credentials;
use crate::error::Result;

/// Credentials and when they stop working.
#[derive(Debug, Clone)]
pub struct Expiring {
    pub credentials: Credentials,
    pub expires_at: SystemTime,
}

/// When to fetch new credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshPolicy {
    /// At this fraction of the lifetime, in percent (ECR: 50).
    AtPercentOfLifetime(u8),
    /// This long before expiry (OAuth2 tokens, ACR: a few minutes).
    Before(Duration),
}

#[derive(Debug, Clone)]
struct Cached {
    expiring: Expiring,
    refresh_at: SystemTime,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// A cache of [`Expiring`] credentials per key (a region, a registry, an instance).
#[derive(Debug)]
pub struct ExpiringCredentials {
    policy: RefreshPolicy,
    slots: Mutex<HashMap<String, Slot>>,
}

impl ExpiringCredentials {
    pub fn new(policy: RefreshPolicy) -> Self {
        ExpiringCredentials {
            policy,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The cached credentials for `key`, or new ones from `fetch` once it is
    /// time to refresh. Concurrent callers for one key share one fetch. If
    /// the fetch fails while the cached credentials are still valid, those are
    /// returned (and the failure logged); fetched credentials that are
    /// already expired are returned once but not cached.
    pub async fn get<F, Fut>(&self, key: &str, fetch: F) -> Result<Credentials>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.to_owned()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        let now = SystemTime::now();
        if let Some(c) = cached.as_ref()
            && now < c.refresh_at
        {
            return Ok(c.expiring.credentials.clone());
        }
        match fetch().await {
            Ok(fresh) if fresh.expires_at <= now => {
                tracing::debug!(key, "credentials arrived already expired; using them once");
                Ok(fresh.credentials)
            }
            Ok(fresh) => {
                let refresh_at = self.refresh_at(now, fresh.expires_at);
                let credentials = fresh.credentials.clone();
                *cached = Some(Cached {
                    expiring: fresh,
                    refresh_at,
                });
                Ok(credentials)
            }
            Err(error) => match cached.as_ref() {
                Some(c) if now < c.expiring.expires_at => {
                    tracing::warn!(
                        key,
                        "refreshing credentials failed, keeping the valid ones: {error}"
                    );
                    Ok(c.expiring.credentials.clone())
                }
                _ => Err(error),
            },
        }
    }

    fn refresh_at(&self, now: SystemTime, expires_at: SystemTime) -> SystemTime {
        let lifetime = expires_at.duration_since(now).unwrap_or_default();
        match self.policy {
            RefreshPolicy::AtPercentOfLifetime(percent) => now + lifetime * u32::from(percent.min(100)) / 100,
            RefreshPolicy::Before(margin) => now + lifetime.saturating_sub(margin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn creds(tag: &str, lifetime: Duration) -> Result<Expiring> {
        Ok(Expiring {
            credentials: Credentials::basic("AWS", tag),
            expires_at: SystemTime::now() + lifetime,
        })
    }

    #[tokio::test]
    async fn refreshes_at_half_life_and_keeps_valid_ones_on_failure() {
        let cache = ExpiringCredentials::new(RefreshPolicy::AtPercentOfLifetime(50));
        let fetches = AtomicUsize::new(0);
        let fetch = |tag: &'static str, lifetime_ms: u64| {
            let fetches = &fetches;
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                creds(tag, Duration::from_millis(lifetime_ms))
            }
        };
        let c = cache.get("r", fetch("one", 400)).await.unwrap();
        assert_eq!(c.secret(), "one");
        assert_eq!(cache.get("r", fetch("two", 400)).await.unwrap().secret(), "one");
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "cached before half its life");

        tokio::time::sleep(Duration::from_millis(250)).await;
        let failed = cache
            .get("r", || async { Err(Error::InvalidConfig("API down".into())) })
            .await
            .unwrap();
        assert_eq!(failed.secret(), "one", "still valid, so kept");

        tokio::time::sleep(Duration::from_millis(200)).await;
        let err = cache
            .get("r", || async { Err(Error::InvalidConfig("API down".into())) })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("API down"), "expired: the failure shows");
        assert_eq!(
            cache.get("r", fetch("three", 400)).await.unwrap().secret(),
            "three"
        );
        assert_eq!(
            cache.get("other", fetch("four", 400)).await.unwrap().secret(),
            "four",
            "per key"
        );
    }

    #[tokio::test]
    async fn already_expired_credentials_are_used_once_not_cached() {
        let cache = ExpiringCredentials::new(RefreshPolicy::AtPercentOfLifetime(50));
        let fetches = AtomicUsize::new(0);
        for _ in 0..3 {
            let c = cache
                .get("r", || async {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    Ok(Expiring {
                        credentials: Credentials::basic("AWS", "from-2015"),
                        expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_430_000_000),
                    })
                })
                .await
                .unwrap();
            assert_eq!(c.secret(), "from-2015");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn before_expiry_policy() {
        let cache = ExpiringCredentials::new(RefreshPolicy::Before(Duration::from_millis(300)));
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            creds("t", Duration::from_millis(500))
        };
        cache.get("k", fetch).await.unwrap();
        cache.get("k", fetch).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        cache.get("k", fetch).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "within 300 ms of expiry");
    }
}
