//! What the cache answers, and when it asks upstream: content by digest is
//! kept until evicted; a tag is trusted for its route's TTL, then checked
//! with an upstream `HEAD`; when every upstream fails, a tag still resolves
//! to its last known digest (stale); a blob `HEAD` on a miss is an upstream
//! `HEAD`; a blob `GET` on a miss joins or starts a fill.
//!
//! Content is stored once per route, but served under a repository only
//! once the upstream has shown it there (a link per repository): a digest
//! cached for one repository is confirmed with an upstream `HEAD` before
//! another repository serves it, as the registry itself would refuse it.
//!
//! Every upstream request has the route's `upstream_timeout`. The storage is
//! never a reason to fail a client: a read that fails is a miss, a write
//! that fails leaves the answer as it is, and while the storage is failing
//! a blob miss is passed through from the upstream without a fill.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use registry_client::{ImageReference, ManifestDescriptor};

use crate::cache_result::CacheResult;
use crate::error::Error;
use crate::fill::{Fill, FillJob, Fills};
use crate::health::StorageHealth;
use crate::maintenance::Maintenance;
use crate::metrics::Metrics;
use crate::passthrough::PassThrough;
use crate::routes::Route;
use crate::singleflight::SingleFlight;
use crate::storage::{self, Kind, Storage, StoredManifest, TagRecord};
use crate::usage::Usage;
use crate::warnings::Occasional;

/// What errors the cache passes on: shared, because one upstream failure
/// answers every request that waited for it.
pub type Shared<T> = Result<T, Arc<Error>>;

/// A manifest to answer with; `bytes` is `None` for a `HEAD` answered
/// without fetching the manifest.
#[derive(Debug, Clone)]
pub struct ManifestAnswer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub bytes: Option<Bytes>,
    pub cache: CacheResult,
    /// The upstream asked, if one was.
    pub upstream: Option<String>,
}

impl ManifestAnswer {
    fn stored(manifest: StoredManifest, cache: CacheResult, upstream: Option<String>) -> ManifestAnswer {
        ManifestAnswer {
            digest: manifest.digest,
            media_type: manifest.media_type,
            size: manifest.bytes.len() as u64,
            bytes: Some(manifest.bytes),
            cache,
            upstream,
        }
    }

    /// What an upstream `HEAD` said, for a client's `HEAD` (no bytes).
    fn upstream_head(descriptor: ManifestDescriptor) -> ManifestAnswer {
        ManifestAnswer {
            digest: descriptor.digest,
            media_type: descriptor.media_type,
            size: descriptor.size,
            bytes: None,
            cache: CacheResult::Miss,
            upstream: descriptor.source,
        }
    }
}

/// Where a blob's bytes are.
pub enum BlobLocation {
    Stored,
    Filling(Arc<Fill>),
    /// Coming from the upstream without being stored (the storage is failing).
    Passing(PassThrough),
    /// Only its size is known, from an upstream `HEAD` (that upstream).
    Upstream(String),
}

pub struct BlobFound {
    pub size: u64,
    pub location: BlobLocation,
}

impl BlobFound {
    pub fn cache(&self) -> CacheResult {
        match self.location {
            BlobLocation::Stored => CacheResult::Hit,
            BlobLocation::Filling(_) | BlobLocation::Passing(_) | BlobLocation::Upstream(_) => {
                CacheResult::Miss
            }
        }
    }
}

pub struct Cache {
    storage: Storage,
    metrics: Arc<Metrics>,
    fills: Arc<Fills>,
    usage: Arc<Usage>,
    health: Arc<StorageHealth>,
    manifests: SingleFlight<String, Shared<(StoredManifest, Option<String>)>>,
    tags: SingleFlight<String, Shared<ManifestDescriptor>>,
    /// Stale answers and bad manifests, warned about now and then.
    stale_warnings: Occasional,
    manifest_warnings: Occasional,
}

