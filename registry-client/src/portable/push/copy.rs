//! Pushing an [`ImageSource`] into a repository of any registry: blobs streamed from the
//! source's answer straight into the destination's upload (bounded memory, no temporary
//! file), skipped when present, mounted when both are one registry; manifests last, so a
//! copy that fails never leaves a tag pointing at missing blobs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use crate::driver::protocol::blobs::{self, BlobPush, GetBlobOptions, is_upload_lost};
use crate::driver::protocol::registry::Registry;
use crate::error::{Error, Result};
use crate::model::events::{Progress, ProgressEvent, SkipReason};
use crate::model::reference::ImageReference;

/// Blobs copied at once unless told otherwise.
pub const DEFAULT_COPY_CONCURRENCY: usize = 4;
/// Times a blob is sent from its first byte when the registry drops its upload.
const UPLOAD_ATTEMPTS: u32 = 3;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    concurrency: usize,
    dry_run: bool,
    progress: Option<Progress>,
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

    /// Reports the copy as it goes: [`ProgressEvent::CopyPlanned`], then per blob
    /// [`BlobSkipped`](ProgressEvent::BlobSkipped), or `BlobStarted` (again when an upload
    /// starts over), `BlobProgress` (bytes handed to the upload) and `BlobDone`. Nothing
    /// in a dry run.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The progress callback, unless this is a dry run.
    fn reporter(&self) -> Option<&Progress> {
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

/// Streams `blob` from the source's read path into the destination's upload, in one
/// request. The read path verifies (and resumes) the download and never lets the upload
/// reach the end of bytes that fail: the stream carries the error instead, so the upload
/// commits verified bytes without hashing them again.
async fn stream_blob(
    from: &Registry,
    reference: &ImageReference,
    to: &Registry,
    destination: &ImageReference,
    blob: &PlannedBlob,
    progress: Option<&Progress>,
) -> std::result::Result<(), Piped> {
    // The download starts now, beside the upload's first request.
    let (from, reference, digest) = (from.clone(), reference.clone(), blob.digest.clone());
    let options = GetBlobOptions::default().size(blob.size);
    let started = tokio::spawn(async move { blobs::get_blob(&from, &reference, &digest, options).await });
    let chunks = stream::once(async move {
        started
            .await
            .unwrap_or_else(|e| Err(Error::from(std::io::Error::other(e))))
    })
    .try_flatten();
    // The download's error, kept to say why the upload stopped.
    let failed = Arc::new(Mutex::new(None));
    let recorded = failed.clone();
    let digest = blob.digest.clone();
    let chunks = chunks.map(move |chunk| {
        chunk.map_err(|error| {
            let message = format!("the download of {digest} failed: {error}");
            *recorded.lock().expect("not poisoned") = Some(error);
            Error::from(std::io::Error::other(message))
        })
    });
    let chunks = Box::pin(reported(chunks, progress, blob));
    let uploaded = blobs::upload_blob_streamed(to, destination, &blob.digest, blob.size, chunks).await;
    match (uploaded, failed.lock().expect("not poisoned").take()) {
        // The download's error says why; the upload's follows from it.
        (Err(_), Some(download)) => Err(Piped::Download(download)),
        (uploaded, _) => uploaded.map_err(Piped::Upload),
    }
}

/// Which side of a pipe failed.
enum Piped {
    Download(Error),
    Upload(Error),
}

/// An image [`RepositoryClient::push`](crate::RepositoryClient::push) can send to a
/// registry: one resolved from a registry ([`Image`](crate::portable::pull::Image)), or one read from
/// disk ([`LocalImage`](crate::portable::push::LocalImage)).
pub trait ImageSource: Send + Sync {
    /// The digest of the manifest the destination will name.
    fn digest(&self) -> &str;

    /// What a push of it puts, and where each blob's bytes come from.
    #[doc(hidden)]
    fn push_plan(&self) -> PushPlan;
}

/// What a push puts into the destination, in order (built by an [`ImageSource`]).
#[doc(hidden)]
pub struct PushPlan {
    pub(crate) blobs: Vec<PlannedBlob>,
    /// Manifests put by digest before the top one: children before their index.
    pub(crate) below: Vec<PlannedManifest>,
    /// The manifest the destination's tag (or digest) names.
    pub(crate) top: PlannedManifest,
    /// The registry (and the image in it) the blobs of [`Origin::Source`] come from.
    pub(crate) source: Option<(Registry, ImageReference)>,
}

#[derive(Clone)]
pub(crate) struct PlannedManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
}

