//! Pulling images: resolve the manifest for a platform, download the layers
//! in parallel (verified, resumable, optionally cached), write an output.

mod layers;
mod options;
mod sink;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use oci_spec::image::{Descriptor, DescriptorBuilder, MediaType};

use crate::driver::protocol::manifests::{get_image_config, get_manifest_via, resolve_platform};
use crate::driver::protocol::registry::Registry;
use crate::driver::sources::{Route, preferring};
use crate::error::{Error, Result};
use crate::formats::atomic::AtomicFile;
use crate::formats::docker_archive::{self, DockerArchiveLayout};
use crate::formats::layer_cache::LayerCache;
use crate::formats::oci_layout::OciLayoutWriter;
use crate::formats::{BlobInfo, Compression, rootfs};
use crate::model::events::{Progress, ProgressEvent};
use crate::model::manifest::{Manifest, ManifestKind};
use crate::model::platform::Platform;
use crate::model::reference::ImageReference;
use crate::portable::push::{ImageSource, Origin, PlannedBlob, PlannedManifest, PushPlan};
pub use layers::PlatformImage;
use layers::{artifact_blobs, distinct, in_order, is_image_config, largest_first, lists_blob, pulled_layer};
pub use options::{DEFAULT_CONCURRENCY, OutputFormat, PullOptions, PullResult, PulledLayer};
use sink::{Durability, blocking, copy_into, download_blob, join_error, open_at};

/// A resolved image, ready to be written: manifests and configs are
/// fetched, layers are not (they are streamed when an output is written).
#[derive(Debug, Clone)]
pub struct Image {
    registry: Registry,
    reference: ImageReference,
    /// Every index on the way, outermost first (empty for a plain manifest).
    indexes: Vec<Manifest>,
    images: Vec<PlatformImage>,
    /// Entries of a whole index that are not images (OCI artifacts: their
    /// config is not an image config). Kept, blobs and all, in an OCI layout.
    artifacts: Vec<Manifest>,
    /// Whether all platforms were resolved (an OCI layout then stores the index).
    whole_index: bool,
    /// The sources the image may come from; blobs are asked of the source
    /// that served their manifest first.
    route: Route,
}

/// Resolves `reference` for this client's platform.
pub(crate) async fn pull(registry: &Registry, reference: &ImageReference) -> Result<Image> {
    let route = registry.route(reference)?;
    let top = get_manifest_via(registry, &route, &preferring(&route, None), reference).await?;
    let (indexes, manifest) = resolve_platform(registry, &route, reference, top).await?;
    let platform = (!indexes.is_empty()).then(|| registry.platform().clone());
    let image = platform_image(registry, &route, reference, manifest, platform).await?;
    Ok(Image {
        registry: registry.clone(),
        reference: reference.clone(),
        indexes,
        images: vec![image],
        artifacts: Vec::new(),
        whole_index: false,
        route,
    })
}

/// Resolves `reference` with every platform of its index (nested indexes
/// included). Only an OCI layout can hold more than one platform.
pub(crate) async fn pull_all_platforms(registry: &Registry, reference: &ImageReference) -> Result<Image> {
    let route = registry.route(reference)?;
    let top = get_manifest_via(registry, &route, &preferring(&route, None), reference).await?;
    let mut indexes = Vec::new();
    let mut images = Vec::new();
    let mut artifacts = Vec::new();
    let mut pending = vec![(top, None)];
    while let Some((manifest, platform)) = pending.pop() {
        match &manifest.kind {
            ManifestKind::Index(index) => {
                if indexes.len() > 16 {
                    return Err(Error::invalid_response(
                        reference.registry(),
                        "too many nested indexes",
                    ));
                }
                let order = preferring(&route, manifest.descriptor.source.as_deref());
                for entry in index.manifests().iter().rev() {
                    let child = get_manifest_via(
                        registry,
                        &route,
                        &order,
                        &reference.with_digest(entry.digest().as_ref())?,
                    )
                    .await?;
                    pending.push((child, entry.platform().as_ref().map(Platform::from_oci)));
                }
                indexes.push(manifest);
            }
            ManifestKind::Image(image) if !indexes.is_empty() && !is_image_config(image.config()) => {
                artifacts.push(manifest)
            }
            ManifestKind::Image(_) => {
                images.push(platform_image(registry, &route, reference, manifest, platform).await?)
            }
        }
    }
    Ok(Image {
        registry: registry.clone(),
        reference: reference.clone(),
        whole_index: !indexes.is_empty(),
        indexes,
        images,
        artifacts,
        route,
    })
}

