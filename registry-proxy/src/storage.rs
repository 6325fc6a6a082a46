//! Where the cache keeps what it fetched: an `object_store` (local disk by
//! default), with a spool directory for blobs being filled.
//!
//! Keys, one namespace per route so that two upstreams never mix:
//!
//! ```text
//! routes/<route>/blobs/<algorithm>/<hex>
//! routes/<route>/manifests/<algorithm>/<hex>          "<media type>\n" + the exact bytes
//! routes/<route>/repositories/<repository>/_tags/<tag> JSON: digest, media type, size, when checked
//! routes/<route>/repositories/<repository>/_links/<kind>/<algorithm>/<hex>
//!                                                      empty: the upstream has this content in this repository
//! ```
//!
//! (`_tags` and `_links` cannot clash with a repository: path components
//! start with a letter or digit.) Content is stored once per route; a link
//! says which repositories may serve it, as a registry's own storage does. A blob is filled into a spool file, synced, and only
//! then given its key: on local disk by a rename (the spool is on the same
//! filesystem), elsewhere by a multipart upload. Nothing half-written is
//! ever under a key.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{Error, Result};

/// Bytes read from storage at a time.
const READ_CHUNK: usize = 256 * 1024;

/// A manifest as cached: the exact upstream bytes and their media type.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
}

/// What a tag pointed at when it was last checked upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: String,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub checked: u64,
}

impl TagRecord {
    pub fn checked_now(digest: String, media_type: String, size: u64) -> TagRecord {
        TagRecord {
            digest,
            media_type,
            size,
            checked: unix_now(),
        }
    }

    /// Time since the upstream last confirmed it.
    pub fn age(&self) -> Duration {
        Duration::from_secs(unix_now().saturating_sub(self.checked))
    }
}

/// A subject's referrers as the upstream last listed them (every artifact type; a
/// filter is applied when answering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferrersRecord {
    /// The descriptors, as the upstream's referrers index gave them.
    pub manifests: Vec<serde_json::Value>,
    /// Seconds since the Unix epoch.
    pub checked: u64,
}

impl ReferrersRecord {
    pub fn checked_now(manifests: Vec<serde_json::Value>) -> ReferrersRecord {
        ReferrersRecord {
            manifests,
            checked: unix_now(),
        }
    }

    /// Time since the upstream last listed them.
    pub fn age(&self) -> Duration {
        Duration::from_secs(unix_now().saturating_sub(self.checked))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A blob (or part of one) being read from storage.
pub struct BlobRead {
    /// The whole blob's size.
    pub size: u64,
    /// The bytes this read returns.
    pub range: Range<u64>,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

/// The cache's storage.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is local disk: commits are renames.
    local: Option<Arc<LocalFileSystem>>,
    spool: PathBuf,
}

impl Storage {
    /// Local disk under `dir` (`dir/store`, `dir/spool`), created if
    /// missing. What a crash left behind (spool files, half-written
    /// objects) is removed.
    pub fn local(dir: &FsPath) -> Result<Storage> {
        let root = dir.join("store");
        let spool = dir.join("spool");
        for d in [&root, &spool] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::storage(format!("cannot create {}", d.display()), e))?;
            check_writable(d)?;
        }
        remove_leftovers(&root, &spool)?;
        let local = Arc::new(
            LocalFileSystem::new_with_prefix(&root)
                .map_err(|e| Error::storage(format!("cannot use {}", root.display()), e))?,
        );
        Ok(Storage {
            store: local.clone(),
            local: Some(local),
            spool,
        })
    }

