//! Any source to an OCI image layout (written, or added to): one platform, or
//! a whole index. Blobs already in the layout are not fetched again; a blob
//! the source has as a file (the layer cache's, another layout's) is
//! hard-linked when it can be, rather than copied.

use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt, TryStreamExt};

use super::fetch::Fetch;
use super::options::{OutputFormat, PullOptions, PullResult, in_order, pull_result, pulled_layer};
use super::sink::{Durability, blocking, join_error};
use crate::error::{Error, Result};
use crate::formats::oci_layout::{BlobWriter, OciLayoutWriter};
use crate::model::events::ProgressEvent;
use crate::portable::image::{ImageSource, distinct, largest_first};

pub(crate) async fn oci_layout(
    source: &dyn ImageSource,
    dir: &Path,
    options: &PullOptions,
) -> Result<PullResult> {
    let manifests = source.manifests();
    manifests.announce(options.progress.as_ref());
    let layers = manifests.layers();
    // Artifacts' blobs are fetched like layers, but are not the images' layers.
    let blobs = distinct(manifests.all_blobs());
    // Opening may wait for the layout's lock: not on the runtime's threads,
    // and while the source looks for the files it has.
    let opened = blocking({
        let dir = dir.to_owned();
        move || OciLayoutWriter::open(&dir)
    });
    let (fetch, writer) = tokio::join!(Fetch::new(source, &blobs, options), opened);
    let (fetch, mut writer) = (&fetch?, writer?);
    let mut pulled = Vec::new();
    let mut jobs = Vec::new();
    for layer in largest_first(blobs, |l| l.size) {
        if writer.has_blob(&layer.digest) {
            if let Some(p) = &options.progress {
                p.emit(ProgressEvent::BlobFromCache {
                    digest: layer.digest.clone(),
                    size: layer.size,
                });
            }
            pulled.push(pulled_layer(&layer, None));
        } else {
            // Without a file of it, each blob streams straight into the layout.
            let direct = match fetch.has_file(&layer) {
                true => None,
                false => Some(writer.blob_writer(&layer.digest)?),
            };
            jobs.push((layer, direct));
        }
    }
    // Indexes, manifests and configs are written (and synced) on the
    // blocking pool while the layers download.
    let small_blobs = manifests.small_blobs();
    let small_written = tokio::task::spawn_blocking(move || {
        for (digest, bytes) in &small_blobs {
            writer.put_blob(digest, bytes)?;
        }
        Ok::<_, Error>(writer)
    });
    let fetched = stream::iter(jobs)
        .map(|(layer, direct)| async move {
            let fetched = match direct {
                Some((blob_writer, file)) => {
                    let source = fetch.fetch_into(&layer, file, Durability::Synced).await?;
                    Fetched::Direct(blob_writer, source)
                }
                None => {
                    let (path, source) = fetch.file(&layer).await?.expect("has_file said it has one");
                    Fetched::File(path, source)
                }
            };
            Ok::<_, Error>((layer, fetched))
        })
        .buffer_unordered(options.concurrency)
        .try_collect::<Vec<_>>()
        .await;
    // Awaited even when a download failed, so that the writer has
    // cleaned up (and unlocked the layout) when this returns.
    let mut writer = small_written.await.map_err(join_error)??;
    for (layer, fetched) in fetched? {
        let source = match fetched {
            Fetched::Direct(blob_writer, source) => {
                writer.finish_blob(blob_writer)?;
                Some(source)
            }
            Fetched::File(path, source) => {
                writer.link_or_copy_blob(&layer.digest, &path)?;
                source
            }
        };
        pulled.push(pulled_layer(&layer, source));
    }
    let ref_name = options
        .ref_name
        .clone()
        .or_else(|| manifests.tag().map(str::to_owned));
    writer.add_manifest(manifests.layout_descriptor()?, ref_name.as_deref());
    writer.commit()?;
    Ok(pull_result(
        manifests,
        OutputFormat::OciLayout,
        Some(dir.to_owned()),
        in_order(&layers, pulled),
    ))
}

/// How a blob reached the layout's staging.
enum Fetched {
    /// Written into the layout's own blob file, from a source.
    Direct(BlobWriter, String),
    /// A file the source had (or the layer cache, filled first; `None`: it was there).
    File(PathBuf, Option<String>),
}
