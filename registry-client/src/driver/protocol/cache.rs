//! In-memory response cache: tag lists, catalogs and tag→digest for a TTL;
//! content addressed by digest for as long as memory allows.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;

use crate::model::manifest::ManifestDescriptor;
use crate::model::tags::TagList;

/// Default lifetime of answers that can change (tags, catalog, tag→digest).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default memory budget of each of the two caches.
pub const DEFAULT_CACHE_CAPACITY: u64 = 32 * 1024 * 1024;

/// Answers that can change, kept for the TTL.
#[derive(Clone)]
pub(crate) enum Expiring {
    Descriptor(ManifestDescriptor),
    Names(Arc<Vec<String>>),
    Tags(Arc<TagList>),
}

/// Immutable content, keyed by digest.
#[derive(Clone)]
pub(crate) struct Content {
    pub media_type: String,
    pub bytes: Bytes,
    /// The mirror or registry it came from.
    pub source: Option<String>,
}

#[derive(Clone)]
pub(crate) struct ResponseCache {
    expiring: Option<Cache<String, Expiring>>,
    content: Option<Cache<String, Content>>,
}

impl ResponseCache {
    /// `ttl` of `None` turns caching off entirely.
    pub(crate) fn new(ttl: Option<Duration>, capacity_bytes: u64) -> Self {
        let Some(ttl) = ttl.filter(|t| !t.is_zero()) else {
            return ResponseCache {
                expiring: None,
                content: None,
            };
        };
        let expiring = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &String, value: &Expiring| {
                let size = match value {
                    Expiring::Descriptor(d) => d.digest.len() + d.media_type.len() + 16,
                    Expiring::Names(names) => names.iter().map(|n| n.len() + 24).sum(),
                    Expiring::Tags(list) => {
                        list.source.len() + list.tags.iter().map(|n| n.len() + 24).sum::<usize>()
                    }
                };
                weight(key.len() + size)
            })
            .time_to_live(ttl)
            .build();
        let content = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &String, value: &Content| {
                weight(key.len() + value.media_type.len() + value.bytes.len())
            })
            .build();
        ResponseCache {
            expiring: Some(expiring),
            content: Some(content),
        }
    }

    pub(crate) async fn expiring(&self, key: &str) -> Option<Expiring> {
        self.expiring.as_ref()?.get(key).await
    }

    pub(crate) async fn put_expiring(&self, key: String, value: Expiring) {
        if let Some(cache) = &self.expiring {
            cache.insert(key, value).await;
        }
    }

    pub(crate) async fn content(&self, key: &str) -> Option<Content> {
        self.content.as_ref()?.get(key).await
    }

    pub(crate) async fn put_content(&self, key: String, value: Content) {
        if let Some(cache) = &self.content {
            cache.insert(key, value).await;
        }
    }
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}
