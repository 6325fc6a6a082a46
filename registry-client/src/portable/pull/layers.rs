//! An image's blobs as the writers fetch them: each platform's layers and
//! config, without repeats, biggest first, reported in manifest order.

use oci_spec::image::Descriptor;

use super::options::PulledLayer;
use crate::formats::BlobInfo;
use crate::model::manifest::{ImageConfig, Manifest, ManifestKind};
use crate::model::platform::Platform;

/// One platform's image: its manifest and config.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlatformImage {
    pub manifest: Manifest,
    pub config: ImageConfig,
    pub platform: Option<Platform>,
}

impl PlatformImage {
    /// The layers as the writers see them.
    pub(crate) fn layers(&self) -> Vec<BlobInfo> {
        let ManifestKind::Image(image) = &self.manifest.kind else {
            return Vec::new();
        };
        image
            .layers()
            .iter()
            .map(|d| BlobInfo {
                digest: d.digest().to_string(),
                size: d.size(),
                media_type: d.media_type().to_string(),
            })
            .collect()
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

pub(crate) fn lists_blob(manifest: &Manifest, digest: &str) -> bool {
    let ManifestKind::Image(image) = &manifest.kind else {
        return false;
    };
    std::iter::once(image.config())
        .chain(image.layers())
        .any(|d| d.digest().as_ref() == digest)
}

/// A layer as pulled: downloaded from `source`, or (`None`) from the cache.
pub(crate) fn pulled_layer(layer: &BlobInfo, source: Option<String>) -> PulledLayer {
    PulledLayer {
        digest: layer.digest.clone(),
        size: layer.size,
        media_type: layer.media_type.clone(),
        from_cache: source.is_none(),
        source,
    }
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
pub(crate) fn artifact_blobs(manifest: &Manifest) -> Vec<BlobInfo> {
    let ManifestKind::Image(image) = &manifest.kind else {
        return Vec::new();
    };
    std::iter::once(image.config())
        .chain(image.layers())
        .map(|d| BlobInfo {
            digest: d.digest().to_string(),
            size: d.size(),
            media_type: d.media_type().to_string(),
        })
        .collect()
}

/// Downloads ordered biggest first, so that the longest one does not start
/// last and hold up the whole pull.
pub(crate) fn largest_first<T>(items: impl IntoIterator<Item = T>, size: impl Fn(&T) -> u64) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    items.sort_by_key(|item| std::cmp::Reverse(size(item)));
    items
}

/// The pulled layers in manifest order (downloads finish in any order).
pub(crate) fn in_order(layers: &[BlobInfo], pulled: Vec<PulledLayer>) -> Vec<PulledLayer> {
    layers
        .iter()
        .filter_map(|l| pulled.iter().find(|p| p.digest == l.digest).cloned())
        .collect()
}