    /// An S3-compatible bucket, with blobs spooled in `spool` while they fill.
    pub fn s3(config: &crate::config::S3Config, spool: PathBuf) -> Result<Storage> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                // S3-compatible services (MinIO, moto) address buckets by path.
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| Error::storage(format!("cannot use bucket {:?}", config.bucket), e))?;
        let store: Arc<dyn ObjectStore> = match &config.prefix {
            Some(prefix) => Arc::new(object_store::prefix::PrefixStore::new(
                store,
                prefix.trim_matches('/'),
            )),
            None => Arc::new(store),
        };
        Self::new(store, spool)
    }

    /// Any object store, with blobs spooled in `spool` (local) while they fill.
    pub fn new(store: Arc<dyn ObjectStore>, spool: PathBuf) -> Result<Storage> {
        std::fs::create_dir_all(&spool)
            .map_err(|e| Error::storage(format!("cannot create {}", spool.display()), e))?;
        check_writable(&spool)?;
        remove_leftovers(FsPath::new(""), &spool)?;
        Ok(Storage {
            store,
            local: None,
            spool,
        })
    }

    /// Whether the store answers: a listing of the cache's top level.
    pub async fn probe(&self) -> Result<()> {
        self.store
            .list_with_delimiter(Some(&Path::from("routes")))
            .await
            .map(drop)
            .map_err(|e| Error::storage("the cache's storage does not answer", e))
    }

    /// Whether the storage takes writes again: a file written and removed
    /// in the spool directory, an object put and deleted in the store.
    pub async fn probe_write(&self) -> Result<()> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || write_probe_file(&spool))
            .await
            .map_err(|e| Error::storage("cannot probe the spool", std::io::Error::other(e)))??;
        let key = Path::from(format!("_probe/{}", std::process::id()));
        self.put(&key, Bytes::from_static(&[0; 4096])).await?;
        self.delete(&key).await
    }

    /// Whether the store is the local disk (evicting from it frees room
    /// for spool files).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Bytes free for spool files (and, on local disk, the store).
    pub fn free_space(&self) -> Option<u64> {
        free_space(&self.spool)
    }

    /// Every object of the cache: key, size, last modified (seconds since
    /// the epoch).
    pub async fn list_objects(&self) -> Result<Vec<(String, u64, u64)>> {
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&Path::from("routes")))
            .try_collect()
            .await
            .map_err(|e| Error::storage("cannot list the cache", e))?;
        Ok(objects
            .into_iter()
            .map(|meta| {
                let modified = meta.last_modified.timestamp().max(0) as u64;
                (meta.location.to_string(), meta.size, modified)
            })
            .collect())
    }

    /// Every replica's batch of recorded uses (`access/<replica>.json`):
    /// (replica, key → when last used, ms since the epoch).
    pub async fn read_uses(&self) -> Result<Vec<(String, HashMap<String, u64>)>> {
        let batches: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&Path::from("access")))
            .try_collect()
            .await
            .map_err(|e| Error::storage("cannot list the cache's use records", e))?;
        let mut uses = Vec::new();
        for batch in batches {
            let Some(replica) = batch.location.filename().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            let replica = replica.to_owned();
            if let Some(bytes) = self.get(&batch.location).await? {
                // A damaged batch only loses some recency.
                if let Ok(map) = serde_json::from_slice(&bytes) {
                    uses.push((replica, map));
                }
            }
        }
        Ok(uses)
    }

    /// Replaces this replica's batch of recorded uses.
    pub async fn write_uses(&self, replica: &str, uses: &HashMap<String, u64>) -> Result<()> {
        let json = serde_json::to_vec(uses).expect("uses serialize");
        self.put(&Path::from(format!("access/{replica}.json")), json.into())
            .await
    }

    /// Removes an object by key (eviction); one already gone is fine.
    pub async fn remove(&self, key: &str) -> Result<()> {
        self.delete(&Path::from(key)).await
    }

    pub async fn manifest(&self, route: &str, digest: &str) -> Result<Option<StoredManifest>> {
        let key = content_key(route, "manifests", digest)?;
        let Some(bytes) = self.get(&key).await? else {
            return Ok(None);
        };
        let parsed = bytes
            .iter()
            .position(|&b| b == b'\n')
            .and_then(|at| {
                let media_type = std::str::from_utf8(&bytes[..at]).ok()?.to_owned();
                Some((media_type, bytes.slice(at + 1..)))
            })
            .filter(|(_, body)| registry_client::model::digest::verify(digest, body).is_ok());
        match parsed {
            Some((media_type, bytes)) => Ok(Some(StoredManifest {
                digest: digest.to_owned(),
                media_type,
                bytes,
            })),
            // Damaged (a crash mid-write): gone, fetched again.
            None => {
                tracing::warn!(key = %key, "removing a damaged cached manifest");
                self.delete(&key).await?;
                Ok(None)
            }
        }
    }

    /// Stores a manifest; returns the stored size.
    pub async fn put_manifest(&self, route: &str, manifest: &StoredManifest) -> Result<u64> {
        let key = content_key(route, "manifests", &manifest.digest)?;
        let mut envelope = Vec::with_capacity(manifest.media_type.len() + 1 + manifest.bytes.len());
        envelope.extend_from_slice(manifest.media_type.as_bytes());
        envelope.push(b'\n');
        envelope.extend_from_slice(&manifest.bytes);
        let size = envelope.len() as u64;
        self.put(&key, envelope.into()).await.map(|()| size)
    }

    pub async fn tag(&self, route: &str, repository: &str, tag: &str) -> Result<Option<TagRecord>> {
        let key = tag_key(route, repository, tag);
        let Some(bytes) = self.get(&key).await? else {
            return Ok(None);
        };
        // A damaged record is as good as none: the tag is resolved again.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Stores a tag record; returns the stored size.
    pub async fn put_tag(&self, route: &str, repository: &str, tag: &str, record: &TagRecord) -> Result<u64> {
        let json = serde_json::to_vec(record).expect("a tag record serializes");
        let size = json.len() as u64;
        self.put(&tag_key(route, repository, tag), json.into())
            .await
            .map(|()| size)
    }

    pub async fn referrers(
        &self,
        route: &str,
        repository: &str,
        subject: &str,
    ) -> Result<Option<ReferrersRecord>> {
        let Some(bytes) = self.get(&referrers_key(route, repository, subject)?).await? else {
            return Ok(None);
        };
        // A damaged record is as good as none: the upstream is asked again.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Stores a referrers record; returns the stored size.
    pub async fn put_referrers(
        &self,
        route: &str,
        repository: &str,
        subject: &str,
        record: &ReferrersRecord,
    ) -> Result<u64> {
        let json = serde_json::to_vec(record).expect("a referrers record serializes");
        let size = json.len() as u64;
        self.put(&referrers_key(route, repository, subject)?, json.into())
            .await
            .map(|()| size)
    }

    pub async fn delete_tag(&self, route: &str, repository: &str, tag: &str) -> Result<()> {
        self.delete(&tag_key(route, repository, tag)).await
    }

    /// Whether `repository` is known to have the content `digest` (a
    /// manifest or a blob, `kind`) upstream.
    pub async fn linked(&self, route: &str, repository: &str, kind: Kind, digest: &str) -> Result<bool> {
        match self.store.head(&link_key(route, repository, kind, digest)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::storage("cannot read the cache", e)),
        }
    }

    /// Records that `repository` has the content `digest` upstream.
    pub async fn link(&self, route: &str, repository: &str, kind: Kind, digest: &str) -> Result<()> {
        self.put(&link_key(route, repository, kind, digest)?, Bytes::new())
            .await
    }

    /// The size of a cached blob, `None` when it is not cached.
    pub async fn blob_size(&self, route: &str, digest: &str) -> Result<Option<u64>> {
        match self.store.head(&content_key(route, "blobs", digest)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage("cannot read the cache", e)),
        }
    }

    /// A cached blob, whole or the `range` of it; `None` when not cached.
    /// `range` must be within the blob (the caller checked it against the size).
    pub async fn read_blob(
        &self,
        route: &str,
        digest: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<BlobRead>> {
        let key = content_key(route, "blobs", digest)?;
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&key, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::storage("cannot read the cache", e)),
        };
        let (size, range) = (result.meta.size, result.range.clone());
        let body = match result.payload {
            // Local disk: read in large chunks, not object_store's small ones.
            GetResultPayload::File(file, _) => file_stream(file, range.clone()),
            GetResultPayload::Stream(stream) => stream.map_err(std::io::Error::other).boxed(),
        };
        Ok(Some(BlobRead { size, range, body }))
    }

    /// A new, empty spool file for a blob being filled.
    pub fn spool_file(&self) -> Result<SpoolFile> {
        let file = tempfile::Builder::new()
            .prefix("fill-")
            .tempfile_in(&self.spool)
            .map_err(|e| Error::storage("cannot create a spool file", e))?;
        Ok(SpoolFile { file })
    }

    /// Gives a filled, verified blob its key: synced first, then renamed
    /// (local disk) or uploaded (elsewhere).
    pub async fn commit_blob(&self, route: &str, digest: &str, spool: SpoolFile) -> Result<()> {
        let key = content_key(route, "blobs", digest)?;
        let file = spool
            .file
            .as_file()
            .try_clone()
            .map_err(|e| Error::storage("cannot commit a blob", e))?;
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| Error::storage("cannot commit a blob", std::io::Error::other(e)))?
            .map_err(|e| Error::storage("cannot commit a blob", e))?;
        match &self.local {
            Some(local) => {
                let target = local
                    .path_to_filesystem(&key)
                    .map_err(|e| Error::storage("cannot commit a blob", e))?;
                tokio::task::spawn_blocking(move || {
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    spool.file.persist(&target).map(drop).map_err(|e| e.error)
                })
                .await
                .map_err(|e| Error::storage("cannot commit a blob", std::io::Error::other(e)))?
                .map_err(|e| Error::storage("cannot commit a blob", e))
            }
            None => self.upload(&key, spool).await,
        }
    }

    /// Copies a spool file to `key` in parts.
    async fn upload(&self, key: &Path, spool: SpoolFile) -> Result<()> {
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| Error::storage("cannot store a blob", e))?;
        let mut writer = WriteMultipart::new(upload);
        let file = spool
            .file
            .reopen()
            .map_err(|e| Error::storage("cannot store a blob", e))?;
        let mut chunks = file_stream(file, 0..u64::MAX);
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => writer.put(chunk),
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Error::storage("cannot store a blob", e));
                }
            }
        }
        writer
            .finish()
            .await
            .map(drop)
            .map_err(|e| Error::storage("cannot store a blob", e))
    }

    async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        match self.store.get(key).await {
            Ok(result) => Ok(Some(
                result
                    .bytes()
                    .await
                    .map_err(|e| Error::storage("cannot read the cache", e))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage("cannot read the cache", e)),
        }
    }

    async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.store
            .put(key, PutPayload::from_bytes(bytes))
            .await
            .map(drop)
            .map_err(|e| Error::storage("cannot write the cache", e))
    }

    async fn delete(&self, key: &Path) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage("cannot write the cache", e)),
        }
    }
}

