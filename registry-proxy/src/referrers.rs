//! Referrers answers: a subject's list of referrers (signatures, SBOMs,
//! attestations), asked of the upstream through the SDK (its referrers API, or
//! its fallback tag) and kept like a tag: trusted for the route's `tag_ttl`,
//! since a new signature can appear at any time, then asked again; when every
//! upstream fails, the last list is the answer (stale).

use std::sync::Arc;

use registry_client::ImageReference;
use serde_json::Value;

use crate::cache::Shared;
use crate::cache_result::CacheResult;
use crate::error::Error;
use crate::health::StorageHealth;
use crate::maintenance::Maintenance;
use crate::metrics::Metrics;
use crate::routes::Route;
use crate::singleflight::SingleFlight;
use crate::storage::{self, ReferrersRecord, Storage};
use crate::usage::Usage;
use crate::warnings::Occasional;

/// A subject's referrers to answer with.
#[derive(Debug, Clone)]
pub struct ReferrersAnswer {
    /// The descriptors, filtered as asked.
    pub manifests: Vec<Value>,
    pub cache: CacheResult,
    /// The upstream asked, if one was.
    pub upstream: Option<String>,
}

pub struct ReferrerLists {
    storage: Storage,
    usage: Arc<Usage>,
    metrics: Arc<Metrics>,
    health: Arc<StorageHealth>,
    /// One upstream listing per subject at a time.
    listings: SingleFlight<String, Shared<(Vec<Value>, String)>>,
    /// Stale answers, warned about now and then (as the cache's are).
    stale_warnings: Occasional,
}

impl ReferrerLists {
    pub fn new(maintenance: Maintenance) -> ReferrerLists {
        ReferrerLists {
            storage: maintenance.storage,
            usage: maintenance.usage,
            metrics: maintenance.metrics,
            health: maintenance.health,
            listings: SingleFlight::default(),
            stale_warnings: Occasional::new(std::time::Duration::from_secs(10)),
        }
    }

    /// The referrers of `subject` (by digest) in `route`, only those of
    /// `artifact_type` if given.
    pub async fn list(
        &self,
        route: &Route,
        subject: &ImageReference,
        artifact_type: Option<&str>,
    ) -> Shared<ReferrersAnswer> {
        let repository = subject.repository();
        let digest = subject.digest().expect("a subject by digest");
        let known = self.health.read(
            "read referrers",
            self.storage.referrers(&route.name, repository, digest).await,
            &self.metrics,
        );
        if let Some(record) = known.as_ref().filter(|r| r.age() < route.tag_ttl) {
            return Ok(answer(&record.manifests, artifact_type, CacheResult::Hit, None));
        }
        let key = format!("{} {repository}@{digest}", route.name);
        let listed = self
            .listings
            .run(key, || async {
                let found = route
                    .upstream()
                    .await?
                    .referrers(subject, None)
                    .await
                    .map_err(Error::Upstream)?;
                let manifests: Vec<Value> = found
                    .descriptors
                    .iter()
                    .map(|d| serde_json::to_value(d).expect("a descriptor serializes"))
                    .collect();
                // Stored once, by the listing, however many requests wait for it.
                let record = ReferrersRecord::checked_now(manifests);
                self.store(route, repository, digest, &record).await;
                Ok((record.manifests, found.source))
            })
            .await;
        match listed {
            Ok((manifests, source)) => Ok(answer(&manifests, artifact_type, CacheResult::Miss, Some(source))),
            Err(error) => match known {
                Some(record) if !error.is_not_found_upstream() => {
                    if let Some(held_back) = self.stale_warnings.ready() {
                        tracing::warn!(
                            route = %route.name,
                            %repository,
                            subject = digest,
                            held_back,
                            "every upstream failed, answering with the last known referrers: {}",
                            registry_client::error::display_chain(&*error)
                        );
                    }
                    Ok(answer(&record.manifests, artifact_type, CacheResult::Stale, None))
                }
                _ => Err(error),
            },
        }
    }

    /// Keeps the list (a storage that fails changes nothing for the client).
    async fn store(&self, route: &Route, repository: &str, subject: &str, record: &ReferrersRecord) {
        let stored = self.health.wrote(
            "store referrers",
            self.storage
                .put_referrers(&route.name, repository, subject, record)
                .await,
            &self.metrics,
        );
        if let (Some(size), Ok(key)) = (
            stored,
            storage::referrers_record_key(&route.name, repository, subject),
        ) {
            self.usage.added(key, size, &self.metrics);
        }
    }
}

/// `manifests` filtered by `artifact_type`, as an answer.
fn answer(
    manifests: &[Value],
    artifact_type: Option<&str>,
    cache: CacheResult,
    upstream: Option<String>,
) -> ReferrersAnswer {
    let manifests = manifests
        .iter()
        .filter(|d| artifact_type.is_none_or(|wanted| d["artifactType"] == wanted))
        .cloned()
        .collect();
    ReferrersAnswer {
        manifests,
        cache,
        upstream,
    }
}
