//! What every destination writes of an image: its manifests (the indexes on the
//! way, each platform's manifest and config, an index's artifacts) and the blobs
//! they list, without repeats, reported in manifest order.

use oci_spec::image::{Descriptor, DescriptorBuilder, MediaType};

use crate::error::{Error, Result};
use crate::formats::BlobInfo;
use crate::model::events::{Progress, ProgressEvent};
use crate::model::manifest::{ImageConfig, Manifest, ManifestKind};
use crate::model::platform::Platform;
use crate::model::reference::ImageReference;

/// An image's manifests and configs, wherever it came from: one platform's image, or
/// a whole index (its platforms, its nested indexes, its artifacts).
#[derive(Debug, Clone)]
pub struct ImageManifests {
    /// The registry's name for it, if it came from one (a docker archive's `RepoTags`).
    pub(crate) reference: Option<ImageReference>,
    /// The name it had where it came from: a tag, a layout entry's ref name.
    pub(crate) tag: Option<String>,
    /// Every index on the way, outermost first (empty for a plain manifest).
    pub(crate) indexes: Vec<Manifest>,
    pub(crate) images: Vec<PlatformImage>,
    /// Entries of a whole index that are not images (OCI artifacts: their config is
    /// not an image config). Kept, blobs and all, by an OCI layout and a registry.
    pub(crate) artifacts: Vec<Manifest>,
    /// Whether all platforms were resolved: the whole index is the image.
    pub(crate) whole_index: bool,
}

/// One platform's image: its manifest and config.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlatformImage {
    pub manifest: Manifest,
    pub config: ImageConfig,
    pub platform: Option<Platform>,
}

impl ImageManifests {
    /// The digest the image is known by: the top index's when it is a whole index,
    /// else the platform manifest's.
    pub fn digest(&self) -> &str {
        &self.top().descriptor.digest
    }