impl Cache {
    pub fn new(maintenance: Maintenance) -> Cache {
        let Maintenance {
            storage,
            usage,
            metrics,
            health,
        } = maintenance.clone();
        Cache {
            fills: Arc::new(Fills::new(maintenance)),
            storage,
            usage,
            metrics,
            health,
            manifests: SingleFlight::default(),
            tags: SingleFlight::default(),
            stale_warnings: Occasional::new(std::time::Duration::from_secs(10)),
            manifest_warnings: Occasional::new(std::time::Duration::from_secs(10)),
        }
    }

    /// The fills under way (to let them settle at shutdown).
    pub fn fills(&self) -> Arc<Fills> {
        self.fills.clone()
    }

    /// What a storage read found; a failed read is a miss (the upstream
    /// answers instead).
    fn read<T>(&self, doing: &'static str, read: Result<Option<T>, Error>) -> Option<T> {
        self.health.read(doing, read, &self.metrics)
    }

    /// Whether a storage write worked; one that failed changes nothing for
    /// the client.
    fn wrote<T>(&self, doing: &'static str, written: Result<T, Error>) -> Option<T> {
        self.health.wrote(doing, written, &self.metrics)
    }

    /// The manifest `reference` names (by tag or digest).
    pub async fn manifest(
        &self,
        route: &Route,
        reference: &ImageReference,
        head: bool,
    ) -> Shared<ManifestAnswer> {
        let answer = match reference.digest() {
            Some(digest) => self.manifest_by_digest(route, reference, digest, head).await,
            None => self.manifest_by_tag(route, reference, head).await,
        };
        if let Ok(answer) = &answer
            && answer.bytes.is_some()
            && let Ok(key) = storage::manifest_key(&route.name, &answer.digest)
        {
            self.usage.used(&key);
        }
        answer.inspect_err(|e| self.count_failure(route, e))
    }

    /// Counts an upstream failure against each upstream that failed (a
    /// "not found" is an answer, not a failure).
    fn count_failure(&self, route: &Route, error: &Error) {
        let Error::Upstream(error) = error else { return };
        if error.is_not_found() {
            self.metrics.not_found_upstream(&route.name);
        }
        match error {
            registry_client::Error::Sources { attempts, .. } => {
                for attempt in attempts {
                    if let registry_client::error::SourceOutcome::Failed(e) = &attempt.outcome
                        && !e.is_not_found()
                    {
                        self.metrics.upstream_failed(&route.name, &attempt.source);
                    }
                }
            }
            e if !e.is_not_found() => self.metrics.upstream_failed(&route.name, &route.registry),
            _ => {}
        }
    }

    async fn manifest_by_digest(
        &self,
        route: &Route,
        reference: &ImageReference,
        digest: &str,
        head: bool,
    ) -> Shared<ManifestAnswer> {
        if let Some(manifest) = self.stored_manifest(route, digest).await {
            self.confirm(route, reference, Kind::Manifest, digest).await?;
            return Ok(ManifestAnswer::stored(manifest, CacheResult::Hit, None));
        }
        if head {
            // An upstream HEAD: nothing to fetch, nothing counted as a pull.
            let descriptor = route
                .upstream()
                .await?
                .head_manifest(reference)
                .await
                .map_err(upstream)?;
            return Ok(ManifestAnswer::upstream_head(descriptor));
        }
        let (manifest, source) = self.fetch_manifest(route, reference).await?;
        Ok(fetched(manifest, source))
    }

    async fn stored_manifest(&self, route: &Route, digest: &str) -> Option<StoredManifest> {
        self.read(
            "read a manifest",
            self.storage.manifest(&route.name, digest).await,
        )
    }

