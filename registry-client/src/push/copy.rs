//! Copying a resolved [`Image`] into a repository of any registry: blobs streamed from the
//! source's answer straight into the destination's upload (bounded memory, no temporary
//! file), skipped when present, mounted when both are one registry; manifests last, so a
//! copy that fails never leaves a tag pointing at missing blobs.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use tokio::sync::mpsc;

use super::upload::{BlobPush, is_upload_lost};
use crate::client::{Manifest, RepositoryClient};
use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::pull::{BlobSink, Image};
use crate::reference::ImageReference;

/// Blobs copied at once unless told otherwise.
pub const DEFAULT_COPY_CONCURRENCY: usize = 4;
/// Chunks in flight between a blob's download and its upload: with the sources' chunk
/// sizes, a few hundred KiB per blob.
const PIPE_CHUNKS: usize = 16;
/// Times a blob is sent from its first byte when the registry drops its upload.
const UPLOAD_ATTEMPTS: u32 = 3;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    concurrency: usize,
    dry_run: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            concurrency: DEFAULT_COPY_CONCURRENCY,
            dry_run: false,
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
}

/// One blob of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedBlob {
    pub digest: String,
    pub size: u64,
    /// What was done with it (in a dry run: what would be; `Uploaded` for a mount that
    /// might still fall back to an upload).
    pub how: BlobPush,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Image {
    /// Copies this image to `destination` (a repository with a tag, or with the digest of
    /// what is copied) through `to`, a client for the destination's registry (another
    /// provider, another cloud). A single-platform image is copied as its platform manifest;
    /// one resolved with [`pull_all_platforms`](RepositoryClient::pull_all_platforms) as
    /// the whole index, byte for byte. Blobs go first, in parallel, largest first; then the
    /// manifests, the tagged one last.
    pub async fn copy_to(
        &self,
        to: &RepositoryClient,
        destination: &ImageReference,
        options: &CopyOptions,
    ) -> Result<CopyResult> {
        let digest = self.digest().to_owned();
        if let Some(expected) = destination.digest()
            && expected != digest
        {
            return Err(Error::InvalidConfig(format!(
                "cannot copy {digest} to {destination}: a digest names its content"
            )));
        }
        let plan = self.copy_plan();
        let same_registry = self.reference().registry() == destination.registry()
            && self.client().provider_id() == to.provider_id();
        let from = self.reference().repository().to_owned();
        let copies = stream::iter(plan.blobs.iter().map(|blob| {
            let from = (same_registry && from != destination.repository()).then_some(from.as_str());
            self.copy_blob(to, destination, blob, from, options.dry_run)
        }))
        .buffer_unordered(options.concurrency)
        .try_collect::<Vec<CopiedBlob>>()
        .await?;

        let mut manifests = Vec::new();
        if !options.dry_run {
            for manifest in &plan.manifests {
                let by_digest = destination.with_digest(&manifest.descriptor.digest)?;
                to.put_manifest(
                    &by_digest,
                    &manifest.descriptor.media_type,
                    manifest.bytes.clone(),
                )
                .await?;
                manifests.push(manifest.descriptor.digest.clone());
            }
            let top = plan.top;
            to.put_manifest(destination, &top.descriptor.media_type, top.bytes.clone())
                .await?;
            manifests.push(top.descriptor.digest.clone());
        }
        let mut blobs = copies;
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(CopyResult {
            destination: destination.clone(),
            digest,
            uploaded_bytes: blobs
                .iter()
                .filter(|b| b.how == BlobPush::Uploaded)
                .map(|b| b.size)
                .sum(),
            blobs,
            manifests,
            dry_run: options.dry_run,
        })
    }

    /// What a copy puts, in order: the blobs (each once, largest first), the manifests
    /// below the top one (children before their index), and the top one.
    fn copy_plan(&self) -> CopyPlan<'_> {
        let mut blobs: BTreeMap<String, PlannedBlob> = BTreeMap::new();
        for image in self.images() {
            blobs.insert(
                image.config.digest.clone(),
                PlannedBlob {
                    digest: image.config.digest.clone(),
                    size: image.config.bytes.len() as u64,
                    in_memory: Some(image.config.bytes.clone()),
                },
            );
        }
        for layer in self.all_blobs() {
            blobs.entry(layer.digest.clone()).or_insert(PlannedBlob {
                digest: layer.digest,
                size: layer.size,
                in_memory: None,
            });
        }
        let mut blobs: Vec<PlannedBlob> = blobs.into_values().collect();
        blobs.sort_by_key(|b| std::cmp::Reverse(b.size));

        // Children first: images and artifacts, then indexes innermost first.
        let mut below: Vec<&Manifest> = Vec::new();
        let top = match self.index() {
            Some(index) if self.is_whole_index() => {
                below.extend(self.images().iter().map(|i| &i.manifest));
                below.extend(self.artifact_manifests());
                below.extend(self.nested_indexes().iter().rev());
                index
            }
            _ => &self.images()[0].manifest,
        };
        CopyPlan {
            blobs,
            manifests: below,
            top,
        }
    }

    async fn copy_blob(
        &self,
        to: &RepositoryClient,
        destination: &ImageReference,
        blob: &PlannedBlob,
        mount_from: Option<&str>,
        dry_run: bool,
    ) -> Result<CopiedBlob> {
        let copied = |how| CopiedBlob {
            digest: blob.digest.clone(),
            size: blob.size,
            how,
        };
        if to.blob_exists(destination, &blob.digest).await? {
            return Ok(copied(BlobPush::Present));
        }
        if dry_run {
            return Ok(copied(if mount_from.is_some() {
                BlobPush::Mounted
            } else {
                BlobPush::Uploaded
            }));
        }
        if let Some(from) = mount_from
            && to.mount_blob(destination, &blob.digest, from).await?
        {
            return Ok(copied(BlobPush::Mounted));
        }
        let mut attempt = 1;
        loop {
            let result = match &blob.in_memory {
                Some(bytes) => {
                    let chunks = stream::iter([Ok(bytes.clone())]);
                    to.upload_blob(destination, &blob.digest, blob.size, chunks).await
                }
                None => self.stream_blob(to, destination, blob).await,
            };
            match result {
                Ok(()) => return Ok(copied(BlobPush::Uploaded)),
                // The registry dropped the session: only a new one, from the first byte.
                Err(error) if is_upload_lost(&error) && attempt < UPLOAD_ATTEMPTS => {
                    tracing::info!(digest = %blob.digest, attempt, "upload lost, sending the blob again: {error}");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Downloads `blob` into a pipe that the destination's upload reads: the download is
    /// verified (and resumed) by [`RepositoryClient::fetch_blob`], the upload checks the
    /// bytes again before it commits them.
    async fn stream_blob(
        &self,
        to: &RepositoryClient,
        destination: &ImageReference,
        blob: &PlannedBlob,
    ) -> Result<()> {
        let (sender, receiver) = mpsc::channel(PIPE_CHUNKS);
        let mut sink = PipeSink {
            sender,
            hasher: Hasher::for_digest(&blob.digest)?,
        };
        let chunks = Box::pin(stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (chunk, receiver))
        }));
        let download = async {
            let result = self
                .client()
                .fetch_blob(self.reference(), &blob.digest, Some(blob.size), &mut sink)
                .await;
            // The upload sees the end of its bytes (or the error) once the sink is gone.
            if let Err(error) = &result {
                let _ = sink
                    .sender
                    .send(Err(Error::Io(std::io::Error::other(format!(
                        "the download of {} failed: {error}",
                        blob.digest
                    )))))
                    .await;
            }
            drop(sink);
            result
        };
        let upload = to.upload_blob(destination, &blob.digest, blob.size, chunks);
        let (downloaded, uploaded) = tokio::join!(download, upload);
        match (downloaded, uploaded) {
            // The upload failed first, and the download stopped because of it.
            (Err(_), Err(upload)) if upload_failed(&upload) => Err(upload),
            // The download's error says why; the upload's follows from it.
            (Err(download), _) => Err(download),
            (Ok(_), uploaded) => uploaded,
        }
    }
}

