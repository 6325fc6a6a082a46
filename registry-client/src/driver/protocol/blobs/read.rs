//! Streaming a blob into a sink: verified as it arrives, resumed with
//! `Range` after a broken body (from the same source, or from the next
//! one), never held whole in memory.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::sync::Mutex;

use super::verify::Verifier;
use crate::driver::protocol::registry::Registry;
use crate::driver::sources::{Need, Route, Source, preferring};
use crate::driver::transport::{RetryObserver, host_port};
use crate::error::{Error, Resource, Result};
use crate::model::events::{Progress, ProgressEvent};
use crate::model::reference::ImageReference;

/// Where a downloaded blob's bytes go, in order, as they arrive. The download
/// checks them (size and digest); a sink only keeps or passes them on.
pub trait BlobSink: Send {
    /// Takes the next bytes of the blob.
    fn write(&mut self, chunk: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Forgets everything written: the next source sends the blob again from
    /// its first byte (what arrived failed verification). A sink that has
    /// passed bytes on and cannot take them back refuses, which ends the
    /// download with [`Error::CannotRefetch`].
    fn restart(&mut self) -> impl Future<Output = std::result::Result<(), RestartRefused>> + Send;

    /// Told the blob's size as soon as it is known (from the descriptor, or
    /// from the source's answer), before its bytes.
    fn expect_size(&mut self, _size: u64) {}
}

/// Why a [`BlobSink`] cannot take a blob again from its first byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct RestartRefused {
    reason: String,
}

impl RestartRefused {
    pub fn new(reason: impl Into<String>) -> Self {
        RestartRefused {
            reason: reason.into(),
        }
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A sink that failed while starting again cannot take the blob either.
impl From<Error> for RestartRefused {
    fn from(error: Error) -> Self {
        RestartRefused::new(crate::error::display_chain(&error))
    }
}

/// How to read a blob (like `object_store`'s `GetOptions`).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GetBlobOptions {
    /// The blob's size, when known (from its descriptor): a source that
    /// announces or sends another is refused before its bytes are passed on.
    pub size: Option<u64>,
    /// Only these bytes of the blob. A part cannot be checked against the
    /// blob's digest: its length is checked, and it is resumed like a whole
    /// blob.
    pub range: Option<Range<u64>>,
    /// Reports `BlobStarted`, `BlobProgress`, `Retry` and `BlobDone`.
    pub progress: Option<Progress>,
}

impl GetBlobOptions {
    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    pub fn range(mut self, range: Range<u64>) -> Self {
        self.range = Some(range);
        self
    }

    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// A blob as a source answered a `HEAD` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlobHead {
    pub size: u64,
    /// The mirror or registry that answered.
    pub source: String,
}

/// A blob that [`RepositoryClient::get_blob_into`](crate::RepositoryClient::get_blob_into) delivered, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchedBlob {
    pub size: u64,
    /// The source that sent its last bytes.
    pub source: String,
}

/// A blob download that may pass from one source to the next.
struct Download<'a, S> {
    sink: &'a mut S,
    digest: &'a str,
    /// Bytes wanted: the blob's size (from the descriptor, or learnt from the
    /// first answer), or the range's length.
    size: Option<u64>,
    /// Where in the blob the wanted bytes start (a range's start, else 0).
    offset: u64,
    /// Bytes received (and handed to the sink) so far.
    written: u64,
    /// `None` for a range, which has no digest of its own.
    verifier: Option<Verifier>,
    progress: Option<&'a Progress>,
}