    /// A tag: trusted while fresh, else checked with an upstream `HEAD`;
    /// the last known digest when every upstream fails. A `HEAD` never
    /// fetches the manifest.
    async fn manifest_by_tag(
        &self,
        route: &Route,
        reference: &ImageReference,
        head: bool,
    ) -> Shared<ManifestAnswer> {
        let (repository, tag) = (reference.repository(), reference.reference());
        let known = self.read("read a tag", self.storage.tag(&route.name, repository, tag).await);
        if let Some(record) = known.as_ref().filter(|r| r.age() < route.tag_ttl) {
            if let Some(manifest) = self.stored_manifest(route, &record.digest).await {
                return Ok(ManifestAnswer::stored(manifest, CacheResult::Hit, None));
            }
            // The digest is fresh but its manifest is still being fetched for
            // another request (or was evicted): no need to ask about the tag again.
            if head {
                return Ok(ManifestAnswer {
                    digest: record.digest.clone(),
                    media_type: record.media_type.clone(),
                    size: record.size,
                    bytes: None,
                    cache: CacheResult::Hit,
                    upstream: None,
                });
            }
            let by_digest = reference.with_digest(&record.digest).map_err(upstream)?;
            let (manifest, source) = self.fetch_manifest(route, &by_digest).await?;
            return Ok(fetched(manifest, source));
        }
        let key = format!("{} {repository}:{tag}", route.name);
        let checked = self
            .tags
            .run(key, || async {
                Ok(route
                    .upstream()
                    .await?
                    .head_manifest(reference)
                    .await
                    .map_err(Error::Upstream)?)
            })
            .await;
        let descriptor = match checked {
            Ok(descriptor) => descriptor,
            Err(error) if error.is_not_found_upstream() => {
                // Gone upstream: not resurrected later by a stale answer.
                self.wrote(
                    "forget a tag",
                    self.storage.delete_tag(&route.name, repository, tag).await,
                );
                return Err(error);
            }
            Err(error) => {
                let stale = match &known {
                    Some(record) => self.stored_manifest(route, &record.digest).await,
                    None => None,
                };
                let Some(manifest) = stale else {
                    return Err(error);
                };
                if let Some(held_back) = self.stale_warnings.ready() {
                    tracing::warn!(
                        route = %route.name,
                        %repository,
                        tag,
                        held_back,
                        "every upstream failed, answering with the last known digest: {}",
                        registry_client::error::display_chain(&*error)
                    );
                }
                return Ok(ManifestAnswer::stored(manifest, CacheResult::Stale, None));
            }
        };
        let record = TagRecord::checked_now(
            descriptor.digest.clone(),
            descriptor.media_type.clone(),
            descriptor.size,
        );
        if let Some(size) = self.wrote(
            "store a tag",
            self.storage.put_tag(&route.name, repository, tag, &record).await,
        ) {
            self.usage.added(
                storage::tag_record_key(&route.name, repository, tag),
                size,
                &self.metrics,
            );
        }
        if let Some(manifest) = self.stored_manifest(route, &descriptor.digest).await {
            return Ok(ManifestAnswer::stored(
                manifest,
                CacheResult::Hit,
                descriptor.source,
            ));
        }
        if head {
            return Ok(ManifestAnswer::upstream_head(descriptor));
        }
        let by_digest = reference.with_digest(&descriptor.digest).map_err(upstream)?;
        let (manifest, source) = self.fetch_manifest(route, &by_digest).await?;
        Ok(fetched(manifest, source))
    }

