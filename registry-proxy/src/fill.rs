//! Single-flight blob fills: one upstream fetch per blob, however many
//! clients ask. The fetch writes into a spool file and publishes how far it
//! has got; every client (the first, later ones, ones with a `Range`) reads
//! the spool file up to there, so bytes reach them as they arrive. The fill
//! runs on its own task: a client that goes away stops nothing. When the
//! blob is complete and verified it is committed to storage; when it fails,
//! every reader's body ends in an error (the connection is cut: no client
//! mistakes a partial blob for a whole one) and nothing is stored. No
//! reader, whole blob or range, reaches its end before the blob is verified.

use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use registry_client::digest::Hasher;
use registry_client::pull::BlobSink;
use registry_client::{ImageReference, RepositoryClient};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::storage::{Kind, Storage};
use crate::usage::Usage;

/// Bytes gathered before they are written to the spool (and shown to readers).
const FLUSH_BYTES: usize = 256 * 1024;
/// Bytes a reader takes from the spool at a time. Small enough that hundreds of
/// answers under way hold little memory between them.
const READ_BYTES: u64 = 64 * 1024;

/// How far a fill has got.
#[derive(Debug, Clone)]
pub enum FillState {
    Running {
        written: u64,
        size: Option<u64>,
    },
    /// Every byte is in the spool and matches the digest; the commit is under way.
    /// Readers may finish: they need not wait for the storage to make it durable.
    Verified {
        size: u64,
        source: String,
    },
    Done {
        size: u64,
        source: String,
    },
    Failed(Arc<Error>),
}

/// A blob being fetched.
pub struct Fill {
    /// The spool file, shared by every reader (it stays readable after the
    /// commit renames it).
    file: Arc<std::fs::File>,
    state: watch::Receiver<FillState>,
    /// The repository it is fetched for (linked to the blob when it is done).
    repository: String,
}

impl Fill {
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The blob's size, once the upstream has said it; the fill's error if
    /// it failed first.
    pub async fn size(&self) -> Result<u64, Arc<Error>> {
        let mut state = self.state.clone();
        loop {
            match &*state.borrow_and_update() {
                FillState::Running { size: Some(size), .. }
                | FillState::Verified { size, .. }
                | FillState::Done { size, .. } => {
                    return Ok(*size);
                }
                FillState::Failed(error) => return Err(error.clone()),
                FillState::Running { size: None, .. } => {}
            }
            if state.changed().await.is_err() {
                return Err(Arc::new(Error::storage(
                    "the fill stopped",
                    std::io::Error::other("no state"),
                )));
            }
        }
    }

    /// The upstream the blob is coming from, once known.
    pub fn source(&self) -> Option<String> {
        match &*self.state.borrow() {
            FillState::Verified { source, .. } | FillState::Done { source, .. } => Some(source.clone()),
            _ => None,
        }
    }

    /// `range` of the blob as it lands: ends with an error if the fill fails.
    pub fn read(&self, range: Range<u64>) -> BoxStream<'static, std::io::Result<Bytes>> {
        let reader = Reader {
            file: self.file.clone(),
            state: self.state.clone(),
            at: range.start,
            end: range.end,
        };
        Box::pin(futures::stream::unfold(reader, |mut reader| async move {
            let next = reader.next().await?;
            Some((next, reader))
        }))
    }
}

struct Reader {
    file: Arc<std::fs::File>,
    state: watch::Receiver<FillState>,
    at: u64,
    end: u64,
}