async fn platform_image(
    registry: &Registry,
    route: &Route,
    reference: &ImageReference,
    manifest: Manifest,
    platform: Option<Platform>,
) -> Result<PlatformImage> {
    let config = get_image_config(registry, route, reference, &manifest).await?;
    // Without an index, the config says what the platform is.
    let platform = platform.or_else(|| {
        let c = &config.config;
        Some(Platform::new(
            &c.os().to_string(),
            &c.architecture().to_string(),
            c.variant().as_deref(),
        ))
    });
    Ok(PlatformImage {
        manifest,
        config,
        platform,
    })
}

impl Image {
    pub fn reference(&self) -> &ImageReference {
        &self.reference
    }

    /// Whether all platforms were resolved: the whole index is the image.
    pub(crate) fn is_whole_index(&self) -> bool {
        self.whole_index
    }

    /// The indexes below the top one, outermost first.
    pub(crate) fn nested_indexes(&self) -> &[Manifest] {
        self.indexes.get(1..).unwrap_or_default()
    }

    /// The entries of a whole index that are not images.
    pub(crate) fn artifact_manifests(&self) -> &[Manifest] {
        &self.artifacts
    }

    /// Every layer of every image, and every blob of the artifacts (configs of images
    /// are in [`PlatformImage::config`]).
    pub(crate) fn all_blobs(&self) -> Vec<BlobInfo> {
        self.images
            .iter()
            .flat_map(PlatformImage::layers)
            .chain(self.artifacts.iter().flat_map(artifact_blobs))
            .collect()
    }

