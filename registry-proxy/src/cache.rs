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

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use registry_client::{ImageReference, ManifestDescriptor};

use crate::error::Error;
use crate::fill::{Fill, FillJob, Fills};
use crate::metrics::Metrics;
use crate::routes::Route;
use crate::singleflight::SingleFlight;
use crate::storage::{self, Kind, Storage, StoredManifest, TagRecord};
use crate::usage::Usage;

/// What errors the cache passes on: shared, because one upstream failure
/// answers every request that waited for it.
pub type Shared<T> = Result<T, Arc<Error>>;

/// How an answer was found, as `X-Cache` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    /// Every upstream failed; this is the last known answer.
    Stale,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Stale => "STALE",
        }
    }
}

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
            BlobLocation::Filling(_) | BlobLocation::Upstream(_) => CacheResult::Miss,
        }
    }
}

pub struct Cache {
    storage: Storage,
    metrics: Arc<Metrics>,
    fills: Arc<Fills>,
    usage: Arc<Usage>,
    manifests: SingleFlight<String, Shared<(StoredManifest, String)>>,
    tags: SingleFlight<String, Shared<ManifestDescriptor>>,
}

impl Cache {
    pub fn new(storage: Storage, metrics: Arc<Metrics>, usage: Arc<Usage>) -> Cache {
        Cache {
            storage,
            fills: Arc::new(Fills::new(metrics.clone(), usage.clone())),
            usage,
            metrics,
            manifests: SingleFlight::default(),
            tags: SingleFlight::default(),
        }
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
        if let Some(manifest) = self.storage.manifest(&route.name, digest).await? {
            self.confirm(route, reference, Kind::Manifest, digest).await?;
            return Ok(ManifestAnswer::stored(manifest, CacheResult::Hit, None));
        }
        if head {
            // An upstream HEAD: nothing to fetch, nothing counted as a pull.
            let descriptor = route
                .upstream()
                .await
                .head_manifest(reference)
                .await
                .map_err(upstream)?;
            return Ok(ManifestAnswer::upstream_head(descriptor));
        }
        let (manifest, source) = self.fetch_manifest(route, reference).await?;
        Ok(ManifestAnswer::stored(manifest, CacheResult::Miss, Some(source)))
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
        let known = self.storage.tag(&route.name, repository, tag).await?;
        if let Some(record) = known.as_ref().filter(|r| r.age() < route.tag_ttl) {
            if let Some(manifest) = self.storage.manifest(&route.name, &record.digest).await? {
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
            return Ok(ManifestAnswer::stored(manifest, CacheResult::Miss, Some(source)));
        }
        let key = format!("{} {repository}:{tag}", route.name);
        let checked = self
            .tags
            .run(key, || async {
                route
                    .upstream()
                    .await
                    .head_manifest(reference)
                    .await
                    .map_err(upstream)
            })
            .await;
        let descriptor = match checked {
            Ok(descriptor) => descriptor,
            Err(error) if is_not_found(&error) => {
                // Gone upstream: not resurrected later by a stale answer.
                self.storage.delete_tag(&route.name, repository, tag).await?;
                return Err(error);
            }
            Err(error) => {
                let stale = match &known {
                    Some(record) => self.storage.manifest(&route.name, &record.digest).await?,
                    None => None,
                };
                let Some(manifest) = stale else {
                    return Err(error);
                };
                tracing::warn!(route = %route.name, %repository, tag, "every upstream failed, answering with the last known digest: {error}");
                return Ok(ManifestAnswer::stored(manifest, CacheResult::Stale, None));
            }
        };
        let record = TagRecord::checked_now(
            descriptor.digest.clone(),
            descriptor.media_type.clone(),
            descriptor.size,
        );
        let size = self
            .storage
            .put_tag(&route.name, repository, tag, &record)
            .await?;
        self.usage.added(
            storage::tag_record_key(&route.name, repository, tag),
            size,
            &self.metrics,
        );
        if let Some(manifest) = self.storage.manifest(&route.name, &descriptor.digest).await? {
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
        Ok(ManifestAnswer::stored(manifest, CacheResult::Miss, Some(source)))
    }

    /// Fetches a manifest by digest (once, however many ask) and stores it.
    async fn fetch_manifest(
        &self,
        route: &Route,
        reference: &ImageReference,
    ) -> Shared<(StoredManifest, String)> {
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
                let raw = route
                    .upstream()
                    .await
                    .get_raw_manifest(reference)
                    .await
                    .map_err(upstream)?;
                let manifest = StoredManifest {
                    digest: raw.descriptor.digest,
                    media_type: raw.descriptor.media_type,
                    bytes: raw.bytes,
                };
                let size = self.storage.put_manifest(&route.name, &manifest).await?;
                self.usage.added(
                    storage::manifest_key(&route.name, &manifest.digest)?,
                    size,
                    &self.metrics,
                );
                self.metrics.fetched(&route.name, manifest.bytes.len() as u64);
                self.storage
                    .link(
                        &route.name,
                        reference.repository(),
                        Kind::Manifest,
                        &manifest.digest,
                    )
                    .await?;
                Ok((manifest, raw.descriptor.source.unwrap_or_default()))
            })
            .await
    }

