//! Where the blobs of an image resolved from a registry are read: the
//! registry, its mirrors (the one that served a blob's manifest first), and
//! the client's layer cache.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::driver::protocol::blobs::{BlobSink, GetBlobOptions, download};
use crate::driver::protocol::registry::Registry;
use crate::driver::sources::{Route, preferring};
use crate::error::{Error, Result};
use crate::formats::BlobInfo;
use crate::formats::layer_cache::LayerCache;
use crate::model::events::Progress;
use crate::model::reference::ImageReference;

/// Where a resolved image's blobs are read: the registry, its mirrors, and the
/// client's layer cache.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct RegistryBlobs {
    registry: Registry,
    reference: ImageReference,
    /// The sources the image may come from; blobs are asked of the source
    /// that served their manifest first.
    route: Route,
}

impl RegistryBlobs {
    pub(crate) fn new(registry: &Registry, reference: &ImageReference, route: Route) -> RegistryBlobs {
        RegistryBlobs {
            registry: registry.clone(),
            reference: reference.clone(),
            route,
        }
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn reference(&self) -> &ImageReference {
        &self.reference
    }

    pub(crate) fn layer_cache(&self) -> Option<&LayerCache> {
        self.registry.layer_cache()
    }

    /// The blobs already in the layer cache, by digest (none without a
    /// cache). One blocking task stats them all: on a warm pull these stats
    /// are most of the work, and a thread per layer would cost more.
    pub(crate) async fn cached_files(&self, blobs: &[(String, u64)]) -> Result<HashMap<String, PathBuf>> {
        let Some(cache) = self.registry.layer_cache() else {
            return Ok(HashMap::new());
        };
        let cache = cache.clone();
        let wanted = blobs.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut found = HashMap::new();
            for (digest, size) in wanted {
                if let Some(path) = cache.get(&digest, size)? {
                    found.insert(digest, path);
                }
            }
            Ok(found)
        })
        .await
        .map_err(|e| Error::from(std::io::Error::other(e)))?
    }

    /// Downloads `blob` into `sink`, from the source that served
    /// `manifest_source` first; returns the source that served it.
    pub(crate) async fn download_into<S: BlobSink>(
        &self,
        blob: &BlobInfo,
        manifest_source: Option<&str>,
        sink: &mut S,
        progress: Option<&Progress>,
    ) -> Result<String> {
        let route = self.route.with_events(progress);
        let order = preferring(&route, manifest_source);
        let options = GetBlobOptions {
            size: Some(blob.size),
            range: None,
            progress: progress.cloned(),
        };
        Ok(download(&route, &order, &blob.digest, &options, sink)
            .await?
            .source)
    }
}