    /// Fetches a manifest by digest (once, however many ask) and stores it
    /// (when it can: it is answered either way). Returns the upstream that
    /// served it; `None` when a fetch that ended a moment ago had stored it.
    async fn fetch_manifest(
        &self,
        route: &Route,
        reference: &ImageReference,
    ) -> Shared<(StoredManifest, Option<String>)> {
        // Per repository: a request for the same digest under another
        // repository must not be answered before its upstream confirms it.
        let key = format!(
            "{} {}@{}",
            route.name,
            reference.repository(),
            reference.reference()
        );
        self.manifests
            .run(key, || async {
                // A fetch of the same manifest may have ended between the
                // caller's look in storage and now: it stored and linked the
                // manifest before it left the flight, so look again first
                // (else, on a busy machine, a second upstream GET).
                if let Some(stored) = self.stored_linked_manifest(route, reference).await {
                    return Ok((stored, None));
                }
                let fetched = route
                    .upstream()
                    .await?
                    .get_raw_manifest(reference)
                    .await
                    .inspect_err(|e| self.warn_if_bad_manifest(route, reference, e))
                    .map_err(upstream)?;
                let manifest = StoredManifest {
                    digest: fetched.descriptor.digest,
                    media_type: fetched.descriptor.media_type,
                    bytes: fetched.bytes,
                };
                self.metrics.fetched(&route.name, manifest.bytes.len() as u64);
                if let Some(size) = self.wrote(
                    "store a manifest",
                    self.storage.put_manifest(&route.name, &manifest).await,
                ) && let Ok(key) = storage::manifest_key(&route.name, &manifest.digest)
                {
                    self.usage.added(key, size, &self.metrics);
                }
                self.wrote(
                    "store a link",
                    self.storage
                        .link(
                            &route.name,
                            reference.repository(),
                            Kind::Manifest,
                            &manifest.digest,
                        )
                        .await,
                );
                Ok((manifest, Some(fetched.descriptor.source.unwrap_or_default())))
            })
            .await
    }

    /// The manifest `reference` names by digest, when it is linked to its
    /// repository and stored (the link first: it is the cheaper look, and a
    /// fetch writes it last).
    async fn stored_linked_manifest(
        &self,
        route: &Route,
        reference: &ImageReference,
    ) -> Option<StoredManifest> {
        let digest = reference.digest()?;
        let linked = self.read(
            "read a link",
            self.storage
                .linked(&route.name, reference.repository(), Kind::Manifest, digest)
                .await
                .map(Some),
        );
        if !linked.unwrap_or(false) {
            return None;
        }
        self.stored_manifest(route, digest).await
    }

    /// An upstream that sends a manifest other than the one asked for is
    /// worth a warning (now and then: a client can ask again and again).
    fn warn_if_bad_manifest(
        &self,
        route: &Route,
        reference: &ImageReference,
        error: &registry_client::Error,
    ) {
        if error.is_integrity()
            && let Some(held_back) = self.manifest_warnings.ready()
        {
            tracing::warn!(
                route = %route.name,
                reference = %reference,
                held_back,
                "the upstream sent a wrong manifest: {}",
                registry_client::error::display_chain(error)
            );
        }
    }

    /// A blob to send: from storage, or from its fill (joined or started),
    /// or straight from the upstream while the storage is failing.
    pub async fn blob_for_get(
        &self,
        route: &Route,
        reference: &ImageReference,
        digest: &str,
    ) -> Shared<BlobFound> {
        let found = self.find_blob(route, reference, digest).await;
        self.note_use(route, digest, &found);
        found.inspect_err(|e| self.count_failure(route, e))
    }

    async fn find_blob(&self, route: &Route, reference: &ImageReference, digest: &str) -> Shared<BlobFound> {
        // A fill under way first: it may commit while we look at storage. One
        // that has committed is winding down: its blob is a stored one.
        let fill = match self.fills.running(&route.name, digest).filter(|f| !f.committed()) {
            Some(fill) => fill,
            None => {
                if let Some(size) = self.stored_blob_size(route, digest).await {
                    self.confirm(route, reference, Kind::Blob, digest).await?;
                    return Ok(BlobFound {
                        size,
                        location: BlobLocation::Stored,
                    });
                }
                if self.health.still_failing(&self.storage).await {
                    return self.pass_through(route, reference, digest).await;
                }
                let job = FillJob {
                    client: route.client().clone(),
                    fetches: route.fetches.clone(),
                    timeout: route.upstream_timeout,
                    reference: reference.clone(),
                    route: route.name.clone(),
                    digest: digest.to_owned(),
                };
                // May join a fill another request started meanwhile.
                match self.fills.join_or_start(&self.storage, job) {
                    Ok(fill) => fill,
                    Err(error) => {
                        self.health.failed("start a fill", &error, &self.metrics);
                        return self.pass_through(route, reference, digest).await;
                    }
                }
            }
        };
        self.confirm_for_fill(route, reference, &fill, digest).await?;
        match filling(fill.clone()).await {
            // Stopped before the upstream said the size: it is asked again.
            Err(_) if fill.stopped() => self.pass_through(route, reference, digest).await,
            found => found,
        }
    }

