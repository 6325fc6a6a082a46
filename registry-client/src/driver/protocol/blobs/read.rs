//! Streaming a blob into a sink: verified as it arrives, resumed with
//! `Range` after a broken body (from the same source, or from the next
//! one), never held whole in memory.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::sync::Mutex;

use crate::driver::protocol::registry::Registry;
use crate::driver::sources::{Need, Route, Source, preferring};
use crate::driver::transport::{RetryObserver, host_port};
use crate::error::{Error, Resource, Result};
use crate::model::digest::Hasher;
use crate::model::events::{Progress, ProgressEvent};
use crate::model::reference::ImageReference;

/// Where a downloaded blob's bytes go, in order, as they arrive.
pub trait BlobSink: Send {
    /// Takes the next bytes of the blob.
    fn write(&mut self, chunk: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Forgets everything written: the next source sends the blob again from
    /// its first byte (what arrived failed verification). A sink that has
    /// passed bytes on and cannot take them back fails here, which ends the
    /// download with the verification error.
    fn restart(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// The digest of every byte written so far (`sha256:…`, in the blob's
    /// algorithm).
    fn digest(&mut self) -> impl Future<Output = Result<String>> + Send;

    /// Told the blob's size as soon as it is known (from the descriptor, or
    /// from the source's answer), before its bytes.
    fn expect_size(&mut self, _size: u64) {}
}

/// A blob as a source answered a `HEAD` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlobHead {
    pub size: u64,
    /// The mirror or registry that answered.
    pub source: String,
}

/// A blob that [`RepositoryClient::fetch_blob`](crate::RepositoryClient::fetch_blob) delivered, verified.
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
    /// From the descriptor, or learnt from the first answer.
    size: Option<u64>,
    /// Bytes received (and handed to the sink) so far.
    written: u64,
    progress: Option<&'a Progress>,
}

impl<S: BlobSink> Download<'_, S> {
    fn emit(&self, event: ProgressEvent) {
        if let Some(p) = self.progress {
            p.emit(event)
        }
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
                reason: crate::error::display_chain(&refused),
            };
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
}

/// Downloads a blob of `reference`'s repository into `sink`, verified
/// against its digest (and `size`, when known; otherwise the size the
/// source announces), from the reference's sources in order (its
/// mirrors, then the registry). A body that breaks off is resumed with
/// `Range`; content that fails verification is asked for again from the
/// next source, if the sink can [`restart`](BlobSink::restart).
pub(crate) async fn fetch_blob<S: BlobSink>(
    registry: &Registry,
    reference: &ImageReference,
    digest: &str,
    size: Option<u64>,
    sink: &mut S,
) -> Result<FetchedBlob> {
    let route = registry.route(reference)?;
    let order = preferring(&route, None);
    download(&route, &order, digest, size, sink, None).await
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

/// A blob from `route`'s sources in `order`, into `sink`.
pub(crate) async fn download<S: BlobSink>(
    route: &Route,
    order: &[usize],
    digest: &str,
    size: Option<u64>,
    sink: &mut S,
    progress: Option<&Progress>,
) -> Result<FetchedBlob> {
    // Checked before anything is sent: an algorithm we cannot verify.
    Hasher::for_digest(digest)?;
    if let Some(size) = size {
        sink.expect_size(size);
    }
    let download = Download {
        sink,
        digest,
        size,
        written: 0,
        progress,
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
        if download.written > 0 {
            let range = HeaderValue::from_str(&format!("bytes={}-", download.written)).expect("ASCII");
            request.headers.insert(header::RANGE, range);
            // The deadline is for the blob's first bytes, not its body.
            request.deadline = None;
        }
        let mut response = source.transport().send(&request).await?;
        let host = host_port(response.url());
        let mut skip = match (download.written, response.status()) {
            (_, StatusCode::OK) => {
                download.learn_size(response.content_length(), &host)?;
                download.written
            }
            (_, StatusCode::PARTIAL_CONTENT) => {
                let total = check_content_range(response.headers(), download.written, &host)?;
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
            let data = chunk.slice(skipped as usize..);
            skip -= skipped;
            if data.is_empty() {
                continue;
            }
            let received = download.written + data.len() as u64;
            if let Some(expected) = download.size
                && received > expected
            {
                let error = Error::SizeMismatch {
                    digest: download.digest.to_owned(),
                    expected,
                    actual: received,
                };
                return Err(download.restart(error).await);
            }
            download.written = received;
            download.sink.write(data).await?;
            download.emit(ProgressEvent::BlobProgress {
                digest: download.digest.to_owned(),
                done: received,
                size: download.size.unwrap_or_default(),
            });
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
    let actual = download.sink.digest().await?;
    if actual != download.digest {
        let error = Error::DigestMismatch {
            expected: download.digest.to_owned(),
            actual,
        };
        return Err(download.restart(error).await);
    }
    Ok(())
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
