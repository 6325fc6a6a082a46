//! What a pull is asked (`PullOptions`) and what it answers (`PullResult`).

use std::path::PathBuf;

use crate::model::events::Progress;
use crate::model::platform::Platform;

/// Layers downloaded at once by default.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// How to write a pull: parallelism, progress, an OCI layout entry's name. (The layer
/// cache is the client's: [`RepositoryClientBuilder::layer_cache`](crate::RepositoryClientBuilder::layer_cache).)
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub(crate) concurrency: usize,
    pub(crate) progress: Option<Progress>,
    pub(crate) ref_name: Option<String>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            concurrency: DEFAULT_CONCURRENCY,
            progress: None,
            ref_name: None,
        }
    }
}

impl PullOptions {
    /// Layers downloaded at once (default 8, at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The `org.opencontainers.image.ref.name` of an OCI layout entry (default: the tag).
    pub fn ref_name(mut self, name: impl Into<String>) -> Self {
        self.ref_name = Some(name.into());
        self
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputFormat {
    DockerArchive,
    OciLayout,
    Rootfs,
}

/// One layer of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PulledLayer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// Taken from the layer cache (or already in the output) instead of downloaded.
    pub from_cache: bool,
    /// The mirror or registry it was downloaded from (`None` when from the cache).
    pub source: Option<String>,
}

/// The outcome of a pull.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PullResult {
    /// The digest the reference resolved to (an index's digest when all platforms were pulled).
    pub digest: String,
    /// The mirror or registry that served the manifest.
    pub source: String,
    pub media_type: String,
    pub tag: Option<String>,
    /// The platform pulled; `None` for a whole index or a manifest without platform.
    pub platform: Option<Platform>,
    /// Size of all layers and configs.
    pub total_bytes: u64,
    /// Layer bytes fetched from the registry by the write; layers from the
    /// cache or already in the layout are not counted, nor are manifests and
    /// configs (fetched when the image was resolved).
    pub downloaded_bytes: u64,
    pub layers: Vec<PulledLayer>,
    pub format: OutputFormat,
    /// Where the output was written (`None` for a stream).
    pub path: Option<PathBuf>,
}