/// A blob being filled: a temporary file in the spool directory, removed
/// unless committed.
pub struct SpoolFile {
    file: tempfile::NamedTempFile,
}

impl SpoolFile {
    /// The file, for writing at offsets and for readers that follow the fill.
    pub fn file(&self) -> &std::fs::File {
        self.file.as_file()
    }
}

/// What kind of content a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Blob,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Manifest => "manifests",
            Kind::Blob => "blobs",
        }
    }
}

/// `routes/<route>/repositories/<repository>/_links/<kind>/<algorithm>/<hex>`.
fn link_key(route: &str, repository: &str, kind: Kind, digest: &str) -> Result<Path> {
    let (algorithm, hex) = split_digest(digest)?;
    Ok(Path::from(format!(
        "routes/{route}/repositories/{repository}/_links/{}/{algorithm}/{hex}",
        kind.dir()
    )))
}

/// The key of a stored blob, as [`list_objects`](Storage::list_objects) names it.
pub fn blob_key(route: &str, digest: &str) -> Result<String> {
    content_key(route, "blobs", digest).map(|p| p.to_string())
}

/// The key of a stored manifest.
pub fn manifest_key(route: &str, digest: &str) -> Result<String> {
    content_key(route, "manifests", digest).map(|p| p.to_string())
}