impl Reader {
    /// The next bytes there are, once there are some; `None` at the end.
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        if self.at >= self.end {
            return None;
        }
        loop {
            // Until the blob is verified the range's last byte is held back:
            // a range, like a whole blob, must not end cleanly with bytes of
            // a blob that fails its digest.
            let readable = match &*self.state.borrow_and_update() {
                FillState::Running { written, .. } => (*written).min(self.end - 1),
                FillState::Verified { size, .. } | FillState::Done { size, .. } => (*size).min(self.end),
                FillState::Failed(error) => {
                    self.at = self.end;
                    return Some(Err(std::io::Error::other(error.to_string())));
                }
            };
            if readable > self.at {
                let len = (readable - self.at).min(READ_BYTES);
                let (file, at) = (self.file.clone(), self.at);
                let read = tokio::task::spawn_blocking(move || {
                    let mut buffer = vec![0; len as usize];
                    file.read_exact_at(&mut buffer, at).map(|()| Bytes::from(buffer))
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
                if let Ok(bytes) = &read {
                    self.at += bytes.len() as u64;
                }
                return Some(read);
            }
            if self.state.changed().await.is_err() {
                self.at = self.end;
                return Some(Err(std::io::Error::other("the fill stopped")));
            }
        }
    }
}

/// The fills under way, by storage key.
pub struct Fills {
    running: Mutex<HashMap<String, Arc<Fill>>>,
    metrics: Arc<Metrics>,
    usage: Arc<Usage>,
}

/// What a fill fetches.
pub struct FillJob {
    pub client: RepositoryClient,
    /// The route's upstream fetch limit.
    pub fetches: Arc<tokio::sync::Semaphore>,
    pub reference: ImageReference,
    pub route: String,
    pub digest: String,
}

impl Fills {
    pub fn new(metrics: Arc<Metrics>, usage: Arc<Usage>) -> Fills {
        Fills {
            running: Mutex::new(HashMap::new()),
            metrics,
            usage,
        }
    }

    /// The fill of a blob under way, if there is one.
    pub fn running(&self, route: &str, digest: &str) -> Option<Arc<Fill>> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.get(&fill_key(route, digest)).cloned()
    }

    /// The fill of `job`'s blob under way, or a new one.
    pub fn join_or_start(self: &Arc<Self>, storage: &Storage, job: FillJob) -> Result<Arc<Fill>> {
        let key = fill_key(&job.route, &job.digest);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fill) = running.get(&key) {
            return Ok(fill.clone());
        }
        let spool = storage.spool_file()?;
        let file = Arc::new(
            spool
                .file()
                .try_clone()
                .map_err(|e| Error::storage("cannot open a spool file", e))?,
        );
        let (state, receiver) = watch::channel(FillState::Running {
            written: 0,
            size: None,
        });
        let fill = Arc::new(Fill {
            file: file.clone(),
            state: receiver,
            repository: job.reference.repository().to_owned(),
        });
        running.insert(key.clone(), fill.clone());
        drop(running);
        let (fills, storage) = (self.clone(), storage.clone());
        self.metrics.fill_started();
        tokio::spawn(async move {
            let outcome = run(&storage, &job, file, spool, &state).await;
            fills.metrics.fill_ended();
            state.send_replace(match outcome {
                Ok((size, source)) => {
                    fills.metrics.fetched(&job.route, size);
                    if let Ok(key) = crate::storage::blob_key(&job.route, &job.digest) {
                        fills.usage.added(key, size, &fills.metrics);
                    }
                    FillState::Done { size, source }
                }
                Err(error) => {
                    tracing::warn!(
                        route = %job.route,
                        digest = %job.digest,
                        "blob fill failed: {}",
                        registry_client::error::display_chain(&error)
                    );
                    // Verified bytes stay readable for the answers under way; only
                    // the commit failed, and the next request fills again.
                    match &*state.borrow() {
                        verified @ FillState::Verified { .. } => verified.clone(),
                        _ => FillState::Failed(Arc::new(error)),
                    }
                }
            });
            fills
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
        Ok(fill)
    }
}

fn fill_key(route: &str, digest: &str) -> String {
    format!("{route} {digest}")
}

/// Fetches the blob into the spool, then commits it.
async fn run(
    storage: &Storage,
    job: &FillJob,
    file: Arc<std::fs::File>,
    spool: crate::storage::SpoolFile,
    state: &watch::Sender<FillState>,
) -> Result<(u64, String)> {
    let mut sink = SpoolSink {
        file,
        hasher: Some(Hasher::for_digest(&job.digest)?),
        pending: Vec::new(),
        pending_bytes: 0,
        written: 0,
        published: 0,
        size: None,
        state,
    };
    let permit = job
        .fetches
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let fetched = job
        .client
        .fetch_blob(&job.reference, &job.digest, None, &mut sink)
        .await?;
    drop(permit);
    // Verified: readers may have the last bytes now, not after the commit's fsync.
    state.send_replace(FillState::Verified {
        size: fetched.size,
        source: fetched.source.clone(),
    });
    storage.commit_blob(&job.route, &job.digest, spool).await?;
    storage
        .link(&job.route, job.reference.repository(), Kind::Blob, &job.digest)
        .await?;
    Ok((fetched.size, fetched.source))
}

/// Writes a fill into its spool file in batches, and tells readers.
struct SpoolSink<'a> {
    file: Arc<std::fs::File>,
    /// `None` while a batch is being written.
    hasher: Option<Hasher>,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    /// Bytes in the file.
    written: u64,
    /// Bytes shown to readers.
    published: u64,
    size: Option<u64>,
    state: &'a watch::Sender<FillState>,
}