    async fn stored_blob_size(&self, route: &Route, digest: &str) -> Option<u64> {
        self.read(
            "read a blob's size",
            self.storage.blob_size(&route.name, digest).await,
        )
    }

    /// The blob straight from the upstream, not stored.
    async fn pass_through(
        &self,
        route: &Route,
        reference: &ImageReference,
        digest: &str,
    ) -> Shared<BlobFound> {
        let upstream = route.upstream().await?;
        let passing = PassThrough::start((*upstream).clone(), reference.clone(), digest.to_owned()).await?;
        Ok(BlobFound {
            size: passing.size,
            location: BlobLocation::Passing(passing),
        })
    }

    /// A fill started for another repository serves this one only once the
    /// upstream confirms the blob is there too.
    async fn confirm_for_fill(
        &self,
        route: &Route,
        reference: &ImageReference,
        fill: &Fill,
        digest: &str,
    ) -> Shared<()> {
        if fill.repository() == reference.repository() {
            return Ok(());
        }
        self.confirm(route, reference, Kind::Blob, digest).await
    }

    /// A blob's size for a `HEAD`: stored, from a fill that knows it, or an
    /// upstream `HEAD` (never a download).
    pub async fn blob_for_head(
        &self,
        route: &Route,
        reference: &ImageReference,
        digest: &str,
    ) -> Shared<BlobFound> {
        let found = self.head_blob(route, reference, digest).await;
        self.note_use(route, digest, &found);
        found.inspect_err(|e| self.count_failure(route, e))
    }

    async fn head_blob(&self, route: &Route, reference: &ImageReference, digest: &str) -> Shared<BlobFound> {
        if let Some(fill) = self.fills.running(&route.name, digest) {
            self.confirm_for_fill(route, reference, &fill, digest).await?;
            match filling(fill.clone()).await {
                // Stopped before the upstream said the size: asked below.
                Err(_) if fill.stopped() => {}
                found => return found,
            }
        }
        if let Some(size) = self.stored_blob_size(route, digest).await {
            self.confirm(route, reference, Kind::Blob, digest).await?;
            return Ok(BlobFound {
                size,
                location: BlobLocation::Stored,
            });
        }
        let head = route
            .upstream()
            .await?
            .head_blob(reference, digest)
            .await
            .map_err(upstream)?;
        Ok(BlobFound {
            size: head.size,
            location: BlobLocation::Upstream(head.source),
        })
    }

    /// Whether the storage works (for `/ready`): not failing (or a probe
    /// says it works again), and it answers.
    pub async fn storage_ready(&self) -> Result<(), StorageDown> {
        if self.health.still_failing(&self.storage).await {
            let failing = self.health.failing();
            return Err(StorageDown {
                since: failing.as_ref().map(|f| f.since),
                doing: failing.map_or("", |f| f.doing),
            });
        }
        self.storage.probe().await.map_err(|error| {
            self.health.failed("list the cache", &error, &self.metrics);
            StorageDown {
                since: None,
                doing: "list the cache",
            }
        })
    }

