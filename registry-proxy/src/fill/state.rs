//! How far a fill has got, and who reads it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;

/// How far a fill has got.
#[derive(Debug, Clone)]
pub enum FillState {
    Running {
        written: u64,
        size: Option<u64>,
    },
    /// Every byte is in the spool and matches the digest; the commit is under way.
    /// Readers may finish: they need not wait for the storage to make it durable.
    Verified {
        size: u64,
        source: String,
    },
    Done {
        size: u64,
        source: String,
    },
    /// The blob failed (upstream, integrity): readers are cut.
    Failed(Arc<Error>),
    /// Stopped for the cache's own reasons (no room, a failing disk, no
    /// client left): readers go on from the upstream. The size, if the
    /// upstream had said it.
    Stopped {
        size: Option<u64>,
    },
}

/// How many clients read a fill, and since when it has had none.
pub(crate) struct Readers {
    pub(crate) count: AtomicUsize,
    pub(crate) alone_since: Mutex<Instant>,
}

impl Readers {
    pub(crate) fn join(self: &Arc<Self>) -> ReaderSlot {
        self.count.fetch_add(1, Ordering::SeqCst);
        ReaderSlot(self.clone())
    }

    /// How long the fill has had no reader; `None` while it has some.
    pub(crate) fn alone_for(&self) -> Option<Duration> {
        if self.count.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(
            self.alone_since
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed(),
        )
    }
}

/// A reader of a fill; the fill knows when the last one leaves.
pub(crate) struct ReaderSlot(Arc<Readers>);

impl Drop for ReaderSlot {
    fn drop(&mut self) {
        let mut since = self.0.alone_since.lock().unwrap_or_else(|p| p.into_inner());
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}