impl SpoolSink<'_> {
    /// Hashes and writes what is gathered; shows it to readers if `publish`.
    /// The last bytes are not shown until the blob is verified: a reader
    /// must never reach the end of a blob that fails.
    async fn flush(&mut self, publish: bool) -> registry_client::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let (file, mut hasher, offset) = (self.file.clone(), self.hasher.take(), self.written);
        let (hasher, written) = tokio::task::spawn_blocking(move || {
            let mut at = offset;
            for chunk in &batch {
                if let Some(h) = hasher.as_mut() {
                    h.update(chunk);
                }
                file.write_all_at(chunk, at)?;
                at += chunk.len() as u64;
            }
            Ok::<_, std::io::Error>((hasher, at))
        })
        .await
        .map_err(|e| registry_client::Error::Io(std::io::Error::other(e)))??;
        self.hasher = hasher;
        self.written = written;
        if publish {
            self.published = written;
            self.state.send_replace(FillState::Running {
                written,
                size: self.size,
            });
        }
        Ok(())
    }
}

impl BlobSink for SpoolSink<'_> {
    async fn write(&mut self, chunk: Bytes) -> registry_client::Result<()> {
        self.pending_bytes += chunk.len();
        self.pending.push(chunk);
        if self.pending_bytes >= FLUSH_BYTES {
            self.flush(true).await?;
        }
        Ok(())
    }

    async fn restart(&mut self) -> registry_client::Result<()> {
        // Readers may have the bytes already: they cannot be taken back.
        if self.published > 0 {
            return Err(registry_client::Error::Io(std::io::Error::other(
                "its first bytes were already sent to clients",
            )));
        }
        self.pending.clear();
        self.pending_bytes = 0;
        self.written = 0;
        self.hasher = self.hasher.take().map(|h| h.fresh());
        Ok(())
    }

    async fn digest(&mut self) -> registry_client::Result<String> {
        self.flush(false).await?;
        Ok(self.hasher.clone().map(Hasher::finish).unwrap_or_default())
    }

    fn expect_size(&mut self, size: u64) {
        self.size = Some(size);
        self.state.send_modify(|state| {
            if let FillState::Running { size: known, .. } = state {
                *known = Some(size);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// A fill over `content` with its state in the test's hands.
    fn fill(content: &[u8]) -> (Fill, watch::Sender<FillState>) {
        let file = tempfile::tempfile().expect("spool");
        file.write_all_at(content, 0).expect("write");
        let (state, receiver) = watch::channel(FillState::Running {
            written: content.len() as u64,
            size: Some(content.len() as u64),
        });
        let fill = Fill {
            file: Arc::new(file),
            state: receiver,
            repository: "app".into(),
        };
        (fill, state)
    }

    async fn next(stream: &mut BoxStream<'static, std::io::Result<Bytes>>) -> Option<std::io::Result<Bytes>> {
        tokio::time::timeout(std::time::Duration::from_millis(200), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no answer within 200 ms"))
    }

    #[tokio::test]
    async fn a_range_ends_only_once_the_blob_is_verified() {
        let (fill, state) = fill(b"0123456789");
        let mut range = fill.read(2..6);
        assert_eq!(next(&mut range).await.unwrap().unwrap(), &b"234"[..]);
        // The last byte waits for the verdict, though it is in the spool.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(100), range.next()).await;
        assert!(waiting.is_err(), "the range ended before the blob was verified");
        state.send_replace(FillState::Verified {
            size: 10,
            source: "upstream".into(),
        });
        assert_eq!(next(&mut range).await.unwrap().unwrap(), &b"5"[..]);
        assert!(next(&mut range).await.is_none());
    }

    #[tokio::test]
    async fn a_range_of_a_blob_that_fails_ends_in_an_error() {
        let (fill, state) = fill(b"0123456789");
        let mut range = fill.read(0..4);
        assert_eq!(next(&mut range).await.unwrap().unwrap(), &b"012"[..]);
        state.send_replace(FillState::Failed(Arc::new(Error::storage(
            "digest mismatch",
            std::io::Error::other("corrupt"),
        ))));
        assert!(next(&mut range).await.unwrap().is_err());
        assert!(next(&mut range).await.is_none());
    }
}
