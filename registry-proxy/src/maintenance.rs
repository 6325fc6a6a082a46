//! The cache's housekeeping, on a task of its own while the server runs:
//! learn what the storage holds, write the recorded uses in batches, evict
//! what the limits say must go, and probe a failing storage until it works.

use std::sync::Arc;
use std::time::Instant;

use crate::health::{PROBE_EVERY, StorageHealth};
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::usage::{FLUSH_EVERY, Usage};

/// How often a storage that works is probed anyway.
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// What the housekeeping works on.
#[derive(Clone)]
pub struct Maintenance {
    pub storage: Storage,
    pub usage: Arc<Usage>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<StorageHealth>,
}

impl Maintenance {
    /// Runs until dropped (the server aborts it when it stops, after a last
    /// [`flush`](Self::flush)).
    pub async fn run(self) {
        if let Err(e) = self.usage.load(&self.storage, &self.metrics).await {
            tracing::warn!("cannot size the cache (limits are not applied until it can): {e}");
        }
        let mut flushed = Instant::now();
        // A disk that is full (or read-only) from the start says so at once.
        self.probe().await;
        let mut probed = Instant::now();
        loop {
            let over_size = tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => false,
                _ = self.usage.over_size() => true,
            };
            if self.health.is_failing() {
                self.health.still_failing(&self.storage).await;
            } else if probed.elapsed() >= CHECK_EVERY {
                self.probe().await;
                probed = Instant::now();
            }
            if over_size || flushed.elapsed() >= FLUSH_EVERY {
                self.flush().await;
                self.evict().await;
                flushed = Instant::now();
            }
        }
    }

    /// A write probe of a storage thought to work: one that fails marks it
    /// failing (before a client's request finds out).
    async fn probe(&self) {
        if let Err(error) = self.storage.probe_write().await {
            self.health.failed("probe the storage", &error, &self.metrics);
        }
    }

    /// Writes the uses recorded since the last time.
    pub async fn flush(&self) {
        if let Some((replica, uses)) = self.usage.uses_to_flush()
            && let Err(e) = self.storage.write_uses(&replica, &uses).await
        {
            tracing::warn!("cannot record the cache's uses: {e}");
        }
    }

    /// Removes what the limits say must go.
    async fn evict(&self) {
        let limits = self.usage.limits();
        if limits.max_size.is_none() && limits.max_age.is_none() {
            return;
        }
        self.remove(self.usage.choose_victims(&self.metrics)).await;
    }

    /// The disk is full: with a size limit (the operator allows eviction),
    /// evicts at least `bytes` of what is least recently used. Whether
    /// anything went. Only local disk: evicting from a bucket frees no
    /// room for spool files.
    pub async fn make_room(&self, bytes: u64) -> bool {
        if self.usage.limits().max_size.is_none() || !self.storage.is_local() {
            return false;
        }
        let victims = self.usage.choose_victims_to_free(bytes, &self.metrics);
        tracing::info!(
            bytes,
            objects = victims.len(),
            "the disk is full: evicting to make room"
        );
        !victims.is_empty() && self.remove(victims).await > 0
    }

    /// Removes `keys`; how many went.
    async fn remove(&self, keys: Vec<String>) -> usize {
        let mut removed = 0;
        for key in keys {
            match self.storage.remove(&key).await {
                Ok(()) => {
                    removed += 1;
                    self.metrics.evictions.inc();
                    tracing::debug!(key, "evicted");
                }
                Err(e) => tracing::warn!(key, "cannot evict: {e}"),
            }
        }
        removed
    }
}