    /// The manifest a destination's tag names.
    pub fn top(&self) -> &Manifest {
        match (self.whole_index, self.indexes.first()) {
            (true, Some(index)) => index,
            _ => &self.images[0].manifest,
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Where the top manifest came from: the mirror or registry that served it, or
    /// the file it was read from.
    pub fn source(&self) -> &str {
        self.indexes
            .first()
            .unwrap_or(&self.images[0].manifest)
            .descriptor
            .source
            .as_deref()
            .unwrap_or_default()
    }

    /// The platform images (one unless the image is a whole index).
    pub fn images(&self) -> &[PlatformImage] {
        &self.images
    }

    /// The top-level index, if the image was named by one.
    pub fn index(&self) -> Option<&Manifest> {
        self.indexes.first()
    }

    /// Whether the image is a whole index, every platform of it.
    pub fn is_whole_index(&self) -> bool {
        self.whole_index
    }

    /// The manifests a registry is given before the top one, by digest: children
    /// before their index (empty unless the image is a whole index).
    pub(crate) fn below_top(&self) -> Vec<&Manifest> {
        if !self.whole_index {
            return Vec::new();
        }
        let mut below: Vec<&Manifest> = self.images.iter().map(|i| &i.manifest).collect();
        below.extend(&self.artifacts);
        below.extend(self.indexes.get(1..).unwrap_or_default().iter().rev());
        below
    }

    /// The manifests and configs an OCI layout stores as blobs (a whole index's indexes
    /// too), as digest and bytes.
    pub(crate) fn small_blobs(&self) -> Vec<(String, bytes::Bytes)> {
        self.indexes
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
            .collect()
    }

    /// Every layer of every image, and every blob of the artifacts, as often as
    /// they are listed (configs of images are in [`PlatformImage::config`]).
    pub(crate) fn all_blobs(&self) -> Vec<BlobInfo> {
        self.images
            .iter()
            .flat_map(PlatformImage::layers)
            .chain(self.artifacts.iter().flat_map(artifact_blobs))
            .collect()
    }

    /// The layers of every image, without repeats.
    pub(crate) fn layers(&self) -> Vec<BlobInfo> {
        distinct(self.images.iter().flat_map(PlatformImage::layers))
    }

    /// The one platform image of a format that holds one.
    pub(crate) fn single(&self, format: &str) -> Result<&PlatformImage> {
        match self.images.as_slice() {
            [image] => Ok(image),
            images => Err(Error::InvalidConfig(format!(
                "a {format} holds one platform, this image has {}; pick one platform",
                images.len()
            ))),
        }
    }

    /// Tells `progress` what is about to be written.
    pub(crate) fn announce(&self, progress: Option<&Progress>) {
        let Some(progress) = progress else { return };
        let blobs = self.all_blobs();
        progress.emit(ProgressEvent::ManifestResolved {
            digest: self.digest().to_owned(),
            platform: self.result_platform().map(|p| p.to_string()),
            layers: blobs.len(),
            total_bytes: blobs.iter().map(|l| l.size).sum(),
            source: self.source().to_owned(),
        });
    }

    pub(crate) fn result_platform(&self) -> Option<&Platform> {
        match (self.whole_index, self.images.as_slice()) {
            (false, [image]) => image.platform.as_ref(),
            _ => None,
        }
    }

    /// The index.json entry of an OCI layout: the whole index, or the one platform's
    /// manifest (with its platform when an index named it).
    pub(crate) fn layout_descriptor(&self) -> Result<Descriptor> {
        let manifest = self.top();
        let platform = self.images[0]
            .platform
            .as_ref()
            .filter(|_| !self.whole_index && !self.indexes.is_empty());
        // What the registry's (or the file's) index or config said, not the caller's.
        let invalid = |e: &dyn std::fmt::Display| Error::invalid_response(self.source(), e.to_string());
        let mut builder = DescriptorBuilder::default()
            .media_type(MediaType::from(manifest.descriptor.media_type.as_str()))
            .digest(
                manifest
                    .descriptor
                    .digest
                    .parse::<oci_spec::image::Digest>()
                    .map_err(|e| invalid(&e))?,
            )
            .size(manifest.descriptor.size);
        if let Some(p) = platform {
            let mut platform = oci_spec::image::PlatformBuilder::default()
                .os(oci_spec::image::Os::from(p.os.as_str()))
                .architecture(oci_spec::image::Arch::from(p.architecture.as_str()));
            if let Some(v) = &p.variant {
                platform = platform.variant(v.clone());
            }
            builder = builder.platform(platform.build().map_err(|e| invalid(&e))?);
        }
        builder.build().map_err(|e| invalid(&e))
    }

    /// The source of the manifest that lists `digest` (a layer, a config, an
    /// artifact's blob): its blobs are asked of that source first.
    pub(crate) fn manifest_source_of(&self, digest: &str) -> Option<&str> {
        self.images
            .iter()
            .map(|image| &image.manifest)
            .chain(&self.artifacts)
            .find(|manifest| lists_blob(manifest, digest))
            .and_then(|manifest| manifest.descriptor.source.as_deref())
    }
}

impl PlatformImage {
    /// The layers as the writers see them.
    pub(crate) fn layers(&self) -> Vec<BlobInfo> {
        let ManifestKind::Image(image) = &self.manifest.kind else {
            return Vec::new();
        };
        image.layers().iter().map(blob_info).collect()
    }

    pub(crate) fn config_info(&self) -> BlobInfo {
        let media_type = match &self.manifest.kind {
            ManifestKind::Image(image) => image.config().media_type().to_string(),
            ManifestKind::Index(_) => String::new(),
        };
        BlobInfo {
            digest: self.config.digest.clone(),
            size: self.config.bytes.len() as u64,
            media_type,
        }
    }
}

fn blob_info(d: &Descriptor) -> BlobInfo {
    BlobInfo {
        digest: d.digest().to_string(),
        size: d.size(),
        media_type: d.media_type().to_string(),
    }
}

fn lists_blob(manifest: &Manifest, digest: &str) -> bool {
    let ManifestKind::Image(image) = &manifest.kind else {
        return false;
    };
    std::iter::once(image.config())
        .chain(image.layers())
        .any(|d| d.digest().as_ref() == digest)
}

/// Whether a manifest's config is an image config (OCI or Docker), rather
/// than an artifact's (for example the OCI empty config `{}`).
pub(crate) fn is_image_config(config: &Descriptor) -> bool {
    matches!(
        config.media_type().to_string().as_str(),
        "application/vnd.oci.image.config.v1+json" | "application/vnd.docker.container.image.v1+json"
    )
}

/// The blobs without repeats (a layer shared by several platforms is fetched once).
pub(crate) fn distinct(blobs: impl IntoIterator<Item = BlobInfo>) -> Vec<BlobInfo> {
    let mut unique: Vec<BlobInfo> = Vec::new();
    for blob in blobs {
        if !unique.iter().any(|u| u.digest == blob.digest) {
            unique.push(blob);
        }
    }
    unique
}

/// An artifact manifest's config and layers, as blobs to fetch.
fn artifact_blobs(manifest: &Manifest) -> Vec<BlobInfo> {
    let ManifestKind::Image(image) = &manifest.kind else {
        return Vec::new();
    };
    std::iter::once(image.config())
        .chain(image.layers())
        .map(blob_info)
        .collect()
}

/// Fetches ordered biggest first, so that the longest one does not start
/// last and hold up the whole copy.
pub(crate) fn largest_first<T>(items: impl IntoIterator<Item = T>, size: impl Fn(&T) -> u64) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    items.sort_by_key(|item| std::cmp::Reverse(size(item)));
    items
}
