//! A blob as a stream of verified bytes: the read path runs in a task of its
//! own and passes the bytes on one chunk behind, so that a reader never sees
//! the end of a blob that fails its check: it gets the error instead.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::read::{BlobSink, FetchedBlob, GetBlobOptions, RestartRefused, get_blob_into};
use crate::driver::protocol::registry::Registry;
use crate::error::{Error, Result};
use crate::model::reference::ImageReference;

/// Chunks in flight between the download and the reader: with the sources'
/// chunk sizes, a few hundred KiB.
const STREAM_CHUNKS: usize = 16;

/// The bytes of a blob (or of a range of it), in order, checked as they come
/// (see [`RepositoryClient::get_blob`](crate::RepositoryClient::get_blob)). An
/// error ends the stream; dropping it stops the download.
pub struct BlobStream {
    size: Option<u64>,
    chunks: Chunks,
}

enum Chunks {
    /// From a download running in its own task (stopped when the stream is dropped).
    Download {
        chunks: mpsc::Receiver<Result<Bytes>>,
        task: JoinHandle<()>,
    },
    /// From anything else: a file, memory.
    Other(Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>),
}

impl BlobStream {
    /// A blob's bytes from any stream of them, `size` bytes in all when known (an
    /// [`ImageSource`](crate::image::ImageSource) of your own returns one).
    pub fn from_stream(
        size: Option<u64>,
        chunks: impl Stream<Item = Result<Bytes>> + Send + 'static,
    ) -> BlobStream {
        BlobStream {
            size,
            chunks: Chunks::Other(Box::pin(chunks)),
        }
    }

    /// How many bytes the stream brings, when known (the descriptor's size,
    /// the source's `Content-Length`, or the range's length).
    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.chunks {
            Chunks::Download { chunks, .. } => chunks.poll_recv(cx),
            Chunks::Other(chunks) => chunks.as_mut().poll_next(cx),
        }
    }
}

impl Drop for BlobStream {
    fn drop(&mut self) {
        if let Chunks::Download { task, .. } = &self.chunks {
            task.abort();
        }
    }
}

/// Starts reading `digest` of `reference`'s repository; resolves once its
/// first bytes have arrived, or with the error of a read that failed before
/// them (a blob no source has, a refused token, …).
pub(crate) async fn get_blob(
    registry: &Registry,
    reference: &ImageReference,
    digest: &str,
    options: GetBlobOptions,
) -> Result<BlobStream> {
    let (started, first) = oneshot::channel();
    let (sender, chunks) = mpsc::channel(STREAM_CHUNKS);
    let mut sink = StreamSink {
        started: Some(started),
        size: None,
        held: None,
        passed_on: false,
        chunks: sender,
    };
    let (registry, reference, digest) = (registry.clone(), reference.clone(), digest.to_owned());
    let task = tokio::spawn(async move {
        let fetched = get_blob_into(&registry, &reference, &digest, &options, &mut sink).await;
        sink.finish(fetched).await;
    });
    match first.await {
        Ok(Ok(size)) => Ok(BlobStream {
            size,
            chunks: Chunks::Download { chunks, task },
        }),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Error::from(std::io::Error::other(
            "the blob's download task ended",
        ))),
    }
}

/// Passes the download's bytes to the stream, one chunk behind.
struct StreamSink {
    /// Told the size (or the error) at the first bytes, or at the end.
    started: Option<oneshot::Sender<Result<Option<u64>>>>,
    size: Option<u64>,
    /// The latest bytes, held until the next ones (or the verdict).
    held: Option<Bytes>,
    /// Whether any bytes reached the stream (they cannot be taken back).
    passed_on: bool,
    chunks: mpsc::Sender<Result<Bytes>>,
}

impl StreamSink {
    /// Sends the held bytes when the blob is verified; the error otherwise,
    /// to the stream if it has begun, else instead of it.
    async fn finish(mut self, fetched: Result<FetchedBlob>) {
        let last = match (fetched, self.started.take()) {
            (Ok(fetched), started) => {
                if let Some(started) = started {
                    let _ = started.send(Ok(Some(fetched.size)));
                }
                self.held.take().map(Ok)
            }
            (Err(error), Some(started)) => {
                let _ = started.send(Err(error));
                None
            }
            (Err(error), None) => Some(Err(error)),
        };
        if let Some(last) = last {
            let _ = self.chunks.send(last).await;
        }
    }
}

impl BlobSink for StreamSink {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if let Some(started) = self.started.take() {
            let _ = started.send(Ok(self.size));
        }
        if let Some(previous) = self.held.replace(chunk) {
            self.passed_on = true;
            if self.chunks.send(Ok(previous)).await.is_err() {
                return Err(Error::from(std::io::Error::other("the blob's reader went away")));
            }
        }
        Ok(())
    }

    async fn restart(&mut self) -> std::result::Result<(), RestartRefused> {
        if self.passed_on {
            return Err(RestartRefused::new(
                "its first bytes were already passed on to the reader",
            ));
        }
        self.held = None;
        Ok(())
    }

    fn expect_size(&mut self, size: u64) {
        self.size = Some(size);
    }
}
