//! Manifests and image configs as served: the media types this crate reads,
//! their parsed forms, and the entries of an index.

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::platform::Platform;
use crate::error::{Error, Result};

/// The manifest media types this crate reads.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

    /// Sent as `Accept` on every manifest request.
    pub const ALL_MANIFESTS: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
}
use media_types::*;

/// What a manifest HEAD tells: enough to know what a tag points at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestDescriptor {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// The mirror or registry that answered (`None` for a manifest parsed
    /// from bytes the caller had).
    pub source: Option<String>,
}

/// A manifest as served: the exact bytes, and what they parse to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Manifest {
    pub descriptor: ManifestDescriptor,
    /// The bytes exactly as the registry sent them (their digest is `descriptor.digest`).
    pub bytes: Bytes,
    pub kind: ManifestKind,
}

/// A manifest as served, verified against its digest but not parsed: any
/// media type (what a pull-through cache passes on).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RawManifest {
    pub descriptor: ManifestDescriptor,
    /// The bytes exactly as the registry sent them.
    pub bytes: Bytes,
}

/// An image manifest or a multi-platform index (OCI or Docker media types).
#[derive(Debug, Clone)]
pub enum ManifestKind {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// An image's config blob: its digest, bytes, and parsed form.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImageConfig {
    pub digest: String,
    pub bytes: Bytes,
    pub config: ImageConfiguration,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        matches!(self.kind, ManifestKind::Index(_))
    }

    /// Parses manifest bytes whose media type is `declared` (the
    /// `Content-Type`, if it named a manifest type) or found in the body.
    pub fn parse(bytes: Bytes, digest: String, declared: Option<&str>, host: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
            #[serde(rename = "schemaVersion")]
            schema_version: Option<u32>,
        }
        let probe: Probe = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid_response(host, format!("manifest is not JSON: {e}")))?;
        let media_type = declared
            .filter(|t| ALL_MANIFESTS.contains(t))
            .map(str::to_owned)
            .or(probe.media_type)
            .or_else(|| probe.manifests.is_some().then(|| OCI_INDEX.to_owned()))
            .or_else(|| (probe.schema_version == Some(2)).then(|| OCI_MANIFEST.to_owned()))
            .unwrap_or_else(|| declared.unwrap_or("unknown").to_owned());
        let invalid =
            |e: serde_json::Error| Error::invalid_response(host, format!("invalid {media_type}: {e}"));
        let kind = match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                ManifestKind::Image(serde_json::from_slice(&bytes).map_err(invalid)?)
            }
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                ManifestKind::Index(serde_json::from_slice(&bytes).map_err(invalid)?)
            }
            _ => return Err(Error::UnsupportedMediaType { media_type }),
        };
        Ok(Manifest {
            descriptor: ManifestDescriptor {
                digest,
                media_type,
                size: bytes.len() as u64,
                source: None,
            },
            bytes,
            kind,
        })
    }

    /// The entries of an index: those with a platform (normalised), and
    /// nested indexes without one. Empty for an image manifest.
    pub(crate) fn entries(&self) -> (Vec<(&Descriptor, Platform)>, Vec<&Descriptor>) {
        let ManifestKind::Index(index) = &self.kind else {
            return (Vec::new(), Vec::new());
        };
        let with_platform = index
            .manifests()
            .iter()
            .filter_map(|d| d.platform().as_ref().map(|p| (d, Platform::from_oci(p))))
            .collect();
        let nested = index
            .manifests()
            .iter()
            .filter(|d| d.platform().is_none() && is_index_type(d.media_type().as_ref()))
            .collect();
        (with_platform, nested)
    }
}

pub(crate) fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}