    /// The digest the reference resolved to: the top index's when all platforms
    /// were resolved, else the platform manifest's.
    pub fn digest(&self) -> &str {
        match (self.whole_index, self.indexes.first()) {
            (true, Some(index)) => &index.descriptor.digest,
            _ => &self.images[0].manifest.descriptor.digest,
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.reference.tag()
    }

    /// The mirror or registry that served the image's (top) manifest.
    pub fn source(&self) -> &str {
        self.indexes
            .first()
            .unwrap_or(&self.images[0].manifest)
            .descriptor
            .source
            .as_deref()
            .unwrap_or_default()
    }

    /// The resolved platform images (one unless all platforms were asked for).
    pub fn images(&self) -> &[PlatformImage] {
        &self.images
    }

    /// The top-level index, if the reference named one.
    pub fn index(&self) -> Option<&Manifest> {
        self.indexes.first()
    }

    fn single(&self, format: &str) -> Result<&PlatformImage> {
        match self.images.as_slice() {
            [image] => Ok(image),
            images => Err(Error::InvalidConfig(format!(
                "a {format} holds one platform, this pull resolved {}; pick one platform",
                images.len()
            ))),
        }
    }

    fn announce_for(&self, progress: Option<&Progress>) {
        let Some(progress) = progress else { return };
        let layers: Vec<BlobInfo> = self
            .images
            .iter()
            .flat_map(PlatformImage::layers)
            .chain(self.artifacts.iter().flat_map(artifact_blobs))
            .collect();
        progress.emit(ProgressEvent::ManifestResolved {
            digest: self.digest().to_owned(),
            platform: self.result_platform().map(|p| p.to_string()),
            layers: layers.len(),
            total_bytes: layers.iter().map(|l| l.size).sum(),
            source: self.source().to_owned(),
        });
    }

    fn result_platform(&self) -> Option<&Platform> {
        match (self.whole_index, self.images.as_slice()) {
            (false, [image]) => image.platform.as_ref(),
            _ => None,
        }
    }

    fn result(&self, format: OutputFormat, path: Option<PathBuf>, layers: Vec<PulledLayer>) -> PullResult {
        let configs: u64 = self.images.iter().map(|i| i.config.bytes.len() as u64).sum();
        let total_bytes = configs + layers.iter().map(|l| l.size).sum::<u64>();
        let downloaded_bytes = layers.iter().filter(|l| !l.from_cache).map(|l| l.size).sum();
        let media_type = match (self.whole_index, self.indexes.first()) {
            (true, Some(index)) => index.descriptor.media_type.clone(),
            _ => self.images[0].manifest.descriptor.media_type.clone(),
        };
        PullResult {
            digest: self.digest().to_owned(),
            source: self.source().to_owned(),
            media_type,
            tag: self.tag().map(str::to_owned),
            platform: self.result_platform().cloned(),
            total_bytes,
            downloaded_bytes,
            layers,
            format,
            path,
        }
    }

    /// Writes the image in `format` to `path` (see the `write_*` methods).
    pub async fn write(
        &self,
        format: OutputFormat,
        path: &Path,
        options: &PullOptions,
    ) -> Result<PullResult> {
        match format {
            OutputFormat::DockerArchive => self.write_docker_archive(path, options).await,
            OutputFormat::OciLayout => self.write_oci_layout(path, options).await,
            OutputFormat::Rootfs => self.write_rootfs(path, options).await,
        }
    }

    /// Writes a `docker load`-able tar to `path`. The tar's layout is known
    /// from the descriptors, so each layer is downloaded straight into its
    /// place in the file, in parallel. Nothing is left at `path` on failure.
    pub async fn write_docker_archive(&self, path: &Path, options: &PullOptions) -> Result<PullResult> {
        let image = self.single("docker archive")?;
        self.announce_for(options.progress.as_ref());
        let layers = image.layers();
        let repo_tags: Vec<String> = docker_archive::repo_tag(&self.reference).into_iter().collect();
        let layout =
            DockerArchiveLayout::new(&image.config_info(), &image.config.bytes, &layers, &repo_tags)?;
        let (atomic, file) = AtomicFile::create(path)?;
        let layout = blocking(move || layout.write_metadata(&file).map(|()| layout)).await?;
        let temp = atomic.temp_path();
        let layers = &layers;
        let cached = &self.cached_files(layers).await?;
        let pulled = stream::iter(largest_first(layout.layer_slots(), |slot| slot.size))
            .map(|slot| async move {
                let blob = layers
                    .iter()
                    .find(|l| l.digest == slot.digest)
                    .expect("a slot per layer");
                let source = match self.registry.layer_cache() {
                    Some(cache) => {
                        let (cached, source) = self.cached_layer(cache, blob, cached, options).await?;
                        let (temp, offset) = (temp.to_owned(), slot.offset);
                        blocking(move || copy_into(&cached, &temp, offset)).await?;
                        source
                    }
                    None => Some(
                        self.download_to_file(
                            blob,
                            open_at(temp, slot.offset)?,
                            options,
                            Durability::WrittenBack,
                        )
                        .await?,
                    ),
                };
                Ok::<_, Error>(pulled_layer(blob, source))
            })
            .buffer_unordered(options.concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        // On disk before it gets its name: a crash must not leave a named
        // archive with holes.
        let atomic = blocking(move || atomic.sync().map(|()| atomic)).await?;
        atomic.commit()?;
        Ok(self.result(
            OutputFormat::DockerArchive,
            Some(path.to_owned()),
            in_order(layers, pulled),
        ))
    }

    /// Writes (or adds to) an OCI image layout at `dir`: one platform, or the
    /// whole index when all platforms were resolved. Blobs already in the
    /// layout are not fetched again; with a layer cache on the same
    /// filesystem, layers are hard-linked rather than copied.
    pub async fn write_oci_layout(&self, dir: &Path, options: &PullOptions) -> Result<PullResult> {
        self.announce_for(options.progress.as_ref());
        let layers = distinct(self.images.iter().flat_map(PlatformImage::layers));
        // Artifacts' blobs are fetched like layers, but are not the images' layers.
        let blobs = distinct(
            layers
                .iter()
                .cloned()
                .chain(self.artifacts.iter().flat_map(artifact_blobs)),
        );
        let cached = self.cached_files(&blobs);
        // Opening may wait for the layout's lock: not on the runtime's threads.
        let mut writer = blocking({
            let dir = dir.to_owned();
            move || OciLayoutWriter::open(&dir)
        })
        .await?;
        let mut pulled = Vec::new();
        let mut jobs = Vec::new();
        let cached = &cached.await?;
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
                // Without a cache, each download streams straight into the layout.
                let direct = match self.registry.layer_cache() {
                    Some(_) => None,
                    None => Some(writer.blob_writer(&layer.digest)?),
                };
                jobs.push((layer, direct));
            }
        }
        // Indexes, manifests and configs are written (and synced) on the
        // blocking pool while the layers download.
        let small_blobs: Vec<(String, Bytes)> = self
            .indexes
            .iter()
            .filter(|_| self.whole_index)
            .chain(self.images.iter().map(|image| &image.manifest))
            .chain(&self.artifacts)
            .map(|m| (m.descriptor.digest.clone(), m.bytes.clone()))
            .chain(
                self.images
                    .iter()
                    .map(|image| (image.config.digest.clone(), image.config.bytes.clone())),
            )
            .collect();
        let small_written = tokio::task::spawn_blocking(move || {
            for (digest, bytes) in &small_blobs {
                writer.put_blob(digest, bytes)?;
            }
            Ok::<_, Error>(writer)
        });
        let fetched = stream::iter(jobs)
            .map(|(layer, direct)| async move {
                let fetched = match (direct, self.registry.layer_cache()) {
                    (Some((blob_writer, file)), _) => {
                        let source = self
                            .download_to_file(&layer, file, options, Durability::Synced)
                            .await?;
                        Fetched::Direct(blob_writer, source)
                    }
                    (None, Some(cache)) => {
                        let (path, source) = self.cached_layer(cache, &layer, cached, options).await?;
                        Fetched::Cached(path, source)
                    }
                    (None, None) => unreachable!("a direct writer is made when there is no cache"),
                };
                Ok::<_, Error>((layer, fetched))
            })
            .buffer_unordered(options.concurrency)
            .try_collect::<Vec<_>>()
            .await;
        // Awaited even when a download failed, so that the writer has
        // cleaned up (and unlocked the layout) when this returns.
        let mut writer = small_written.await.map_err(join_error)??;
        let fetched = fetched?;
        for (layer, fetched) in fetched {
            let source = match fetched {
                Fetched::Direct(blob_writer, source) => {
                    writer.finish_blob(blob_writer)?;
                    Some(source)
                }
                Fetched::Cached(path, source) => {
                    writer.link_or_copy_blob(&layer.digest, &path)?;
                    source
                }
            };
            pulled.push(pulled_layer(&layer, source));
        }

        let ref_name = options.ref_name.clone().or_else(|| self.tag().map(str::to_owned));
        writer.add_manifest(self.layout_descriptor()?, ref_name.as_deref());
        writer.commit()?;
        Ok(self.result(
            OutputFormat::OciLayout,
            Some(dir.to_owned()),
            in_order(&layers, pulled),
        ))
    }