    /// A blob to send: from storage, or from its fill (joined or started).
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
        // A fill under way first: it may commit while we look at storage.
        let fill = match self.fills.running(&route.name, digest) {
            Some(fill) => fill,
            None => {
                if let Some(size) = self.storage.blob_size(&route.name, digest).await? {
                    self.confirm(route, reference, Kind::Blob, digest).await?;
                    return Ok(BlobFound {
                        size,
                        location: BlobLocation::Stored,
                    });
                }
                let job = FillJob {
                    client: route.client().clone(),
                    fetches: route.fetches.clone(),
                    reference: reference.clone(),
                    route: route.name.clone(),
                    digest: digest.to_owned(),
                };
                // May join a fill another request started meanwhile.
                self.fills.join_or_start(&self.storage, job)?
            }
        };
        self.confirm_for_fill(route, reference, &fill, digest).await?;
        filling(fill).await
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
            return filling(fill).await;
        }
        if let Some(size) = self.storage.blob_size(&route.name, digest).await? {
            self.confirm(route, reference, Kind::Blob, digest).await?;
            return Ok(BlobFound {
                size,
                location: BlobLocation::Stored,
            });
        }
        let head = route
            .upstream()
            .await
            .head_blob(reference, digest)
            .await
            .map_err(upstream)?;
        Ok(BlobFound {
            size: head.size,
            location: BlobLocation::Upstream(head.source),
        })
    }

    /// Whether the storage answers (for `/ready`).
    pub async fn storage_ready(&self) -> Result<(), Error> {
        self.storage.probe().await
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
        if self.storage.linked(&route.name, repository, kind, digest).await? {
            return Ok(());
        }
        match kind {
            Kind::Blob => route
                .upstream()
                .await
                .head_blob(reference, digest)
                .await
                .map(drop),
            Kind::Manifest => {
                let by_digest = reference.with_digest(digest).map_err(upstream)?;
                route.upstream().await.head_manifest(&by_digest).await.map(drop)
            }
        }
        .map_err(upstream)?;
        Ok(self.storage.link(&route.name, repository, kind, digest).await?)
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

    /// `range` of a blob found by [`blob_for_get`](Self::blob_for_get).
    pub async fn read_blob(
        &self,
        route: &Route,
        digest: &str,
        found: &BlobFound,
        range: Range<u64>,
    ) -> Shared<BoxStream<'static, std::io::Result<Bytes>>> {
        match &found.location {
            BlobLocation::Filling(fill) => Ok(fill.read(range)),
            BlobLocation::Stored => match self.storage.read_blob(&route.name, digest, Some(range)).await? {
                Some(read) => {
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
                None => Err(Arc::new(Error::storage(
                    "a cached blob went away while it was being read",
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ))),
            },
            BlobLocation::Upstream(_) => unreachable!("a HEAD answer is never read"),
        }
    }
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

fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Upstream(e) if e.is_not_found())
}
