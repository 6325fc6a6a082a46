//! Whether the cache's storage works. A failed read or write (a full or
//! failing disk, a bucket refusing writes) marks it failing: the cache then
//! serves from its upstreams without storing (see `passthrough`), `/ready`
//! says so, and an error is logged at most once a minute, with the path or
//! key and the count held back. A write probe that succeeds marks it
//! working again; the housekeeping and `/ready` run one now and then.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use registry_client::error::display_chain;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::warnings::Occasional;

/// How often a failing storage is probed, at most.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The storage's state.
pub struct StorageHealth {
    failing: Mutex<Option<Failing>>,
    logged: Occasional,
    last_probe: Mutex<Option<Instant>>,
}

/// Since when, and the last failure.
#[derive(Debug, Clone)]
pub struct Failing {
    pub since: SystemTime,
    /// What the cache was doing (`store a manifest`), without paths.
    pub doing: &'static str,
}

impl Default for StorageHealth {
    fn default() -> Self {
        StorageHealth {
            failing: Mutex::new(None),
            logged: Occasional::new(Duration::from_secs(60)),
            last_probe: Mutex::new(None),
        }
    }
}

impl StorageHealth {
    /// What a storage read found; a failed read is a miss (the upstream answers
    /// instead), and marks the storage failing.
    pub fn read<T>(
        &self,
        doing: &'static str,
        read: Result<Option<T>, Error>,
        metrics: &Metrics,
    ) -> Option<T> {
        read.unwrap_or_else(|error| {
            self.failed(doing, &error, metrics);
            None
        })
    }

    /// Whether a storage write worked; one that failed changes nothing for the
    /// client, and marks the storage failing.
    pub fn wrote<T>(&self, doing: &'static str, written: Result<T, Error>, metrics: &Metrics) -> Option<T> {
        written.map_err(|error| self.failed(doing, &error, metrics)).ok()
    }

    /// `doing` failed with `error`: the storage is failing.
    pub fn failed(&self, doing: &'static str, error: &Error, metrics: &Metrics) {
        metrics.storage_failed(doing);
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        let since = failing.as_ref().map_or_else(SystemTime::now, |f| f.since);
        *failing = Some(Failing { since, doing });
        drop(failing);
        if let Some(held_back) = self.logged.ready() {
            tracing::error!(
                held_back,
                "the cache's storage failed ({doing}): {}; serving from the upstreams without storing until it works again",
                display_chain(error)
            );
        }
    }

    pub fn is_failing(&self) -> bool {
        self.failing().is_some()
    }

    pub fn failing(&self) -> Option<Failing> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A write worked: the storage works again.
    pub fn recovered(&self) {
        if let Some(failing) = self.failing.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let down = SystemTime::now()
                .duration_since(failing.since)
                .unwrap_or_default();
            tracing::info!(
                failing_for = ?Duration::from_secs(down.as_secs()),
                "the cache's storage works again"
            );
        }
    }

    /// Whether the storage is failing still: when it is and a probe is
    /// due, a write probe that works ends it.
    pub async fn still_failing(&self, storage: &Storage) -> bool {
        if !self.is_failing() {
            return false;
        }
        if self.probe_due() && storage.probe_write().await.is_ok() {
            self.recovered();
            return false;
        }
        true
    }

    /// Whether it is time for another probe (and takes the turn).
    fn probe_due(&self) -> bool {
        let mut last = self.last_probe.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < PROBE_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}
