//! Progress events, enough to draw a progress bar per layer.

use std::fmt;
use std::sync::Arc;

/// What a pull is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The manifest (and config) are known: what will be fetched.
    ManifestResolved {
        digest: String,
        platform: Option<String>,
        layers: usize,
        total_bytes: u64,
        /// The mirror or registry that served the manifest.
        source: String,
    },
    /// A blob download began (or began again from the start).
    BlobStarted { digest: String, size: u64 },
    /// Bytes of a blob received so far (cumulative, verified as they arrive).
    BlobProgress { digest: String, done: u64, size: u64 },
    /// A blob was taken from the layer cache or was already in the output.
    BlobFromCache { digest: String, size: u64 },
    /// A copy or a push is planned: `blobs` blobs of `total_bytes` to `destination`, whose
    /// tag will name `digest`.
    CopyPlanned {
        digest: String,
        blobs: usize,
        total_bytes: u64,
        destination: String,
    },
    /// A blob of a copy needs no upload.
    BlobSkipped {
        digest: String,
        size: u64,
        reason: SkipReason,
    },
    /// A blob is complete and verified.
    BlobDone { digest: String, size: u64 },
    /// A request is being retried (`what` is a blob digest or a manifest reference).
    Retry {
        what: String,
        attempt: u32,
        reason: String,
    },
    /// A source (a mirror, or the registry) is passed over for `what` (an
    /// image reference or a blob digest): it failed in a way the next source
    /// may not, or its configuration leaves it out (a digest-only mirror and
    /// a pull by tag). The next source is tried.
    SourceSkipped {
        source: String,
        what: String,
        reason: String,
    },
}

/// Why a blob of a copy needs no upload. Shown as `exists` or `mounted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The destination has it.
    Exists,
    /// Mounted from another repository of the destination's registry.
    Mounted,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::Exists => "exists",
            SkipReason::Mounted => "mounted",
        })
    }
}

/// Receives progress events; must be cheap (it is called from download tasks).
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&ProgressEvent) + Send + Sync>);

impl Progress {
    pub fn new(callback: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Self {
        Progress(Arc::new(callback))
    }

    /// Progress delivered on a channel instead of a callback.
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<ProgressEvent>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Progress::new(move |event| {
                let _ = tx.send(event.clone());
            }),
            rx,
        )
    }

    pub(crate) fn emit(&self, event: ProgressEvent) {
        (self.0)(&event);
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress")
    }
}
