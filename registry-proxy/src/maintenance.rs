//! The cache's housekeeping, on a task of its own while the server runs:
//! learn what the storage holds, write the recorded uses in batches, and
//! evict what the limits say must go.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::usage::{FLUSH_EVERY, Usage};

/// What the housekeeping works on.
#[derive(Clone)]
pub struct Maintenance {
    pub storage: Storage,
    pub usage: Arc<Usage>,
    pub metrics: Arc<Metrics>,
}

impl Maintenance {
    /// Runs until dropped (the server aborts it when it stops, after a last
    /// [`flush`](Self::flush)).
    pub async fn run(self) {
        if let Err(e) = self.usage.load(&self.storage, &self.metrics).await {
            tracing::warn!("cannot size the cache (limits are not applied until it can): {e}");
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
                _ = self.usage.over_size() => {}
            }
            self.flush().await;
            self.evict().await;
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
        for key in self.usage.choose_victims(&self.metrics) {
            match self.storage.remove(&key).await {
                Ok(()) => {
                    self.metrics.evictions.inc();
                    tracing::debug!(key, "evicted");
                }
                Err(e) => tracing::warn!(key, "cannot evict: {e}"),
            }
        }
    }
}
