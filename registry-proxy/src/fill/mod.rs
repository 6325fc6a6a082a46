//! Single-flight blob fills: one upstream fetch per blob, however many
//! clients ask. The fetch writes into a spool file and publishes how far it
//! has got; every client (the first, later ones, ones with a `Range`) reads
//! the spool file up to there, so bytes reach them as they arrive. When the
//! blob is complete and verified it is committed to storage; when it fails,
//! every reader's body ends in an error (the connection is cut: no client
//! mistakes a partial blob for a whole one) and nothing is stored. No
//! reader, whole blob or range, reaches its end before the blob is verified.
//!
//! A fill runs on its own task, so a client that goes away stops nothing
//! at once. A fill left with no client at all goes on when it is worth it
//! (at least half done, or at most [`FINISH_WITHIN`](spool::FINISH_WITHIN) to go: the next pull
//! of the image wants it, and clients retry); otherwise it stops once
//! [`LINGER`](spool::LINGER) has passed without a client coming back, so that clients that
//! ask for big blobs and leave cannot keep the upstream link busy.
//!
//! A fill can also stop for the cache's own reasons: the disk is full (and
//! evicting, when a size limit allows it, made no room) or failing. Its
//! readers then go on from the upstream without storing (`passthrough`),
//! from the byte each had reached.

use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use registry_client::{GetBlobOptions, ImageReference, RepositoryClient};
use tokio::sync::{Notify, watch};

use crate::error::{Error, Result};
use crate::maintenance::Maintenance;
use crate::passthrough::PassThrough;
use crate::storage::{Kind, Storage};
use crate::warnings::Occasional;
use spool::SpoolSink;
pub use state::FillState;
use state::{ReaderSlot, Readers};

mod spool;
mod state;

/// Bytes a reader takes from the spool at a time. Small enough that hundreds of
/// answers under way hold little memory between them.
const READ_BYTES: u64 = 64 * 1024;

/// A blob being fetched.
pub struct Fill {
    /// The spool file, shared by every reader (it stays readable after the
    /// commit renames it).
    file: Arc<std::fs::File>,
    state: watch::Receiver<FillState>,
    /// The repository it is fetched for (linked to the blob when it is done).
    repository: String,
    readers: Arc<Readers>,
    /// What it fetches: where readers go on from when the fill stops.
    job: Arc<FillJob>,
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
                | FillState::Stopped { size: Some(size) }
                | FillState::Verified { size, .. }
                | FillState::Done { size, .. } => {
                    return Ok(*size);
                }
                FillState::Failed(error) => return Err(error.clone()),
                FillState::Stopped { size: None } => {
                    return Err(Arc::new(Error::storage(
                        "the fill stopped before its size was known",
                        std::io::Error::other("stopped"),
                    )));
                }
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

    /// Whether the blob is committed to storage (the fill is only winding down).
    pub fn committed(&self) -> bool {
        matches!(&*self.state.borrow(), FillState::Done { .. })
    }

    /// Whether the fill stopped for the cache's own reasons (its clients
    /// go on from the upstream).
    pub fn stopped(&self) -> bool {
        matches!(&*self.state.borrow(), FillState::Stopped { .. })
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
            file: Some(self.file.clone()),
            state: self.state.clone(),
            at: range.start,
            end: range.end,
            job: self.job.clone(),
            rest: None,
            _slot: self.readers.join(),
        };
        Box::pin(futures::stream::unfold(reader, |mut reader| async move {
            let next = reader.next().await?;
            Some((next, reader))
        }))
    }
}

struct Reader {
    /// `None` once the reader has gone on from the upstream (so that the
    /// spool's room is given back).
    file: Option<Arc<std::fs::File>>,
    state: watch::Receiver<FillState>,
    at: u64,
    end: u64,
    job: Arc<FillJob>,
    /// The rest, from the upstream, after the fill stopped.
    rest: Option<BoxStream<'static, std::io::Result<Bytes>>>,
    _slot: ReaderSlot,
}