impl<S: BlobSink> Download<'_, S> {
    fn emit(&self, event: ProgressEvent) {
        if let Some(p) = self.progress {
            p.emit(event)
        }
    }

    fn ranged(&self) -> bool {
        self.verifier.is_none()
    }

    /// Throws away what was received because of `cause`, so that the next
    /// source sends the blob from its first byte (what we had may be what was
    /// wrong). Returns the error this attempt ends with: `cause`, or
    /// [`Error::CannotRefetch`] when the sink cannot start again, so that no
    /// other source is asked to continue it.
    async fn restart(&mut self, cause: Error) -> Error {
        if let Err(refused) = self.sink.restart().await {
            return Error::CannotRefetch {
                cause: Box::new(cause),
                reason: refused.reason,
            };
        }
        if let Some(verifier) = &mut self.verifier
            && let Err(error) = verifier.reset().await
        {
            return error;
        }
        self.written = 0;
        self.emit(ProgressEvent::BlobStarted {
            digest: self.digest.to_owned(),
            size: self.size.unwrap_or_default(),
        });
        cause
    }

    /// Checks a source's first answer against what we know of the size, and
    /// learns the size when we did not know it.
    fn learn_size(&mut self, total: Option<u64>, host: &str) -> Result<()> {
        if self.ranged() {
            return Ok(());
        }
        match (self.size, total) {
            (None, Some(total)) => {
                self.size = Some(total);
                self.sink.expect_size(total);
            }
            (None, None) => {}
            (Some(expected), Some(total)) if expected != total => {
                return Err(Error::invalid_response(
                    host,
                    format!(
                        "blob {} is {total} bytes there, its descriptor says {expected}",
                        self.digest
                    ),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The `Range` to ask for: the rest of the wanted bytes, or none for a
    /// whole blob from its start.
    fn range_header(&self) -> Option<HeaderValue> {
        let from = self.offset + self.written;
        let value = match (self.ranged(), self.size) {
            (true, Some(size)) => format!("bytes={from}-{}", self.offset + size - 1),
            _ if from > 0 => format!("bytes={from}-"),
            _ => return None,
        };
        Some(HeaderValue::from_str(&value).expect("ASCII"))
    }
}

/// Downloads a blob of `reference`'s repository into `sink`, from the
/// reference's sources in order (its mirrors, then the registry).
pub(crate) async fn get_blob_into<S: BlobSink>(
    registry: &Registry,
    reference: &ImageReference,
    digest: &str,
    options: &GetBlobOptions,
    sink: &mut S,
) -> Result<FetchedBlob> {
    let route = registry.route(reference)?;
    let order = preferring(&route, None);
    download(&route, &order, digest, options, sink).await
}

/// The size of a blob, from a `HEAD` to the first of the reference's
/// sources that has it; nothing is downloaded.
pub(crate) async fn head_blob(
    registry: &Registry,
    reference: &ImageReference,
    digest: &str,
) -> Result<BlobHead> {
    let route = registry.route(reference)?;
    let what = format!("blob {digest}");
    let (size, source) = route
        .first_success(
            &preferring(&route, None),
            Need::Digest,
            &what,
            |source, last| async move {
                let request = blob_request(source, Method::HEAD, digest, last, None)?;
                let response = source.transport().send(&request).await?;
                let host = host_port(response.url());
                let headers = response.headers();
                if let Some(sent) = headers.get("docker-content-digest").and_then(|v| v.to_str().ok())
                    && sent.trim() != digest
                {
                    return Err(Error::invalid_response(
                        &host,
                        format!("asked for blob {digest}, answered for {sent}"),
                    ));
                }
                headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| Error::invalid_response(&host, "blob HEAD without a Content-Length"))
            },
        )
        .await?;
    Ok(BlobHead {
        size,
        source: source.name.clone(),
    })
}

/// The blob read path: `digest` from `route`'s sources in `order`, into
/// `sink`, checked against its size and digest as it arrives. A body that
/// breaks off is resumed with `Range`; content that fails verification is
/// asked for again from the next source, if the sink can
/// [`restart`](BlobSink::restart).
pub(crate) async fn download<S: BlobSink>(
    route: &Route,
    order: &[usize],
    digest: &str,
    options: &GetBlobOptions,
    sink: &mut S,
) -> Result<FetchedBlob> {
    // Checked before anything is sent: an algorithm we cannot verify.
    let verifier = Verifier::new(digest)?;
    let (size, offset, verifier) = match &options.range {
        None => (options.size, 0, Some(verifier)),
        Some(range) => {
            if range.is_empty() || options.size.is_some_and(|size| range.end > size) {
                return Err(Error::InvalidConfig(format!(
                    "cannot read bytes {range:?} of blob {digest} (of {} bytes)",
                    options.size.map_or("unknown".into(), |size| size.to_string())
                )));
            }
            (Some(range.end - range.start), range.start, None)
        }
    };
    if let Some(size) = size {
        sink.expect_size(size);
    }
    let download = Download {
        sink,
        digest,
        size,
        offset,
        written: 0,
        verifier,
        progress: options.progress.as_ref(),
    };
    download.emit(ProgressEvent::BlobStarted {
        digest: digest.to_owned(),
        size: size.unwrap_or_default(),
    });
    // The attempts run one after another; the lock only lends the state.
    let download = Mutex::new(download);
    let what = format!("blob {digest}");
    let (_, source) = route
        .first_success(order, Need::Digest, &what, |source, last| {
            let download = &download;
            async move {
                let mut download = download.lock().await;
                download_from(source, last, &mut download).await
            }
        })
        .await?;
    let download = download.into_inner();
    let size = download.written;
    download.emit(ProgressEvent::BlobDone {
        digest: digest.to_owned(),
        size,
    });
    Ok(FetchedBlob {
        size,
        source: source.name.clone(),
    })
}

/// Receives the rest of the blob from one source and checks it.
async fn download_from<S: BlobSink>(
    source: &Source,
    last: bool,
    download: &mut Download<'_, S>,
) -> Result<()> {
    let retry = source.transport().retry_config().clone();
    // Only the last source resumes where it broke off; others leave the
    // rest to the next source, which resumes from the same byte.
    let max_resumes = if last { retry.max_retries } else { 0 };
    let mut resumes: u32 = 0;
    let observer = retry_observer(download.progress, download.digest);
    let mut request = blob_request(source, Method::GET, download.digest, last, observer)?;
    loop {
        request.headers.remove(header::RANGE);
        if let Some(range) = download.range_header() {
            request.headers.insert(header::RANGE, range);
        }
        if download.written > 0 {
            // The deadline is for the blob's first bytes, not its body.
            request.deadline = None;
        }
        let mut response = source.transport().send(&request).await?;
        let host = host_port(response.url());
        let from = download.offset + download.written;
        let mut skip = match (from, response.status()) {
            // The whole blob, whatever was asked: skip what we have or do not want.
            (_, StatusCode::OK) => {
                download.learn_size(response.content_length(), &host)?;
                from
            }
            (_, StatusCode::PARTIAL_CONTENT) => {
                let total = check_content_range(response.headers(), from, &host)?;
                download.learn_size(total, &host)?;
                0
            }
            (0, _) => 0,
            (_, status) => {
                return Err(Error::invalid_response(
                    &host,
                    format!("unexpected {status} to a range request"),
                ));
            }
        };
        let broke = loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break None,
                Err(e) => break Some(e),
            };
            let skipped = skip.min(chunk.len() as u64);
            let mut data = chunk.slice(skipped as usize..);
            skip -= skipped;
            if data.is_empty() {
                continue;
            }
            if let Some(expected) = download.size
                && download.written + data.len() as u64 > expected
            {
                if download.ranged() {
                    // A source that sends past the range: the rest is not wanted.
                    data.truncate((expected - download.written) as usize);
                } else {
                    let error = Error::SizeMismatch {
                        digest: download.digest.to_owned(),
                        expected,
                        actual: download.written + data.len() as u64,
                    };
                    return Err(download.restart(error).await);
                }
            }
            let received = download.written + data.len() as u64;
            if let Some(verifier) = &mut download.verifier {
                verifier.update(&data).await?;
            }
            download.written = received;
            download.sink.write(data).await?;
            download.emit(ProgressEvent::BlobProgress {
                digest: download.digest.to_owned(),
                done: received,
                size: download.size.unwrap_or_default(),
            });
            if download.ranged() && download.size == Some(received) {
                break None;
            }
        };
        let complete = match download.size {
            Some(size) => download.written == size,
            // Without a size, a body that ended cleanly is the whole blob.
            None => broke.is_none(),
        };
        if complete {
            break;
        }
        // Broken off, or ended early: resume from what we have.
        let reason = match (broke, download.size) {
            (Some(e), _) => format!(
                "connection broke after {} bytes: {}",
                download.written,
                e.without_url()
            ),
            (None, size) => format!(
                "body ended after {} of {} bytes",
                download.written,
                size.unwrap_or_default()
            ),
        };
        resumes += 1;
        if resumes > max_resumes {
            // A network failure, not bad content: what arrived is kept.
            return Err(Error::Connection {
                host,
                source: format!(
                    "blob {}: {reason}; gave up after {} resumes",
                    download.digest,
                    resumes - 1
                )
                .into(),
            });
        }
        tracing::info!(digest = %download.digest, written = download.written, "resuming blob: {reason}");
        download.emit(ProgressEvent::Retry {
            what: download.digest.to_owned(),
            attempt: resumes,
            reason,
        });
        tokio::time::sleep(retry.backoff(resumes - 1)).await;
    }
    if let Some(verifier) = &mut download.verifier
        && let Err(error) = verifier.check().await
    {
        return Err(download.restart(error).await);
    }
    Ok(())
}

/// A small blob held in memory. Its size is bounded by the read's
/// [`GetBlobOptions::size`], which the download enforces.
pub(crate) struct BytesSink {
    bytes: bytes::BytesMut,
}

impl BytesSink {
    pub(crate) fn with_capacity(size: usize) -> Self {
        BytesSink {
            bytes: bytes::BytesMut::with_capacity(size),
        }
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        self.bytes.freeze()
    }
}

impl BlobSink for BytesSink {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.bytes.extend_from_slice(&chunk);
        Ok(())
    }

    async fn restart(&mut self) -> std::result::Result<(), RestartRefused> {
        self.bytes.clear();
        Ok(())
    }
}