    /// The index.json entry: the whole index, or the one platform's manifest.
    fn layout_descriptor(&self) -> Result<Descriptor> {
        let (manifest, platform) = match (self.whole_index, self.indexes.first()) {
            (true, Some(index)) => (index, None),
            _ => (
                &self.images[0].manifest,
                self.images[0]
                    .platform
                    .as_ref()
                    .filter(|_| !self.indexes.is_empty()),
            ),
        };
        let mut builder = DescriptorBuilder::default()
            .media_type(MediaType::from(manifest.descriptor.media_type.as_str()))
            .digest(
                manifest
                    .descriptor
                    .digest
                    .parse::<oci_spec::image::Digest>()
                    .map_err(|e| Error::invalid_response(self.reference.registry(), e.to_string()))?,
            )
            .size(manifest.descriptor.size);
        if let Some(p) = platform {
            let mut platform = oci_spec::image::PlatformBuilder::default()
                .os(oci_spec::image::Os::from(p.os.as_str()))
                .architecture(oci_spec::image::Arch::from(p.architecture.as_str()));
            if let Some(v) = &p.variant {
                platform = platform.variant(v.clone());
            }
            // What the registry's index or config said, not the caller's configuration.
            let platform = platform
                .build()
                .map_err(|e| Error::invalid_response(self.reference.registry(), e.to_string()))?;
            builder = builder.platform(platform);
        }
        builder
            .build()
            .map_err(|e| Error::invalid_response(self.reference.registry(), e.to_string()))
    }