impl Reader {
    /// The next bytes there are, once there are some; `None` at the end.
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        if let Some(rest) = &mut self.rest {
            return rest.next().await;
        }
        if self.at >= self.end {
            return None;
        }
        loop {
            // Until the blob is verified the range's last byte is held back:
            // a range, like a whole blob, must not end cleanly with bytes of
            // a blob that fails its digest.
            let readable = match &*self.state.borrow_and_update() {
                FillState::Running { written, .. } => Some((*written).min(self.end - 1)),
                FillState::Verified { size, .. } | FillState::Done { size, .. } => {
                    Some((*size).min(self.end))
                }
                FillState::Failed(error) => {
                    self.at = self.end;
                    return Some(Err(std::io::Error::other(error.to_string())));
                }
                FillState::Stopped { .. } => None,
            };
            let Some(readable) = readable else {
                return self.go_on_from_upstream().await;
            };
            if readable > self.at {
                let len = (readable - self.at).min(READ_BYTES);
                let (file, at) = (self.file.clone()?, self.at);
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

    /// The fill stopped: the rest of the range straight from the upstream.
    async fn go_on_from_upstream(&mut self) -> Option<std::io::Result<Bytes>> {
        self.file = None;
        let job = &self.job;
        let client = job.client.with_deadline(std::time::Instant::now() + job.timeout);
        let started = PassThrough::start(client, job.reference.clone(), job.digest.clone()).await;
        match started {
            Ok(rest) if rest.size >= self.end => {
                self.rest = Some(rest.read(self.at..self.end));
                self.rest.as_mut()?.next().await
            }
            Ok(rest) => {
                self.at = self.end;
                Some(Err(std::io::Error::other(format!(
                    "the upstream now says the blob has {} bytes",
                    rest.size
                ))))
            }
            Err(error) => {
                self.at = self.end;
                Some(Err(std::io::Error::other(registry_client::error::display_chain(
                    &error,
                ))))
            }
        }
    }
}

/// The fills under way, by storage key.
pub struct Fills {
    running: Mutex<HashMap<String, Arc<Fill>>>,
    /// A fill ended.
    ended: Notify,
    /// The storage's metrics, use records and health, and room-making.
    maintenance: Maintenance,
    failures: Occasional,
}

/// What a fill fetches.
pub struct FillJob {
    /// The route's client, without a deadline.
    pub client: RepositoryClient,
    /// The route's upstream fetch limit.
    pub fetches: Arc<tokio::sync::Semaphore>,
    /// The time the upstream has to answer.
    pub timeout: Duration,
    pub reference: ImageReference,
    pub route: String,
    pub digest: String,
}

/// How a fill ended, for its readers and the log.
enum Outcome {
    Done(u64, String),
    Failed(Error),
    /// `reason` is a metric label; the error, if any, is the storage's.
    Stopped(&'static str, Option<Error>),
}

impl Fills {
    pub fn new(maintenance: Maintenance) -> Fills {
        Fills {
            running: Mutex::new(HashMap::new()),
            ended: Notify::new(),
            maintenance,
            failures: Occasional::new(Duration::from_secs(10)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Fill>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fill of a blob under way, if there is one.
    pub fn running(&self, route: &str, digest: &str) -> Option<Arc<Fill>> {
        self.lock().get(&fill_key(route, digest)).cloned()
    }

    /// The fill of `job`'s blob under way, or a new one.
    pub fn join_or_start(self: &Arc<Self>, storage: &Storage, job: FillJob) -> Result<Arc<Fill>> {
        let job = Arc::new(job);
        let key = fill_key(&job.route, &job.digest);
        let mut running = self.lock();
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
        let readers = Arc::new(Readers {
            count: AtomicUsize::new(0),
            alone_since: Mutex::new(Instant::now()),
        });
        let fill = Arc::new(Fill {
            file: file.clone(),
            state: receiver,
            repository: job.reference.repository().to_owned(),
            readers: readers.clone(),
            job: job.clone(),
        });
        running.insert(key.clone(), fill.clone());
        drop(running);
        let (fills, storage) = (self.clone(), storage.clone());
        self.maintenance.metrics.fill_started();
        tokio::spawn(async move {
            let outcome = fills.run(&storage, &job, file, spool, &state, &readers).await;
            state.send_replace(fills.ended(&job, outcome, &state));
            fills.lock().remove(&key);
            // Counted as ended only once no request can join it: `fills_in_flight 0`
            // then means the next request for the blob reads what was stored.
            fills.maintenance.metrics.fill_ended();
            fills.ended.notify_waiters();
        });
        Ok(fill)
    }

    /// The state a fill ends in, once its outcome is counted and logged.
    fn ended(&self, job: &FillJob, outcome: Outcome, state: &watch::Sender<FillState>) -> FillState {
        match outcome {
            Outcome::Done(size, source) => {
                self.maintenance.metrics.fetched(&job.route, size);
                if let Ok(key) = crate::storage::blob_key(&job.route, &job.digest) {
                    self.maintenance.usage.added(key, size, &self.maintenance.metrics);
                }
                FillState::Done { size, source }
            }
            Outcome::Stopped(reason, error) => {
                self.maintenance.metrics.fill_stopped(reason);
                match &error {
                    Some(error) => {
                        self.maintenance
                            .health
                            .failed("fill a blob", error, &self.maintenance.metrics)
                    }
                    None => {
                        tracing::debug!(route = %job.route, digest = %job.digest, reason, "blob fill stopped")
                    }
                }
                let size = match &*state.borrow() {
                    FillState::Running { size, .. } => *size,
                    _ => None,
                };
                FillState::Stopped { size }
            }
            Outcome::Failed(error) => {
                if matches!(&error, Error::Upstream(e) if e.is_not_found()) {
                    // Any client can ask for what does not exist: no warning
                    // (each answer counts it, in the cache's metrics).
                } else if let Error::Storage { .. } = &error {
                    // Verified, then the commit failed: served all the same.
                    self.maintenance
                        .health
                        .failed("commit a blob", &error, &self.maintenance.metrics);
                } else if let Some(held_back) = self.failures.ready() {
                    tracing::warn!(
                        route = %job.route,
                        digest = %job.digest,
                        held_back,
                        "blob fill failed: {}",
                        registry_client::error::display_chain(&error)
                    );
                }
                // Verified bytes stay readable for the answers under way; only
                // the commit failed, and the next request fills again.
                match &*state.borrow() {
                    verified @ FillState::Verified { .. } => verified.clone(),
                    _ => FillState::Failed(Arc::new(error)),
                }
            }
        }
    }

    /// Fetches the blob into the spool, then commits it.
    async fn run(
        &self,
        storage: &Storage,
        job: &FillJob,
        file: Arc<std::fs::File>,
        spool: crate::storage::SpoolFile,
        state: &watch::Sender<FillState>,
        readers: &Readers,
    ) -> Outcome {
        let deadline = Instant::now() + job.timeout;
        let mut sink = SpoolSink {
            file,
            pending: Vec::new(),
            pending_bytes: 0,
            written: 0,
            published: 0,
            size: None,
            state,
            storage,
            maintenance: &self.maintenance,
            readers,
            room_checked: false,
            stopped: None,
        };
        let permit = match tokio::time::timeout_at(deadline.into(), job.fetches.acquire()).await {
            Ok(permit) => permit.expect("the semaphore is never closed"),
            Err(_) => {
                return Outcome::Failed(Error::Upstream(registry_client::Error::Timeout {
                    host: job.reference.registry().to_owned(),
                }));
            }
        };
        let fetched = job
            .client
            .with_deadline(deadline)
            .get_blob_into(&job.reference, &job.digest, &GetBlobOptions::default(), &mut sink)
            .await;
        drop(permit);
        // The last bytes, verified, go to the file (shown to readers with the verdict).
        let fetched = match fetched {
            Ok(fetched) => sink.flush(false).await.map(|()| fetched),
            Err(error) => Err(error),
        };
        let fetched = match (fetched, sink.stopped.take()) {
            (_, Some((reason, error))) => return Outcome::Stopped(reason, error),
            (Err(error), None) => return Outcome::Failed(error.into()),
            (Ok(fetched), None) => fetched,
        };
        // Verified: readers may have the last bytes now, not after the commit's fsync.
        state.send_replace(FillState::Verified {
            size: fetched.size,
            source: fetched.source.clone(),
        });
        let committed = async {
            storage.commit_blob(&job.route, &job.digest, spool).await?;
            storage
                .link(&job.route, job.reference.repository(), Kind::Blob, &job.digest)
                .await
        };
        match committed.await {
            Ok(()) => Outcome::Done(fetched.size, fetched.source),
            Err(error) => Outcome::Failed(error),
        }
    }

    /// Waits for the fills under way until `deadline`, and past it for
    /// those already verified (their commit is under way), so that a blob a
    /// client received whole during a shutdown is kept.
    pub async fn settle(&self, deadline: Instant) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let waiting: Vec<Arc<Fill>> = self.lock().values().cloned().collect();
            let past = Instant::now() >= deadline;
            let committing = |fill: &Arc<Fill>| matches!(&*fill.state.borrow(), FillState::Verified { .. });
            if waiting.is_empty() || (past && !waiting.iter().any(committing)) {
                if !waiting.is_empty() {
                    tracing::info!(
                        fills = waiting.len(),
                        "stopping with blob fills under way: they are dropped"
                    );
                }
                return;
            }
            if past {
                ended.await;
            } else {
                tokio::select! {
                    _ = ended => {}
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                }
            }
        }
    }
}

fn fill_key(route: &str, digest: &str) -> String {
    format!("{route} {digest}")
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
            readers: Arc::new(Readers {
                count: AtomicUsize::new(0),
                alone_since: Mutex::new(Instant::now()),
            }),
            job: Arc::new(FillJob {
                client: RepositoryClient::builder("oci").build().expect("client"),
                fetches: Arc::new(tokio::sync::Semaphore::new(1)),
                timeout: Duration::from_secs(1),
                reference: "127.0.0.1:1/app:v1".parse().expect("reference"),
                route: "app".into(),
                digest: registry_client::model::digest::sha256(content),
            }),
        };
        (fill, state)
    }

    #[tokio::test]
    async fn the_fill_knows_when_its_last_reader_leaves() {
        let (fill, _state) = fill(b"0123456789");
        assert!(fill.readers.alone_for().is_some());
        let first = fill.read(0..4);
        let second = fill.read(4..8);
        assert_eq!(fill.readers.alone_for(), None);
        drop(first);
        assert_eq!(fill.readers.alone_for(), None);
        drop(second);
        let alone = fill.readers.alone_for().expect("alone");
        assert!(alone < Duration::from_millis(100), "{alone:?}");
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