#[derive(Clone)]
pub(crate) struct PlannedBlob {
    pub digest: String,
    pub size: u64,
    pub origin: Origin,
}

/// Where a blob's bytes come from.
#[derive(Clone)]
pub(crate) enum Origin {
    /// Already fetched (a config) or read.
    Memory(Bytes),
    /// The registry the image was resolved from ([`PushPlan::source`]).
    Source,
    /// `size` bytes of a local file, from `offset` (a layout's blob, an archive's entry).
    File { path: PathBuf, offset: u64 },
}

/// Puts the blobs (largest first, `concurrency` at a time; mounted when the source is
/// another repository of the same registry), then the manifests below the top one by
/// digest, then the top one as `destination` names it.
pub(crate) async fn push(
    mut plan: PushPlan,
    to: &Registry,
    destination: &ImageReference,
    options: &CopyOptions,
) -> Result<CopyResult> {
    let digest = plan.top.digest.clone();
    if let Some(expected) = destination.digest()
        && expected != digest
    {
        return Err(Error::InvalidConfig(format!(
            "cannot copy {digest} to {destination}: a digest names its content"
        )));
    }
    plan.blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
    if let Some(progress) = options.reporter() {
        progress.emit(ProgressEvent::CopyPlanned {
            digest: digest.clone(),
            blobs: plan.blobs.len(),
            total_bytes: plan.blobs.iter().map(|b| b.size).sum(),
            destination: destination.to_string(),
        });
    }
    let mount_from = plan.source.as_ref().and_then(|(from, reference)| {
        let same_registry = reference.registry() == destination.registry()
            && from.provider_id() == to.provider_id()
            && reference.repository() != destination.repository();
        same_registry.then(|| reference.repository())
    });
    let source = plan.source.as_ref().map(|(from, reference)| (from, reference));
    let mut copied = stream::iter(
        plan.blobs
            .iter()
            .map(|blob| copy_blob(source, to, destination, blob, mount_from, options)),
    )
    .buffer_unordered(options.concurrency)
    .try_collect::<Vec<CopiedBlob>>()
    .await?;

    let mut manifests = Vec::new();
    if !options.dry_run {
        for manifest in &plan.below {
            let by_digest = destination.with_digest(&manifest.digest)?;
            blobs::put_manifest(to, &by_digest, &manifest.media_type, manifest.bytes.clone()).await?;
            manifests.push(manifest.digest.clone());
        }
        blobs::put_manifest(to, destination, &plan.top.media_type, plan.top.bytes.clone()).await?;
        manifests.push(digest.clone());
    }
    copied.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(CopyResult {
        destination: destination.clone(),
        digest,
        uploaded_bytes: copied
            .iter()
            .filter(|b| b.how == BlobPush::Uploaded)
            .map(|b| b.size)
            .sum(),
        blobs: copied,
        manifests,
        dry_run: options.dry_run,
    })
}

