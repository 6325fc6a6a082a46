//! Any source to a flattened root filesystem: its layers applied in order,
//! with whiteouts and opaque directories, as one tar.

use std::path::Path;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::fetch::Fetch;
use super::options::{OutputFormat, PullOptions, PullResult, pull_result, pulled_layer};
use super::sink::{Durability, blocking};
use crate::error::{Error, Result};
use crate::formats::atomic::AtomicFile;
use crate::formats::{Compression, rootfs as flatten};
use crate::portable::image::ImageSource;

/// Writes the root filesystem as a tar file at `path` (whole or not at all).
pub(crate) async fn rootfs(
    source: &dyn ImageSource,
    path: &Path,
    options: &PullOptions,
) -> Result<PullResult> {
    let (atomic, file) = AtomicFile::create(path)?;
    let (out, mut result) = rootfs_to(source, std::io::BufWriter::new(file), options).await?;
    // The last buffered bytes must be written (and their error seen), and
    // the file be on disk, before the rename.
    let file = out.into_inner().map_err(|e| e.into_error())?;
    blocking(move || file.sync_all()).await?;
    atomic.commit()?;
    result.path = Some(path.to_owned());
    Ok(result)
}

/// Streams the root filesystem as a tar to `out`.
pub(crate) async fn rootfs_to<W: std::io::Write + Send + 'static>(
    source: &dyn ImageSource,
    out: W,
    options: &PullOptions,
) -> Result<(W, PullResult)> {
    let manifests = source.manifests();
    let image = manifests.single("root filesystem")?;
    manifests.announce(options.progress.as_ref());
    let layers = image.layers();
    for layer in &layers {
        Compression::from_media_type(&layer.media_type)?;
    }
    // Layers must be applied in order, so they are fetched (in parallel)
    // to files first: the source's own, or a scratch directory.
    let scratch = tempfile::tempdir()?;
    let fetch = &Fetch::new(source, &layers, options).await?;
    // A loop, not a closure over `&BlobInfo`, so that the future stays `Send`.
    let mut jobs = Vec::new();
    for layer in &layers {
        let scratch = scratch.path();
        jobs.push(async move {
            if let Some((path, source)) = fetch.file(layer).await? {
                return Ok::<_, Error>((layer, path, source));
            }
            let path = scratch.join(layer.digest.replace(':', "-"));
            let source = fetch
                .fetch_into(layer, std::fs::File::create(&path)?, Durability::Buffered)
                .await?;
            Ok((layer, path, Some(source)))
        });
    }
    let fetched = stream::iter(jobs)
        .buffered(options.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let inputs = fetched
        .iter()
        .map(|(layer, path, _)| {
            let reader: Box<dyn std::io::Read + Send> =
                Box::new(std::io::BufReader::new(std::fs::File::open(path)?));
            Ok((reader, Compression::from_media_type(&layer.media_type)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let out = blocking(move || flatten::flatten(inputs, out)).await?;
    drop(scratch);
    let pulled = fetched
        .into_iter()
        .map(|(l, _, source)| pulled_layer(l, source))
        .collect();
    Ok((out, pull_result(manifests, OutputFormat::Rootfs, None, pulled)))
}
