//! Keeping the cache within its limits: a size (`max_size`, least recently
//! used first) and an age (`max_age`, since last use).
//!
//! Every stored object is counted here with its size and when it was last
//! used. Uses are recorded in memory and written to the storage in batches
//! (`access/<replica>.json`, every few seconds), never one write per hit;
//! at start, the store is listed and every replica's batch read back, so
//! replicas on one bucket share what they know. An object being served (a
//! pin) is never evicted, and the manifests of cached tags go last: blobs
//! first, then manifests, then tag records.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// How often uses are written to the storage, and the age limit checked.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// After an eviction the cache is this share of `max_size`, so that the
/// next fill does not evict again at once.
const LOW_WATER: f64 = 0.9;

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_size: Option<u64>,
    pub max_age: Option<Duration>,
}

/// What an object is, in eviction order: blobs go first, tag records last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Blob,
    Manifest,
    Tag,
}

impl Class {
    /// From a key: `routes/<route>/{blobs,manifests}/…` or `…/_tags/…`.
    pub fn of(key: &str) -> Option<Class> {
        let mut parts = key.split('/');
        if parts.next() != Some("routes") {
            return None;
        }
        match parts.nth(1) {
            Some("blobs") => Some(Class::Blob),
            Some("manifests") => Some(Class::Manifest),
            Some("repositories") if key.contains("/_tags/") => Some(Class::Tag),
            // Links are tiny and say something true forever.
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    /// Milliseconds since the epoch.
    used: u64,
    class: Class,
}

#[derive(Default)]
struct State {
    objects: HashMap<String, Entry>,
    total: u64,
    pins: HashMap<String, usize>,
    /// Uses since the last flush.
    dirty: HashMap<String, u64>,
    /// Every use this replica has recorded (its batch file, rewritten whole).
    mine: HashMap<String, u64>,
}

/// The cache's objects and their last uses.
pub struct Usage {
    limits: Limits,
    replica: String,
    state: Mutex<State>,
    /// Wakes the maintenance task when the cache goes over its size.
    wake: tokio::sync::Notify,
}

impl Usage {
    pub fn new(limits: Limits, replica: String) -> Usage {
        Usage {
            limits,
            replica,
            state: Mutex::new(State::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Resolves when the cache has gone over its size (or never).
    pub async fn over_size(&self) {
        self.wake.notified().await
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns what the storage holds and when each object was last used.
    pub async fn load(&self, storage: &Storage, metrics: &Metrics) -> Result<()> {
        let listed = storage.list_objects().await?;
        let mut uses = Uses::default();
        for (replica, batch) in storage.read_uses().await? {
            uses.add(replica, batch);
        }
        let mut state = self.state();
        for (key, size, modified) in listed {
            let Some(class) = Class::of(&key) else { continue };
            // What was added while the listing ran is already counted.
            if state.objects.contains_key(&key) {
                continue;
            }
            let modified = modified * 1000;
            let used = uses.get(&key).copied().unwrap_or(modified).max(modified);
            state.total += size;
            state.objects.insert(key, Entry { size, used, class });
        }
        if let Some(mine) = uses.get_mine(&self.replica) {
            state.mine = mine;
        }
        publish(&state, metrics);
        Ok(())
    }

    /// A new object (a committed blob, a stored manifest or tag record).
    pub fn added(&self, key: String, size: u64, metrics: &Metrics) {
        let Some(class) = Class::of(&key) else { return };
        let mut state = self.state();
        let now = unix_now();
        if let Some(old) = state.objects.insert(
            key.clone(),
            Entry {
                size,
                used: now,
                class,
            },
        ) {
            state.total -= old.size;
        }
        state.total += size;
        state.dirty.insert(key, now);
        publish(&state, metrics);
        if self.limits.max_size.is_some_and(|max| state.total > max) {
            self.wake.notify_one();
        }
    }

    /// An object was served.
    pub fn used(&self, key: &str) {
        let mut state = self.state();
        let now = unix_now();
        if let Some(entry) = state.objects.get_mut(key) {
            entry.used = now;
        }
        state.dirty.insert(key.to_owned(), now);
    }

    /// Keeps an object while it is being served; released when dropped.
    pub fn pin(self: &std::sync::Arc<Self>, key: &str) -> Pin {
        *self.state().pins.entry(key.to_owned()).or_default() += 1;
        Pin {
            usage: self.clone(),
            key: key.to_owned(),
        }
    }

    /// Whether the cache is over its size limit.
    #[cfg(test)]
    fn over(&self) -> bool {
        self.limits.max_size.is_some_and(|max| self.state().total > max)
    }

    /// The objects to evict now: those unused for `max_age`, then the least
    /// recently used until the size is under the low-water mark; never a
    /// pinned one. They are taken out of the count (deleting may still fail:
    /// then the next listing counts them again).
    pub fn choose_victims(&self, metrics: &Metrics) -> Vec<String> {
        let now = unix_now();
        let too_old = |e: &Entry| {
            self.limits
                .max_age
                .is_some_and(|age| now.saturating_sub(e.used) > age.as_millis() as u64)
        };
        let target = self.limits.max_size.map(|max| (max as f64 * LOW_WATER) as u64);
        self.take_victims(metrics, |total, _, entry| {
            target.is_some_and(|t| total > t) || too_old(entry)
        })
    }

    /// Unpinned objects, blobs first, least recently used first, that
    /// free at least `bytes` (as many as there are, if they do not). They
    /// are taken out of the count, as by [`choose_victims`](Self::choose_victims).
    pub fn choose_victims_to_free(&self, bytes: u64, metrics: &Metrics) -> Vec<String> {
        self.take_victims(metrics, |_, freed, _| freed < bytes)
    }

    /// Goes through the unpinned objects in eviction order (blobs first,
    /// least recently used first), taking out of the count those that
    /// `goes(total left, freed so far, object)` picks.
    fn take_victims(&self, metrics: &Metrics, mut goes: impl FnMut(u64, u64, &Entry) -> bool) -> Vec<String> {
        let mut state = self.state();
        let mut candidates: Vec<(&String, &Entry)> = state
            .objects
            .iter()
            .filter(|(key, _)| !state.pins.contains_key(*key))
            .collect();
        candidates.sort_by_key(|(_, e)| (e.class, e.used));
        let mut total = state.total;
        let mut victims = Vec::new();
        for (key, entry) in candidates {
            if goes(total, state.total - total, entry) {
                total -= entry.size;
                victims.push(key.clone());
            }
        }
        for key in &victims {
            if let Some(entry) = state.objects.remove(key) {
                state.total -= entry.size;
            }
        }
        publish(&state, metrics);
        victims
    }

    /// This replica's uses to write, if any are new.
    pub fn uses_to_flush(&self) -> Option<(String, HashMap<String, u64>)> {
        let mut state = self.state();
        if state.dirty.is_empty() {
            return None;
        }
        let dirty = std::mem::take(&mut state.dirty);
        // Uses of objects that are gone are of no more use.
        let State { mine, objects, .. } = &mut *state;
        mine.extend(dirty);
        mine.retain(|key, _| objects.contains_key(key));
        Some((self.replica.clone(), state.mine.clone()))
    }
}

fn publish(state: &State, metrics: &Metrics) {
    metrics.cache_bytes.set(state.total as i64);
    metrics.cache_objects.set(state.objects.len() as i64);
}

/// An object being served; it is not evicted while this lives.
pub struct Pin {
    usage: std::sync::Arc<Usage>,
    key: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut state = self.usage.state();
        if let Some(count) = state.pins.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                state.pins.remove(&self.key);
            }
        }
    }
}

/// Every replica's recorded uses, merged (the latest wins), and each
/// replica's own.
#[derive(Default)]
pub struct Uses {
    merged: HashMap<String, u64>,
    by_replica: HashMap<String, HashMap<String, u64>>,
}

impl Uses {
    pub fn add(&mut self, replica: String, uses: HashMap<String, u64>) {
        for (key, used) in &uses {
            let latest = self.merged.entry(key.clone()).or_default();
            *latest = (*latest).max(*used);
        }
        self.by_replica.insert(replica, uses);
    }

    pub fn get(&self, key: &str) -> Option<&u64> {
        self.merged.get(key)
    }

    fn get_mine(&self, replica: &str) -> Option<HashMap<String, u64>> {
        self.by_replica.get(replica).cloned()
    }
}

/// Milliseconds since the epoch: uses a second apart must still be ordered.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn usage(max_size: u64) -> (Arc<Usage>, Metrics) {
        let limits = Limits {
            max_size: Some(max_size),
            max_age: None,
        };
        (Arc::new(Usage::new(limits, "test".into())), Metrics::default())
    }

    const BLOB: &str = "routes/r/blobs/sha256/aa";
    const OLD_BLOB: &str = "routes/r/blobs/sha256/bb";
    const MANIFEST: &str = "routes/r/manifests/sha256/cc";
    const TAG: &str = "routes/r/repositories/a/b/_tags/v1";

    #[test]
    fn keys_have_classes() {
        assert_eq!(Class::of(BLOB), Some(Class::Blob));
        assert_eq!(Class::of(MANIFEST), Some(Class::Manifest));
        assert_eq!(Class::of(TAG), Some(Class::Tag));
        assert_eq!(Class::of("routes/r/repositories/a/_links/blobs/sha256/aa"), None);
        assert_eq!(Class::of("access/replica.json"), None);
    }

    #[test]
    fn blobs_go_first_least_recently_used_first_and_pins_stay() {
        let (usage, metrics) = usage(100);
        for (key, size) in [(TAG, 10), (MANIFEST, 10), (OLD_BLOB, 50), (BLOB, 50)] {
            usage.added(key.into(), size, &metrics);
        }
        usage.state().objects.get_mut(OLD_BLOB).unwrap().used -= 100_000;
        assert!(usage.over());
        // 120 bytes, low water 90: the older blob goes.
        assert_eq!(usage.choose_victims(&metrics), [OLD_BLOB]);
        assert_eq!(metrics.cache_bytes.get(), 70);

        usage.added(OLD_BLOB.into(), 50, &metrics);
        usage.state().objects.get_mut(OLD_BLOB).unwrap().used -= 100_000;
        let pin = usage.pin(OLD_BLOB);
        assert_eq!(usage.choose_victims(&metrics), [BLOB], "the pinned blob stays");
        drop(pin);
        usage.added(BLOB.into(), 50, &metrics);
        // Unpinned, the older blob goes first again; the manifest and tag stay.
        assert_eq!(usage.choose_victims(&metrics), [OLD_BLOB]);
    }

    #[test]
    fn room_is_made_from_unpinned_blobs_least_recently_used_first() {
        let (usage, metrics) = usage(1000);
        for (key, size) in [(TAG, 10), (MANIFEST, 10), (OLD_BLOB, 50), (BLOB, 50)] {
            usage.added(key.into(), size, &metrics);
        }
        usage.state().objects.get_mut(OLD_BLOB).unwrap().used -= 100_000;
        assert_eq!(usage.choose_victims_to_free(40, &metrics), [OLD_BLOB]);
        usage.added(OLD_BLOB.into(), 50, &metrics);
        usage.state().objects.get_mut(OLD_BLOB).unwrap().used -= 100_000;
        let _pin = usage.pin(OLD_BLOB);
        assert_eq!(usage.choose_victims_to_free(60, &metrics), [BLOB, MANIFEST]);
        assert_eq!(metrics.cache_bytes.get(), 60);
    }

    #[test]
    fn too_old_goes_whatever_the_size() {
        let usage = Arc::new(Usage::new(
            Limits {
                max_size: None,
                max_age: Some(Duration::from_secs(60)),
            },
            "test".into(),
        ));
        let metrics = Metrics::default();
        usage.added(BLOB.into(), 1, &metrics);
        usage.added(MANIFEST.into(), 1, &metrics);
        usage.state().objects.get_mut(MANIFEST).unwrap().used -= 120_000;
        assert_eq!(usage.choose_victims(&metrics), [MANIFEST]);
    }
}