fn blob_request(
    source: &Source,
    method: Method,
    digest: &str,
    last: bool,
    on_retry: Option<RetryObserver>,
) -> Result<crate::driver::transport::RegistryRequest> {
    let mut request = source.request(
        method,
        &format!("blobs/{digest}"),
        Some((Resource::Blob, digest)),
        last,
    )?;
    request.on_retry = on_retry;
    Ok(request)
}

/// Reports the transport's retries of a blob request as progress.
fn retry_observer(progress: Option<&Progress>, digest: &str) -> Option<RetryObserver> {
    progress.map(|p| {
        let (p, digest) = (p.clone(), digest.to_owned());
        RetryObserver(Arc::new(move |attempt, error: &Error| {
            p.emit(ProgressEvent::Retry {
                what: digest.clone(),
                attempt,
                reason: error.to_string(),
            })
        }))
    })
}

/// A 206 must start where we asked; returns the total size it gives, if any.
fn check_content_range(headers: &HeaderMap, start: u64, host: &str) -> Result<Option<u64>> {
    let value = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let range = value.strip_prefix("bytes ").unwrap_or_default();
    let (span, total) = range.split_once('/').unwrap_or((range, "*"));
    let first = span.split('-').next().and_then(|n| n.trim().parse::<u64>().ok());
    if first == Some(start) {
        Ok(total.trim().parse().ok())
    } else {
        Err(Error::invalid_response(
            host,
            format!("asked for bytes from {start}, got Content-Range {value:?}"),
        ))
    }
}
