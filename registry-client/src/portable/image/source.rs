//! The one thing every destination asks of an image: its manifests, and its
//! blobs' bytes.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;

use super::manifests::ImageManifests;
use super::registry::RegistryBlobs;
use crate::driver::protocol::blobs::BlobStream;
use crate::error::Result;
use crate::formats::BlobInfo;

/// An image a destination can take: its manifests, and its blobs' bytes.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// The manifests and configs, which every destination writes as they are.
    fn manifests(&self) -> &ImageManifests;

    /// The bytes of blob `digest` (`size` bytes): a layer, or an artifact's blob. A
    /// source that reads them from a registry checks them as they flow; the bytes of
    /// any other source are checked by the destination as it takes them.
    async fn open_blob(&self, digest: &str, size: u64) -> Result<BlobStream>;

    /// The blobs among `blobs` that are whole files on disk already (in a layer
    /// cache, in an OCI layout), which a destination links or copies instead.
    #[doc(hidden)]
    async fn blob_files(&self, _blobs: &[(String, u64)]) -> Result<HashMap<String, PathBuf>> {
        Ok(HashMap::new())
    }

    /// The registry the image was resolved from, whose reads resume, fall back
    /// across mirrors, fill the layer cache, and can be mounted from.
    #[doc(hidden)]
    fn registry(&self) -> Option<&RegistryBlobs> {
        None
    }
}

/// `(digest, size)` of each blob, as [`ImageSource::blob_files`] takes them.
pub(crate) fn wanted(blobs: &[BlobInfo]) -> Vec<(String, u64)> {
    blobs.iter().map(|b| (b.digest.clone(), b.size)).collect()
}