/// The key of a tag record.
pub fn tag_record_key(route: &str, repository: &str, tag: &str) -> String {
    tag_key(route, repository, tag).to_string()
}

/// The key of a referrers record.
pub fn referrers_record_key(route: &str, repository: &str, subject: &str) -> Result<String> {
    referrers_key(route, repository, subject).map(|p| p.to_string())
}

/// `routes/<route>/repositories/<repository>/_referrers/<algorithm>/<hex>`.
fn referrers_key(route: &str, repository: &str, subject: &str) -> Result<Path> {
    let (algorithm, hex) = split_digest(subject)?;
    Ok(Path::from(format!(
        "routes/{route}/repositories/{repository}/_referrers/{algorithm}/{hex}"
    )))
}

/// `routes/<route>/<kind>/<algorithm>/<hex>`, for a digest safe as a path.
fn content_key(route: &str, kind: &str, digest: &str) -> Result<Path> {
    let (algorithm, hex) = split_digest(digest)?;
    Ok(Path::from(format!("routes/{route}/{kind}/{algorithm}/{hex}")))
}

/// `(algorithm, hex)` of a digest that is safe as a path.
fn split_digest(digest: &str) -> Result<(&str, &str)> {
    digest
        .split_once(':')
        .filter(|(a, h)| {
            matches!((*a, h.len()), ("sha256", 64) | ("sha512", 128))
                && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
        .ok_or_else(|| Error::DigestInvalid(digest.to_owned()))
}

/// `routes/<route>/repositories/<repository>/_tags/<tag>` (names already checked).
fn tag_key(route: &str, repository: &str, tag: &str) -> Path {
    Path::from(format!("routes/{route}/repositories/{repository}/_tags/{tag}"))
}

/// Reads `range` of a file in large chunks on the blocking pool.
fn file_stream(file: std::fs::File, range: Range<u64>) -> BoxStream<'static, std::io::Result<Bytes>> {
    let start = range.start;
    let len = range.end.saturating_sub(range.start);
    futures::stream::once(async move {
        let mut file = tokio::fs::File::from_std(file);
        file.seek(std::io::SeekFrom::Start(start)).await?;
        Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
            file.take(len),
            READ_CHUNK,
        ))
    })
    .try_flatten()
    .boxed()
}