/// Whether an upload's error is its own, rather than the end of the bytes it was given.
fn upload_failed(error: &Error) -> bool {
    !matches!(error, Error::Io(e) if e.to_string().starts_with("the download of "))
        && !matches!(error, Error::DigestMismatch { .. })
}

struct CopyPlan<'a> {
    blobs: Vec<PlannedBlob>,
    manifests: Vec<&'a Manifest>,
    top: &'a Manifest,
}

struct PlannedBlob {
    digest: String,
    size: u64,
    /// A config: already fetched (and verified) with its manifest.
    in_memory: Option<Bytes>,
}

/// A download's bytes passed on to an upload as they arrive.
struct PipeSink {
    sender: mpsc::Sender<Result<Bytes>>,
    hasher: Hasher,
}

impl BlobSink for PipeSink {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.hasher.update(&chunk);
        self.sender
            .send(Ok(chunk))
            .await
            .map_err(|_| Error::Io(std::io::Error::other("the upload stopped reading")))
    }

    async fn restart(&mut self) -> Result<()> {
        // What went up cannot be taken back; the upload is cancelled instead.
        Err(Error::Io(std::io::Error::other(
            "bytes already sent to the destination",
        )))
    }

    async fn digest(&mut self) -> Result<String> {
        let fresh = self.hasher.fresh();
        Ok(std::mem::replace(&mut self.hasher, fresh).finish())
    }
}
