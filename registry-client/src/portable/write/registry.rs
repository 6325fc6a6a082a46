//! Any source into a repository of any registry: blobs streamed from the
//! source straight into the destination's upload (bounded memory, no temporary
//! file), skipped when present, mounted when both are one registry; manifests
//! last, so a copy that fails never leaves a tag pointing at missing blobs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::options::{CopiedBlob, CopyOptions, CopyResult};
use crate::driver::protocol::blobs::{self, BlobPush, is_upload_lost};
use crate::driver::protocol::registry::Registry;
use crate::error::{Error, Result};
use crate::model::events::{Progress, ProgressEvent, SkipReason};
use crate::model::reference::ImageReference;
use crate::portable::image::ImageSource;

/// Times a blob is sent from its first byte when the registry drops its upload.
const UPLOAD_ATTEMPTS: u32 = 3;

/// One blob to put.
struct PlannedBlob {
    digest: String,
    size: u64,
    /// An image config's bytes, held already; every other blob is opened from the source.
    config: Option<Bytes>,
}

/// Streams `blob` from a registry source's read path into the destination's upload,
/// in one request, the download starting beside the upload's first request. The read
/// path verifies (and resumes) the download and never lets the upload reach the end
/// of bytes that fail: the stream carries the error instead, so the upload commits
/// verified bytes without hashing them again.
async fn stream_blob(
    source: &dyn ImageSource,
    to: &Registry,
    destination: &ImageReference,
    blob: &PlannedBlob,
    progress: Option<&Progress>,
) -> std::result::Result<(), Piped> {
    let (opened, open) = tokio::sync::oneshot::channel();
    let opening = async {
        let _ = opened.send(source.open_blob(&blob.digest, blob.size).await);
    };
    let chunks = stream::once(async move {
        open.await
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
    let upload = blobs::upload_blob_streamed(to, destination, &blob.digest, blob.size, chunks);
    let ((), uploaded) = tokio::join!(opening, upload);
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

/// Puts the blobs (largest first, `concurrency` at a time; mounted when the source is
/// another repository of the same registry), then the manifests below the top one by
/// digest, then the top one as `destination` names it.
pub(crate) async fn push(
    source: &dyn ImageSource,
    to: &Registry,
    destination: &ImageReference,
    options: &CopyOptions,
) -> Result<CopyResult> {
    let manifests = source.manifests();
    let digest = manifests.digest().to_owned();
    if let Some(expected) = destination.digest()
        && expected != digest
    {
        return Err(Error::InvalidConfig(format!(
            "cannot copy {digest} to {destination}: a digest names its content"
        )));
    }
    // Every blob once: configs from memory, the rest from the source.
    let mut planned: BTreeMap<String, PlannedBlob> = BTreeMap::new();
    for image in manifests.images() {
        planned.insert(
            image.config.digest.clone(),
            PlannedBlob {
                digest: image.config.digest.clone(),
                size: image.config.bytes.len() as u64,
                config: Some(image.config.bytes.clone()),
            },
        );
    }
    for blob in manifests.all_blobs() {
        planned.entry(blob.digest.clone()).or_insert(PlannedBlob {
            digest: blob.digest,
            size: blob.size,
            config: None,
        });
    }
    let mut planned: Vec<PlannedBlob> = planned.into_values().collect();
    planned.sort_by_key(|b| std::cmp::Reverse(b.size));
    if let Some(progress) = options.reporter() {
        progress.emit(ProgressEvent::CopyPlanned {
            digest: digest.clone(),
            blobs: planned.len(),
            total_bytes: planned.iter().map(|b| b.size).sum(),
            destination: destination.to_string(),
        });
    }
    let mount_from = source.registry().and_then(|from| {
        let reference = from.reference();
        let same_registry = reference.registry() == destination.registry()
            && from.registry().provider_id() == to.provider_id()
            && reference.repository() != destination.repository();
        same_registry.then(|| reference.repository())
    });
    // A loop, not a closure over `&PlannedBlob`, so that the future stays `Send`.
    let mut jobs = Vec::new();
    for blob in &planned {
        jobs.push(copy_blob(source, to, destination, blob, mount_from, options));
    }
    let mut copied = stream::iter(jobs)
        .buffer_unordered(options.concurrency)
        .try_collect::<Vec<CopiedBlob>>()
        .await?;

    let mut put = Vec::new();
    if !options.dry_run {
        for manifest in manifests.below_top() {
            let by_digest = destination.with_digest(&manifest.descriptor.digest)?;
            blobs::put_manifest(
                to,
                &by_digest,
                &manifest.descriptor.media_type,
                manifest.bytes.clone(),
            )
            .await?;
            put.push(manifest.descriptor.digest.clone());
        }
        let top = manifests.top();
        blobs::put_manifest(to, destination, &top.descriptor.media_type, top.bytes.clone()).await?;
        put.push(digest.clone());
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
        manifests: put,
        dry_run: options.dry_run,
    })
}

/// One blob: present, mounted, or uploaded from its origin (again from its first byte when
/// the registry drops the upload).
async fn copy_blob(
    source: &dyn ImageSource,
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
        let result = match &blob.config {
            Some(bytes) => {
                let chunks = reported(stream::iter([Ok(bytes.clone())]), progress, blob);
                blobs::upload_blob(to, destination, &blob.digest, blob.size, chunks).await
            }
            // A registry's read is verified as it flows: streamed, hashed once.
            None if source.registry().is_some() => {
                match stream_blob(source, to, destination, blob, progress).await {
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
            // Any other source's bytes are checked by the upload before it commits.
            None => match source.open_blob(&blob.digest, blob.size).await {
                Ok(chunks) => {
                    let chunks = reported(chunks, progress, blob);
                    blobs::upload_blob(to, destination, &blob.digest, blob.size, Box::pin(chunks)).await
                }
                Err(error) => Err(error),
            },
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
