//! What a write is asked and what it answers: to disk (`PullOptions`,
//! `PullResult`), to a registry (`CopyOptions`, `CopyResult`).

use std::path::PathBuf;

use crate::driver::protocol::blobs::BlobPush;
use crate::formats::BlobInfo;
use crate::model::reference::ImageReference;
use crate::portable::image::ImageManifests;

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

/// Blobs copied at once unless told otherwise.
pub const DEFAULT_COPY_CONCURRENCY: usize = 4;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub(crate) concurrency: usize,
    pub(crate) dry_run: bool,
    pub(crate) progress: Option<Progress>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            concurrency: DEFAULT_COPY_CONCURRENCY,
            dry_run: false,
            progress: None,
        }
    }
}

impl CopyOptions {
    /// Blobs copied at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Only find out what would move: existence checks, no upload, no manifest.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Reports the copy as it goes: [`ProgressEvent::CopyPlanned`](crate::ProgressEvent::CopyPlanned), then per blob
    /// [`BlobSkipped`](crate::ProgressEvent::BlobSkipped), or `BlobStarted` (again when an upload
    /// starts over), `BlobProgress` (bytes handed to the upload) and `BlobDone`. Nothing
    /// in a dry run.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The same parallelism and progress, for a destination on disk.
    pub(crate) fn to_disk(&self, ref_name: Option<&str>) -> PullOptions {
        PullOptions {
            concurrency: self.concurrency,
            progress: self.progress.clone(),
            ref_name: ref_name.map(str::to_owned),
        }
    }

    /// The progress callback, unless this is a dry run.
    pub(crate) fn reporter(&self) -> Option<&Progress> {
        self.progress.as_ref().filter(|_| !self.dry_run)
    }
}

/// One blob of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopiedBlob {
    pub digest: String,
    pub size: u64,
    /// What was done with it (in a dry run: what would be; `Uploaded` for a mount that
    /// might still fall back to an upload).
    pub how: BlobPush,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyResult {
    /// The destination as written (its tag, or its digest).
    pub destination: ImageReference,
    /// The digest the destination's tag now points to: the index's for a whole-index copy,
    /// else the platform manifest's.
    pub digest: String,
    pub blobs: Vec<CopiedBlob>,
    /// The manifests put, in the order they were put (the tagged one last).
    pub manifests: Vec<String>,
    /// Bytes uploaded (mounted and present blobs are not counted).
    pub uploaded_bytes: u64,
    pub dry_run: bool,
}

/// What writing `layers` of `image` in `format` did.
pub(crate) fn pull_result(
    image: &ImageManifests,
    format: OutputFormat,
    path: Option<PathBuf>,
    layers: Vec<PulledLayer>,
) -> PullResult {
    let configs: u64 = image.images().iter().map(|i| i.config.bytes.len() as u64).sum();
    let total_bytes = configs + layers.iter().map(|l| l.size).sum::<u64>();
    let downloaded_bytes = layers.iter().filter(|l| !l.from_cache).map(|l| l.size).sum();
    PullResult {
        digest: image.digest().to_owned(),
        source: image.source().to_owned(),
        media_type: image.top().descriptor.media_type.clone(),
        tag: image.tag().map(str::to_owned),
        platform: image.result_platform().cloned(),
        total_bytes,
        downloaded_bytes,
        layers,
        format,
        path,
    }
}

/// A blob as written: fetched from `source`, or (`None`) taken from the layer cache
/// or the output.
pub(crate) fn pulled_layer(layer: &BlobInfo, source: Option<String>) -> PulledLayer {
    PulledLayer {
        digest: layer.digest.clone(),
        size: layer.size,
        media_type: layer.media_type.clone(),
        from_cache: source.is_none(),
        source,
    }
}

/// The written layers in manifest order (fetches finish in any order).
pub(crate) fn in_order(layers: &[BlobInfo], pulled: Vec<PulledLayer>) -> Vec<PulledLayer> {
    layers
        .iter()
        .filter_map(|l| pulled.iter().find(|p| p.digest == l.digest).cloned())
        .collect()
}
