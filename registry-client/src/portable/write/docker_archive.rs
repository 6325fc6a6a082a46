//! Any source to a `docker load`-able tar. The tar's layout is known from the
//! descriptors, so each layer is written straight into its place in the file,
//! in parallel. Nothing is left at the path on failure.

use std::path::Path;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::fetch::Fetch;
use super::options::{OutputFormat, PullOptions, PullResult, in_order, pull_result, pulled_layer};
use super::sink::{Durability, blocking, copy_into, open_at};
use crate::error::{Error, Result};
use crate::formats::atomic::AtomicFile;
use crate::formats::docker_archive::{self, DockerArchiveLayout};
use crate::portable::image::{ImageSource, largest_first};

pub(crate) async fn docker_archive(
    source: &dyn ImageSource,
    path: &Path,
    options: &PullOptions,
) -> Result<PullResult> {
    let manifests = source.manifests();
    let image = manifests.single("docker archive")?;
    manifests.announce(options.progress.as_ref());
    let layers = image.layers();
    let repo_tags: Vec<String> = manifests
        .reference
        .as_ref()
        .and_then(docker_archive::repo_tag)
        .into_iter()
        .collect();
    let layout = DockerArchiveLayout::new(&image.config_info(), &image.config.bytes, &layers, &repo_tags)?;
    let (atomic, file) = AtomicFile::create(path)?;
    let layout = blocking(move || layout.write_metadata(&file).map(|()| layout)).await?;
    let temp = atomic.temp_path();
    let layers = &layers;
    let fetch = &Fetch::new(source, layers, options).await?;
    // A loop, not a closure over `&LayerSlot`: such a closure would keep the
    // future from being `Send` (rustc cannot prove it for every lifetime).
    let mut jobs = Vec::new();
    for slot in largest_first(layout.layer_slots(), |slot| slot.size) {
        jobs.push(async move {
            let blob = layers
                .iter()
                .find(|l| l.digest == slot.digest)
                .expect("a slot per layer");
            let source = match fetch.file(blob).await? {
                Some((file, source)) => {
                    let (temp, offset) = (temp.to_owned(), slot.offset);
                    blocking(move || copy_into(&file, &temp, offset)).await?;
                    source
                }
                None => Some(
                    fetch
                        .fetch_into(blob, open_at(temp, slot.offset)?, Durability::WrittenBack)
                        .await?,
                ),
            };
            Ok::<_, Error>(pulled_layer(blob, source))
        });
    }
    let pulled = stream::iter(jobs)
        .buffer_unordered(options.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    // On disk before it gets its name: a crash must not leave a named
    // archive with holes.
    let atomic = blocking(move || atomic.sync().map(|()| atomic)).await?;
    atomic.commit()?;
    Ok(pull_result(
        manifests,
        OutputFormat::DockerArchive,
        Some(path.to_owned()),
        in_order(layers, pulled),
    ))
}