    /// Writes the flattened root filesystem as a tar file at `path`.
    pub async fn write_rootfs(&self, path: &Path, options: &PullOptions) -> Result<PullResult> {
        let (atomic, file) = AtomicFile::create(path)?;
        let (out, mut result) = self
            .write_rootfs_to(std::io::BufWriter::new(file), options)
            .await?;
        // The last buffered bytes must be written (and their error seen), and
        // the file be on disk, before the rename.
        let file = out.into_inner().map_err(|e| e.into_error())?;
        blocking(move || file.sync_all()).await?;
        atomic.commit()?;
        result.path = Some(path.to_owned());
        Ok(result)
    }

    /// Streams the flattened root filesystem as a tar to `out`: layers are
    /// applied in order with whiteouts and opaque directories.
    pub async fn write_rootfs_to<W: std::io::Write + Send + 'static>(
        &self,
        out: W,
        options: &PullOptions,
    ) -> Result<(W, PullResult)> {
        let image = self.single("root filesystem")?;
        self.announce_for(options.progress.as_ref());
        let layers = image.layers();
        for layer in &layers {
            Compression::from_media_type(&layer.media_type)?;
        }
        // Layers must be applied in order, so they are fetched (in parallel)
        // to files first: the cache, or a scratch directory.
        let scratch = tempfile::tempdir()?;
        let cached = &self.cached_files(&layers).await?;
        let fetched = stream::iter(&layers)
            .map(|layer| {
                let scratch = scratch.path();
                async move {
                    if let Some(cache) = self.registry.layer_cache() {
                        let (path, source) = self.cached_layer(cache, layer, cached, options).await?;
                        return Ok::<_, Error>((layer, path, source));
                    }
                    let path = scratch.join(layer.digest.replace(':', "-"));
                    let source = self
                        .download_to_file(
                            layer,
                            std::fs::File::create(&path)?,
                            options,
                            Durability::Buffered,
                        )
                        .await?;
                    Ok((layer, path, Some(source)))
                }
            })
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
        let out = blocking(move || rootfs::flatten(inputs, out)).await?;
        drop(scratch);
        let pulled = fetched
            .into_iter()
            .map(|(l, _, source)| pulled_layer(l, source))
            .collect();
        Ok((out, self.result(OutputFormat::Rootfs, None, pulled)))
    }

    /// The layers already in the layer cache, by digest (none without a
    /// cache). The search starts at once, before the returned future is
    /// awaited. One blocking task stats them all: on a warm pull these stats
    /// are most of the work, and a thread per layer would cost more.
    fn cached_files(
        &self,
        layers: &[BlobInfo],
    ) -> impl Future<Output = Result<HashMap<String, PathBuf>>> + use<> {
        let search = self.registry.layer_cache().map(|cache| {
            let cache = cache.clone();
            let wanted: Vec<(String, u64)> = layers.iter().map(|l| (l.digest.clone(), l.size)).collect();
            tokio::task::spawn_blocking(move || {
                let mut found = HashMap::new();
                for (digest, size) in wanted {
                    if let Some(path) = cache.get(&digest, size)? {
                        found.insert(digest, path);
                    }
                }
                Ok(found)
            })
        });
        async move {
            match search {
                Some(task) => task.await.map_err(join_error)?,
                None => Ok(HashMap::new()),
            }
        }
    }

    /// The layer's file in the cache (`cached` holds what was found there),
    /// downloading it there first if missing. Returns the path and the
    /// source it was downloaded from (`None`: it was already cached).
    async fn cached_layer(
        &self,
        cache: &LayerCache,
        layer: &BlobInfo,
        cached: &HashMap<String, PathBuf>,
        options: &PullOptions,
    ) -> Result<(PathBuf, Option<String>)> {
        if let Some(path) = cached.get(&layer.digest) {
            if let Some(p) = &options.progress {
                p.emit(ProgressEvent::BlobFromCache {
                    digest: layer.digest.clone(),
                    size: layer.size,
                });
            }
            return Ok((path.clone(), None));
        }
        let (atomic, file) = cache.staging(&layer.digest)?;
        let source = self
            .download_to_file(layer, file, options, Durability::Synced)
            .await?;
        atomic.commit_if_absent()?;
        Ok((cache.path(&layer.digest)?, Some(source)))
    }

    /// Downloads a blob, from the source that served its manifest first;
    /// returns the source that served it.
    async fn download_to_file(
        &self,
        layer: &BlobInfo,
        file: std::fs::File,
        options: &PullOptions,
        durability: Durability,
    ) -> Result<String> {
        let route = self.route.with_events(options.progress.as_ref());
        let order = preferring(&route, self.manifest_source_of(&layer.digest));
        download_blob(&route, &order, layer, file, durability, options.progress.as_ref()).await
    }

    /// The source of the manifest that lists `digest` (a layer, a config, an
    /// artifact's blob).
    fn manifest_source_of(&self, digest: &str) -> Option<&str> {
        self.images
            .iter()
            .map(|image| &image.manifest)
            .chain(&self.artifacts)
            .find(|manifest| lists_blob(manifest, digest))
            .and_then(|manifest| manifest.descriptor.source.as_deref())
    }
}

