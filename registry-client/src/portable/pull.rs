//! Pulling: an image resolved from a registry, its manifests and configs
//! fetched for a platform (or all of them), its blobs read when a destination
//! asks (verified, resumed, from the mirror that served their manifest first,
//! through the layer cache when the client has one), and written to disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::driver::protocol::blobs::{self, BlobStream, GetBlobOptions};
use crate::driver::protocol::manifests::{get_image_config, get_manifest_via, resolve_platform};
use crate::driver::protocol::registry::Registry;
use crate::driver::sources::{Route, preferring};
use crate::error::{Error, Result};
use crate::model::manifest::{Manifest, ManifestKind};
use crate::model::platform::Platform;
use crate::model::reference::ImageReference;
pub use crate::portable::image::PlatformImage;
use crate::portable::image::{ImageManifests, ImageSource, RegistryBlobs, is_image_config};
use crate::portable::write;
pub use crate::portable::write::{DEFAULT_CONCURRENCY, OutputFormat, PullOptions, PullResult, PulledLayer};

/// A resolved image, ready to be written: manifests and configs are
/// fetched, layers are not (they are streamed when an output is written).
#[derive(Debug, Clone)]
pub struct Image {
    manifests: ImageManifests,
    blobs: RegistryBlobs,
}

/// Resolves `reference` for this client's platform.
pub(crate) async fn pull(registry: &Registry, reference: &ImageReference) -> Result<Image> {
    let route = registry.route(reference)?;
    let top = get_manifest_via(registry, &route, &preferring(&route, None), reference).await?;
    let (indexes, manifest) = resolve_platform(registry, &route, reference, top).await?;
    let platform = (!indexes.is_empty()).then(|| registry.platform().clone());
    let image = platform_image(registry, &route, reference, manifest, platform).await?;
    let manifests = ImageManifests {
        reference: Some(reference.clone()),
        tag: reference.tag().map(str::to_owned),
        indexes,
        images: vec![image],
        artifacts: Vec::new(),
        whole_index: false,
    };
    Ok(Image::new(registry, reference, route, manifests))
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
    let manifests = ImageManifests {
        reference: Some(reference.clone()),
        tag: reference.tag().map(str::to_owned),
        whole_index: !indexes.is_empty(),
        indexes,
        images,
        artifacts,
    };
    Ok(Image::new(registry, reference, route, manifests))
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
    fn new(
        registry: &Registry,
        reference: &ImageReference,
        route: Route,
        manifests: ImageManifests,
    ) -> Image {
        Image {
            manifests,
            blobs: RegistryBlobs::new(registry, reference, route),
        }
    }

    pub fn reference(&self) -> &ImageReference {
        self.blobs.reference()
    }

    /// The digest the reference resolved to: the top index's when all platforms
    /// were resolved, else the platform manifest's.
    pub fn digest(&self) -> &str {
        self.manifests.digest()
    }

    pub fn tag(&self) -> Option<&str> {
        self.manifests.tag()
    }

    /// The mirror or registry that served the image's (top) manifest.
    pub fn source(&self) -> &str {
        self.manifests.source()
    }

    /// The resolved platform images (one unless all platforms were asked for).
    pub fn images(&self) -> &[PlatformImage] {
        self.manifests.images()
    }

    /// The top-level index, if the reference named one.
    pub fn index(&self) -> Option<&Manifest> {
        self.manifests.index()
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
        write::docker_archive(self, path, options).await
    }

    /// Writes (or adds to) an OCI image layout at `dir`: one platform, or the
    /// whole index when all platforms were resolved. Blobs already in the
    /// layout are not fetched again; with a layer cache on the same
    /// filesystem, layers are hard-linked rather than copied.
    pub async fn write_oci_layout(&self, dir: &Path, options: &PullOptions) -> Result<PullResult> {
        write::oci_layout(self, dir, options).await
    }

    /// Writes the flattened root filesystem as a tar file at `path`.
    pub async fn write_rootfs(&self, path: &Path, options: &PullOptions) -> Result<PullResult> {
        write::rootfs(self, path, options).await
    }

    /// Streams the flattened root filesystem as a tar to `out`: layers are
    /// applied in order with whiteouts and opaque directories.
    pub async fn write_rootfs_to<W: std::io::Write + Send + 'static>(
        &self,
        out: W,
        options: &PullOptions,
    ) -> Result<(W, PullResult)> {
        write::rootfs_to(self, out, options).await
    }
}

/// A resolved image goes to any destination: a single-platform image as its platform
/// manifest; one resolved with
/// [`pull_all_platforms`](crate::RepositoryClient::pull_all_platforms) as the whole
/// index, byte for byte.
#[async_trait]
impl ImageSource for Image {
    fn manifests(&self) -> &ImageManifests {
        &self.manifests
    }

    async fn open_blob(&self, digest: &str, size: u64) -> Result<BlobStream> {
        let options = GetBlobOptions::default().size(size);
        blobs::get_blob(self.blobs.registry(), self.blobs.reference(), digest, options).await
    }

    async fn blob_files(&self, blobs: &[(String, u64)]) -> Result<HashMap<String, PathBuf>> {
        self.blobs.cached_files(blobs).await
    }

    fn registry(&self) -> Option<&RegistryBlobs> {
        Some(&self.blobs)
    }
}