    /// Makes sure the upstream has `digest` in `reference`'s repository
    /// before stored content is served under it: known from a link, or
    /// confirmed with an upstream `HEAD` (then linked).
    async fn confirm(
        &self,
        route: &Route,
        reference: &ImageReference,
        kind: Kind,
        digest: &str,
    ) -> Shared<()> {
        let repository = reference.repository();
        let linked = self
            .read(
                "read a link",
                self.storage
                    .linked(&route.name, repository, kind, digest)
                    .await
                    .map(Some),
            )
            .unwrap_or(false);
        if linked {
            return Ok(());
        }
        let asked = route.upstream().await?;
        match kind {
            Kind::Blob => asked.head_blob(reference, digest).await.map(drop),
            Kind::Manifest => {
                let by_digest = reference.with_digest(digest).map_err(upstream)?;
                asked.head_manifest(&by_digest).await.map(drop)
            }
        }
        .map_err(upstream)?;
        self.wrote(
            "store a link",
            self.storage.link(&route.name, repository, kind, digest).await,
        );
        Ok(())
    }

    /// A stored blob was asked for: it is recently used.
    fn note_use(&self, route: &Route, digest: &str, found: &Shared<BlobFound>) {
        if let Ok(BlobFound {
            location: BlobLocation::Stored,
            ..
        }) = found
            && let Ok(key) = storage::blob_key(&route.name, digest)
        {
            self.usage.used(&key);
        }
    }

    /// `range` of a blob found by [`blob_for_get`](Self::blob_for_get). A
    /// stored blob that cannot be read is passed through from the upstream.
    pub async fn read_blob(
        &self,
        route: &Route,
        reference: &ImageReference,
        digest: &str,
        found: BlobFound,
        range: Range<u64>,
    ) -> Shared<BoxStream<'static, std::io::Result<Bytes>>> {
        match found.location {
            BlobLocation::Filling(fill) => Ok(fill.read(range)),
            BlobLocation::Passing(passing) => Ok(passing.read(range)),
            BlobLocation::Stored => {
                let read = self.read(
                    "read a blob",
                    self.storage
                        .read_blob(&route.name, digest, Some(range.clone()))
                        .await,
                );
                let Some(read) = read else {
                    // Evicted meanwhile, or unreadable: the upstream has it.
                    let passing = self.pass_through(route, reference, digest).await?;
                    return match passing.location {
                        BlobLocation::Passing(passing) if passing.size == found.size => {
                            Ok(passing.read(range))
                        }
                        _ => Err(Arc::new(Error::storage(
                            "a cached blob went away while it was being read",
                            std::io::Error::from(std::io::ErrorKind::NotFound),
                        ))),
                    };
                };
                // Not evicted while it is being sent.
                let pin = self.usage.pin(&storage::blob_key(&route.name, digest)?);
                Ok(read
                    .body
                    .map(move |chunk| {
                        let _pinned = &pin;
                        chunk
                    })
                    .boxed())
            }
            BlobLocation::Upstream(_) => unreachable!("a HEAD answer is never read"),
        }
    }
}

/// Why `/ready` says no: since when the storage fails, and what failed
/// (no paths: the answer is for anyone).
#[derive(Debug)]
pub struct StorageDown {
    pub since: Option<std::time::SystemTime>,
    pub doing: &'static str,
}

async fn filling(fill: Arc<Fill>) -> Shared<BlobFound> {
    let size = fill.size().await?;
    Ok(BlobFound {
        size,
        location: BlobLocation::Filling(fill),
    })
}

fn upstream(error: registry_client::Error) -> Arc<Error> {
    Arc::new(Error::Upstream(error))
}

/// The answer of a manifest fetched by digest: a miss, unless a fetch that had
/// just ended had stored it.
fn fetched(manifest: StoredManifest, source: Option<String>) -> ManifestAnswer {
    match source {
        Some(source) => ManifestAnswer::stored(manifest, CacheResult::Miss, Some(source)),
        None => ManifestAnswer::stored(manifest, CacheResult::Hit, None),
    }
}