/// Refuses a directory the cache may not write to (a probe file is
/// created and removed), naming it. A full disk is not refused: the cache
/// can serve from its upstreams until there is room.
fn check_writable(dir: &FsPath) -> Result<()> {
    tempfile::Builder::new()
        .prefix(".probe-")
        .tempfile_in(dir)
        .and_then(|probe| probe.close())
        .map_err(|e| Error::storage(format!("cannot write to {}", dir.display()), e))
}

/// Writes (64 KiB, so that a full disk says so), syncs and removes a file in `dir`.
fn write_probe_file(dir: &FsPath) -> Result<()> {
    use std::io::Write;
    let cannot = |e: std::io::Error| Error::storage(format!("cannot write to {}", dir.display()), e);
    let mut probe = tempfile::Builder::new()
        .prefix(".probe-")
        .tempfile_in(dir)
        .map_err(cannot)?;
    probe.write_all(&[0; 64 * 1024]).map_err(cannot)?;
    probe.as_file().sync_data().map_err(cannot)?;
    probe.close().map_err(cannot)
}

/// Bytes free on the filesystem of `dir` for an unprivileged writer.
fn free_space(dir: &FsPath) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct it is given, for a NUL-terminated path.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Removes spool files and half-written objects a crash left behind.
fn remove_leftovers(root: &FsPath, spool: &FsPath) -> Result<()> {
    let cannot = |e: std::io::Error| Error::storage("cannot clean the cache after a crash", e);
    for entry in std::fs::read_dir(spool).map_err(cannot)? {
        let path = entry.map_err(cannot)?.path();
        tracing::info!(path = %path.display(), "removing a spool file left by an earlier run");
        std::fs::remove_file(&path)
            .or_else(ignore_missing)
            .map_err(cannot)?;
    }
    if !root.as_os_str().is_empty() {
        remove_staging_files(root).map_err(|e| Error::storage("cannot check the cache directory", e))?;
    }
    Ok(())
}

/// `object_store` writes a local object to `<path>#<n>` and renames it: a
/// crash in between leaves that file. Every directory the walk passes is
/// one the cache writes in: one it cannot write to (left by another user)
/// is an error that names it.
fn remove_staging_files(dir: &FsPath) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if !may_write(&path) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("cannot write to {}", path.display()),
                ));
            }
            remove_staging_files(&path)?;
        } else if is_staging_name(&entry.file_name().to_string_lossy()) {
            tracing::info!(path = %path.display(), "removing a half-written cache object");
            std::fs::remove_file(&path).or_else(ignore_missing)?;
        }
    }
    Ok(())
}

/// Whether this process may create and remove files in `dir`.
fn may_write(dir: &FsPath) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}