/// One blob: present, mounted, or uploaded from its origin (again from its first byte when
/// the registry drops the upload).
async fn copy_blob(
    source: Option<(&Registry, &ImageReference)>,
    to: &Registry,
    destination: &ImageReference,
    blob: &PlannedBlob,
    mount_from: Option<&str>,
    options: &CopyOptions,
) -> Result<CopiedBlob> {
    let progress = options.reporter();
    let copied = |how| {
        let reason = match how {
            BlobPush::Present => Some(SkipReason::Exists),
            BlobPush::Mounted => Some(SkipReason::Mounted),
            BlobPush::Uploaded => None,
        };
        if let (Some(progress), Some(reason)) = (progress, reason) {
            progress.emit(ProgressEvent::BlobSkipped {
                digest: blob.digest.clone(),
                size: blob.size,
                reason,
            });
        }
        CopiedBlob {
            digest: blob.digest.clone(),
            size: blob.size,
            how,
        }
    };
    if blobs::blob_exists(to, destination, &blob.digest).await? {
        return Ok(copied(BlobPush::Present));
    }
    if options.dry_run {
        return Ok(copied(if mount_from.is_some() {
            BlobPush::Mounted
        } else {
            BlobPush::Uploaded
        }));
    }
    if let Some(from) = mount_from
        && blobs::mount_blob(to, destination, &blob.digest, from).await?
    {
        return Ok(copied(BlobPush::Mounted));
    }
    let mut attempt = 1;
    loop {
        if let Some(progress) = progress {
            progress.emit(ProgressEvent::BlobStarted {
                digest: blob.digest.clone(),
                size: blob.size,
            });
        }
        let result = match (&blob.origin, source) {
            (Origin::Memory(bytes), _) => {
                let chunks = reported(stream::iter([Ok(bytes.clone())]), progress, blob);
                blobs::upload_blob(to, destination, &blob.digest, blob.size, chunks).await
            }
            (Origin::Source, Some((from, reference))) => {
                match stream_blob(from, reference, to, destination, blob, progress).await {
                    // The upload broke, not the download: the blob can be fetched again.
                    Err(Piped::Upload(error)) if error.is_retryable() && attempt < UPLOAD_ATTEMPTS => {
                        tracing::info!(digest = %blob.digest, attempt, "upload failed, sending the blob again: {error}");
                        attempt += 1;
                        continue;
                    }
                    Err(Piped::Upload(error) | Piped::Download(error)) => Err(error),
                    Ok(()) => Ok(()),
                }
            }
            (Origin::Source, None) => Err(Error::InvalidConfig(format!(
                "blob {} has no source to come from",
                blob.digest
            ))),
            (Origin::File { path, offset }, _) => {
                let chunks = reported(file_chunks(path.clone(), *offset, blob.size), progress, blob);
                blobs::upload_blob(to, destination, &blob.digest, blob.size, Box::pin(chunks)).await
            }
        };
        match result {
            Ok(()) => {
                if let Some(progress) = progress {
                    progress.emit(ProgressEvent::BlobDone {
                        digest: blob.digest.clone(),
                        size: blob.size,
                    });
                }
                return Ok(copied(BlobPush::Uploaded));
            }
            // The registry dropped the session: only a new one, from the first byte.
            Err(error) if is_upload_lost(&error) && attempt < UPLOAD_ATTEMPTS => {
                tracing::info!(digest = %blob.digest, attempt, "upload lost, sending the blob again: {error}");
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// `chunks` of `blob` on their way to an upload, counted for `progress`.
fn reported<S>(
    chunks: S,
    progress: Option<&Progress>,
    blob: &PlannedBlob,
) -> impl futures::Stream<Item = Result<Bytes>> + Send + 'static
where
    S: futures::Stream<Item = Result<Bytes>> + Send + 'static,
{
    let progress = progress.cloned();
    let (digest, size) = (blob.digest.clone(), blob.size);
    let mut done = 0u64;
    chunks.inspect(move |chunk| {
        if let (Some(progress), Ok(bytes)) = (&progress, chunk) {
            done += bytes.len() as u64;
            progress.emit(ProgressEvent::BlobProgress {
                digest: digest.clone(),
                done,
                size,
            });
        }
    })
}

/// `len` bytes of the file at `path` from `offset`, a piece at a time.
fn file_chunks(path: PathBuf, offset: u64, len: u64) -> impl futures::Stream<Item = Result<Bytes>> + Send {
    const PIECE: u64 = 1024 * 1024;
    let state = (path, offset, offset + len, None::<std::sync::Arc<std::fs::File>>);
    stream::try_unfold(state, |(path, at, end, file)| async move {
        if at >= end {
            return Ok(None);
        }
        let file = match file {
            Some(file) => file,
            None => std::sync::Arc::new(std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?),
        };
        let want = (end - at).min(PIECE) as usize;
        let reader = file.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buffer = vec![0; want];
            reader
                .read_exact_at(&mut buffer, at)
                .map(|()| Bytes::from(buffer))
        })
        .await
        .map_err(|e| Error::from(std::io::Error::other(e)))?
        .map_err(|e| Error::io(&path, e))?;
        Ok(Some((bytes, (path, at + want as u64, end, Some(file)))))
    })
}
