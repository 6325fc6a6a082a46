//! One upstream request for many callers: concurrent calls with the same key
//! wait for the first one's result instead of sending their own.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// Calls in flight, by key.
pub struct SingleFlight<K, V> {
    calls: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            calls: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    /// `call()`'s result, shared with every caller that asks for `key` while
    /// it runs. If the caller running it goes away, a waiting one runs it.
    pub async fn run<F, Fut>(&self, key: K, call: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let value = cell.get_or_init(call).await.clone();
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        if calls.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            calls.remove(&key);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_calls_share_one_run_and_later_ones_run_again() {
        let flight = SingleFlight::<&str, usize>::default();
        let runs = AtomicUsize::new(0);
        let call = || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            runs.fetch_add(1, Ordering::SeqCst) + 1
        };
        let (a, b, c) = tokio::join!(
            flight.run("k", call),
            flight.run("k", call),
            flight.run("k", call)
        );
        assert_eq!((a, b, c), (1, 1, 1));
        assert_eq!(flight.run("k", call).await, 2, "a finished call is not reused");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
