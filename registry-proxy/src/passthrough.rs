//! A blob from upstream straight to one client, verified but never stored:
//! what a miss gets when the cache cannot write (a full or failing disk),
//! and how a client whose fill stopped for that reason gets the rest.
//!
//! The whole blob is downloaded and hashed (a range too, to check it); the
//! bytes of the range asked for are passed on as they arrive, at the
//! client's pace (a small queue, no buffering of the blob), and the last of
//! them only once the digest matches: a client never gets a complete but
//! corrupt blob, its connection is cut instead.

use registry_client::BlobSink;
use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use registry_client::model::digest::Hasher;
use registry_client::{ImageReference, RepositoryClient};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Chunks on their way to the client at a time.
const QUEUE: usize = 16;

/// A download under way whose size is known; [`read`](Self::read) says
/// which bytes the client gets.
pub struct PassThrough {
    pub size: u64,
    range: oneshot::Sender<Range<u64>>,
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
}

impl PassThrough {
    /// Starts downloading `digest`; resolves once the upstream has said its
    /// size (or failed).
    pub async fn start(
        client: RepositoryClient,
        reference: ImageReference,
        digest: String,
    ) -> Result<PassThrough> {
        let (size_tx, size_rx) = oneshot::channel();
        let (range_tx, range_rx) = oneshot::channel();
        let (chunks_tx, chunks) = mpsc::channel(QUEUE);
        let mut sink = Forward {
            hasher: Hasher::for_digest(&digest)?,
            size: Some(size_tx),
            range: Wanted::Waiting(range_rx),
            at: 0,
            held: None,
            forwarded: false,
            chunks: chunks_tx,
        };
        let registry = reference.registry().to_owned();
        tokio::spawn(async move {
            let fetched = client.fetch_blob(&reference, &digest, None, &mut sink).await;
            sink.finish(fetched.map(drop)).await;
        });
        match size_rx.await {
            Ok(Ok(size)) => Ok(PassThrough {
                size,
                range: range_tx,
                chunks,
            }),
            Ok(Err(error)) => Err(Error::Upstream(error)),
            Err(_) => Err(Error::Upstream(registry_client::Error::InvalidResponse {
                host: registry,
                message: "a blob without a size".into(),
            })),
        }
    }

    /// The bytes of `range` (within the size), ending in an error if the
    /// blob fails.
    pub fn read(self, range: Range<u64>) -> BoxStream<'static, std::io::Result<Bytes>> {
        let _ = self.range.send(range);
        Box::pin(futures::stream::unfold(self.chunks, |mut chunks| async move {
            let next = chunks.recv().await?;
            Some((next, chunks))
        }))
    }
}

/// Which bytes the client wants: told once the headers are decided.
enum Wanted {
    Waiting(oneshot::Receiver<Range<u64>>),
    Known(Range<u64>),
    /// The client went away (or wants nothing): stop downloading.
    Gone,
}

/// Hashes every byte and passes on those wanted, one chunk behind.
struct Forward {
    hasher: Hasher,
    /// The size, or why there is none (a blob the upstream does not have).
    size: Option<oneshot::Sender<registry_client::Result<u64>>>,
    range: Wanted,
    /// Bytes of the blob seen so far.
    at: u64,
    /// The latest wanted bytes, held until the next ones (or the verdict).
    held: Option<Bytes>,
    forwarded: bool,
    chunks: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Forward {
    async fn range(&mut self) -> Option<Range<u64>> {
        if let Wanted::Waiting(receiver) = &mut self.range {
            self.range = match receiver.await {
                Ok(range) => Wanted::Known(range),
                Err(_) => Wanted::Gone,
            };
        }
        match &self.range {
            Wanted::Known(range) => Some(range.clone()),
            _ => None,
        }
    }

    /// Sends the held bytes when the blob is verified; an error otherwise,
    /// to the answer if it has begun, else instead of one.
    async fn finish(mut self, verdict: registry_client::Result<()>) {
        let last = match (verdict, self.size.take()) {
            (Ok(()), _) => self.held.take().map(Ok),
            (Err(error), Some(unanswered)) => {
                let _ = unanswered.send(Err(error));
                None
            }
            (Err(error), None) => Some(Err(std::io::Error::other(registry_client::error::display_chain(
                &error,
            )))),
        };
        if let Some(last) = last {
            let _ = self.chunks.send(last).await;
        }
    }
}

impl BlobSink for Forward {
    async fn write(&mut self, chunk: Bytes) -> registry_client::Result<()> {
        self.hasher.update(&chunk);
        let start = self.at;
        self.at += chunk.len() as u64;
        let Some(range) = self.range().await else {
            return Err(registry_client::Error::from(std::io::Error::other(
                "the client went away",
            )));
        };
        let (from, to) = (start.max(range.start), self.at.min(range.end));
        if from < to {
            let wanted = chunk.slice((from - start) as usize..(to - start) as usize);
            if let Some(previous) = self.held.replace(wanted) {
                self.forwarded = true;
                if self.chunks.send(Ok(previous)).await.is_err() {
                    return Err(registry_client::Error::from(std::io::Error::other(
                        "the client went away",
                    )));
                }
            }
        }
        Ok(())
    }

    async fn restart(&mut self) -> registry_client::Result<()> {
        if self.forwarded {
            return Err(registry_client::Error::from(std::io::Error::other(
                "its first bytes were already sent to the client",
            )));
        }
        self.hasher = self.hasher.fresh();
        self.at = 0;
        self.held = None;
        Ok(())
    }

    async fn digest(&mut self) -> registry_client::Result<String> {
        Ok(self.hasher.clone().finish())
    }

    fn expect_size(&mut self, size: u64) {
        if let Some(sender) = self.size.take() {
            let _ = sender.send(Ok(size));
        }
    }
}