/// A resolved image pushed elsewhere: a single-platform image as its platform manifest;
/// one resolved with [`pull_all_platforms`](crate::RepositoryClient::pull_all_platforms) as
/// the whole index, byte for byte.
impl ImageSource for Image {
    fn digest(&self) -> &str {
        Image::digest(self)
    }

    /// What a push puts: every blob once (configs from memory, the rest from the source),
    /// the manifests below the top one (children before their index), and the top one.
    fn push_plan(&self) -> PushPlan {
        let mut blobs: BTreeMap<String, PlannedBlob> = BTreeMap::new();
        for image in self.images() {
            blobs.insert(
                image.config.digest.clone(),
                PlannedBlob {
                    digest: image.config.digest.clone(),
                    size: image.config.bytes.len() as u64,
                    origin: Origin::Memory(image.config.bytes.clone()),
                },
            );
        }
        for layer in self.all_blobs() {
            blobs.entry(layer.digest.clone()).or_insert(PlannedBlob {
                digest: layer.digest,
                size: layer.size,
                origin: Origin::Source,
            });
        }
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
        let planned = |m: &Manifest| PlannedManifest {
            digest: m.descriptor.digest.clone(),
            media_type: m.descriptor.media_type.clone(),
            bytes: m.bytes.clone(),
        };
        PushPlan {
            blobs: blobs.into_values().collect(),
            below: below.into_iter().map(planned).collect(),
            top: planned(top),
            source: Some((self.registry.clone(), self.reference.clone())),
        }
    }
}

/// How a layer reached an OCI layout's staging.
enum Fetched {
    /// Downloaded into the layout's own blob file, from a source.
    Direct(crate::formats::oci_layout::BlobWriter, String),
    /// In the layer cache (downloaded from a source, or already there).
    Cached(PathBuf, Option<String>),
}
