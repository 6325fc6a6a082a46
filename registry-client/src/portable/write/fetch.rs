//! How a destination on disk gets each blob of a source: a file the source
//! already has (the layer cache's, an OCI layout's), the layer cache filled
//! first, or the blob's bytes written straight into place. Bytes that do not
//! come from a registry's verified read are checked here, as they are written.

use std::collections::HashMap;
use std::path::PathBuf;

use futures::StreamExt;

use super::options::PullOptions;
use super::sink::{Durability, FileSink, blocking};
use crate::driver::protocol::blobs::Verifier;
use crate::error::{Error, Result};
use crate::formats::BlobInfo;
use crate::model::digest::Hasher;
use crate::model::events::ProgressEvent;
use crate::portable::image::{ImageSource, wanted};

/// A source's blobs, as a destination on disk fetches them.
pub(crate) struct Fetch<'a> {
    source: &'a dyn ImageSource,
    /// The blobs the source has as whole files.
    files: HashMap<String, PathBuf>,
    options: &'a PullOptions,
}

impl<'a> Fetch<'a> {
    /// Finds which of `blobs` the source has as files.
    pub(crate) async fn new(
        source: &'a dyn ImageSource,
        blobs: &[BlobInfo],
        options: &'a PullOptions,
    ) -> Result<Fetch<'a>> {
        let files = source.blob_files(&wanted(blobs)).await?;
        Ok(Fetch {
            source,
            files,
            options,
        })
    }

    /// Whether [`file`](Self::file) gives `blob` as a file (else it is fetched into place).
    pub(crate) fn has_file(&self, blob: &BlobInfo) -> bool {
        self.files.contains_key(&blob.digest)
            || self
                .source
                .registry()
                .is_some_and(|registry| registry.layer_cache().is_some())
    }

    /// `blob` as a whole file, and where it was fetched from (`None`: it was in the
    /// layer cache); the layer cache is filled first when the source has one. `None`
    /// when the source has no file of it.
    pub(crate) async fn file(&self, blob: &BlobInfo) -> Result<Option<(PathBuf, Option<String>)>> {
        let progress = self.options.progress.as_ref();
        if let Some(path) = self.files.get(&blob.digest) {
            let Some(_) = self.source.registry() else {
                // Not a cache's (checked when it was filled): checked before it is used.
                let (file, digest) = (path.clone(), blob.digest.clone());
                blocking(move || check_file(&file, &digest)).await?;
                return Ok(Some((path.clone(), Some(self.source_name()))));
            };
            if let Some(p) = progress {
                p.emit(ProgressEvent::BlobFromCache {
                    digest: blob.digest.clone(),
                    size: blob.size,
                });
            }
            return Ok(Some((path.clone(), None)));
        }
        let Some(registry) = self.source.registry() else {
            return Ok(None);
        };
        let Some(cache) = registry.layer_cache() else {
            return Ok(None);
        };
        let (atomic, file) = cache.staging(&blob.digest)?;
        let mut sink = FileSink::new(file, Durability::Synced)?;
        let source = registry
            .download_into(blob, self.manifest_source(blob), &mut sink, progress)
            .await?;
        sink.finish().await?;
        atomic.commit_if_absent()?;
        Ok(Some((cache.path(&blob.digest)?, Some(source))))
    }

    /// Writes `blob` into `file` from its current position, as durable as
    /// `durability` says; returns where it came from. On any error `file` holds a
    /// partial blob that the caller must discard.
    pub(crate) async fn fetch_into(
        &self,
        blob: &BlobInfo,
        file: std::fs::File,
        durability: Durability,
    ) -> Result<String> {
        let progress = self.options.progress.as_ref();
        let mut sink = FileSink::new(file, durability)?;
        if let Some(registry) = self.source.registry() {
            let source = registry
                .download_into(blob, self.manifest_source(blob), &mut sink, progress)
                .await?;
            sink.finish().await?;
            return Ok(source);
        }
        let mut chunks = self.source.open_blob(&blob.digest, blob.size).await?;
        let mut verifier = Verifier::new(&blob.digest)?;
        let emit = |event| {
            if let Some(p) = progress {
                p.emit(event)
            }
        };
        emit(ProgressEvent::BlobStarted {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        let mut done = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            done += chunk.len() as u64;
            if done > blob.size {
                break;
            }
            verifier.update(&chunk).await?;
            sink.write(chunk).await?;
            emit(ProgressEvent::BlobProgress {
                digest: blob.digest.clone(),
                done,
                size: blob.size,
            });
        }
        if done != blob.size {
            return Err(Error::SizeMismatch {
                digest: blob.digest.clone(),
                expected: blob.size,
                actual: done,
            });
        }
        verifier.check().await?;
        sink.finish().await?;
        emit(ProgressEvent::BlobDone {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        Ok(self.source_name())
    }

    /// Where a source that is not a registry says its image came from.
    fn source_name(&self) -> String {
        self.source.manifests().source().to_owned()
    }

    fn manifest_source(&self, blob: &BlobInfo) -> Option<&str> {
        self.source.manifests().manifest_source_of(&blob.digest)
    }
}

/// Whether the file at `path` hashes to `digest`.
fn check_file(path: &std::path::Path, digest: &str) -> Result<()> {
    let mut hasher = Hasher::for_digest(digest)?;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    let actual = hasher.finish();
    if actual != digest {
        return Err(Error::DigestMismatch {
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}
