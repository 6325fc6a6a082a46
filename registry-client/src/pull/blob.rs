//! Streaming a blob to a file: verified as it arrives, resumed with `Range`
//! after a broken body (from the same source, or from the next one), never
//! held whole in memory.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::sync::Mutex;

use super::progress::{Progress, ProgressEvent};
use super::sink::{Durability, FileSink, Hasher};
use crate::client::RepositoryClient;
use crate::error::{Error, Resource, Result};
use crate::output::BlobInfo;
use crate::sources::{Need, Route, Source};
use crate::transport::{RetryObserver, host_port};

/// A blob download that may pass from one source to the next.
struct Download<'a> {
    /// `None` once the blob is complete.
    out: Option<FileSink>,
    /// Bytes received (and handed to `out`) so far.
    written: u64,
    blob: &'a BlobInfo,
    progress: Option<&'a Progress>,
}

impl Download<'_> {
    fn emit(&self, event: ProgressEvent) {
        if let Some(p) = self.progress {
            p.emit(event)
        }
    }

    /// Throws away what was received: the next source sends the blob from
    /// its first byte (what we had may be what was wrong).
    async fn restart(&mut self) -> Result<()> {
        let out = self.out.take().expect("download in progress");
        self.out = Some(out.restart().await?);
        self.written = 0;
        self.emit(ProgressEvent::BlobStarted {
            digest: self.blob.digest.clone(),
            size: self.blob.size,
        });
        Ok(())
    }
}

impl RepositoryClient {
    /// Downloads `blob` into `file` (from its current position), verifying
    /// its size and digest, as durable as `durability` says, from `route`'s
    /// sources in `order`. A body that breaks off is resumed from the last
    /// byte received (`Range: bytes=N-`), by the same source if it is the
    /// last one to try, else by the next; a server that answers the whole
    /// blob (200) instead of the range (206) has the first N bytes skipped.
    /// Content that fails verification is fetched again, whole, from the
    /// next source. Returns the source that completed it. On any error
    /// `file` holds a partial blob that the caller must discard.
    pub(crate) async fn download_blob(
        &self,
        route: &Route,
        order: &[usize],
        blob: &BlobInfo,
        file: std::fs::File,
        durability: Durability,
        progress: Option<&Progress>,
    ) -> Result<String> {
        let download = Download {
            out: Some(FileSink::new(
                file,
                Hasher::for_digest(&blob.digest)?,
                durability,
            )?),
            written: 0,
            blob,
            progress,
        };
        download.emit(ProgressEvent::BlobStarted {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        let download = Mutex::new(download);
        let what = format!("blob {}", blob.digest);
        let (_, source) = route
            .first_success(order, Need::Digest, &what, |source, last| {
                let download = &download;
                async move {
                    let mut download = download.lock().await;
                    self.download_from(source, last, &mut download).await
                }
            })
            .await?;
        let mut download = download.into_inner();
        let out = download.out.take().expect("a completed download");
        out.finish().await?;
        download.emit(ProgressEvent::BlobDone {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        Ok(source.name.clone())
    }

    /// Receives the rest of the blob from one source and checks its digest.
    async fn download_from(&self, source: &Source, last: bool, download: &mut Download<'_>) -> Result<()> {
        let blob = download.blob;
        let retry = source.transport().retry_config().clone();
        // Only the last source resumes where it broke off; others leave the
        // rest to the next source, which resumes from the same byte.
        let max_resumes = if last { retry.max_retries } else { 0 };
        let mut resumes: u32 = 0;
        let mut request = source.request(
            Method::GET,
            &format!("blobs/{}", blob.digest),
            Some((Resource::Blob, &blob.digest)),
            last,
        )?;
        request.on_retry = retry_observer(download.progress, &blob.digest);
        loop {
            request.headers.remove(header::RANGE);
            if download.written > 0 {
                let range = HeaderValue::from_str(&format!("bytes={}-", download.written)).expect("ASCII");
                request.headers.insert(header::RANGE, range);
            }
            let mut response = source.transport().send(&request).await?;
            let host = host_port(response.url());
            let mut skip = match (download.written, response.status()) {
                (0, _) | (_, StatusCode::OK) => download.written,
                (_, StatusCode::PARTIAL_CONTENT) => {
                    check_content_range(response.headers(), download.written, &host)?;
                    0
                }
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
                if received > blob.size {
                    download.restart().await?;
                    return Err(Error::SizeMismatch {
                        digest: blob.digest.clone(),
                        expected: blob.size,
                        actual: received,
                    });
                }
                download.written = received;
                download
                    .out
                    .as_mut()
                    .expect("download in progress")
                    .write(data)
                    .await?;
                download.emit(ProgressEvent::BlobProgress {
                    digest: blob.digest.clone(),
                    done: received,
                    size: blob.size,
                });
            };
            if download.written == blob.size {
                break;
            }
            // Broken off, or ended early: resume from what we have.
            let reason = match broke {
                Some(e) => format!(
                    "connection broke after {} bytes: {}",
                    download.written,
                    e.without_url()
                ),
                None => format!("body ended after {} of {} bytes", download.written, blob.size),
            };
            resumes += 1;
            if resumes > max_resumes {
                // A network failure, not bad content: what arrived is kept.
                return Err(Error::Connection {
                    host,
                    source: format!(
                        "blob {}: {reason}; gave up after {} resumes",
                        blob.digest,
                        resumes - 1
                    )
                    .into(),
                });
            }
            tracing::info!(digest = %blob.digest, written = download.written, "resuming blob: {reason}");
            download.emit(ProgressEvent::Retry {
                what: blob.digest.clone(),
                attempt: resumes,
                reason,
            });
            tokio::time::sleep(retry.backoff(resumes - 1)).await;
        }
        let actual = download
            .out
            .as_mut()
            .expect("download in progress")
            .digest()
            .await?;
        if actual != blob.digest {
            download.restart().await?;
            return Err(Error::DigestMismatch {
                expected: blob.digest.clone(),
                actual,
            });
        }
        Ok(())
    }
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

/// A 206 must start where we asked.
fn check_content_range(headers: &HeaderMap, start: u64, host: &str) -> Result<()> {
    let value = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let first = value
        .strip_prefix("bytes ")
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.trim().parse::<u64>().ok());
    if first == Some(start) {
        Ok(())
    } else {
        Err(Error::invalid_response(
            host,
            format!("asked for bytes from {start}, got Content-Range {value:?}"),
        ))
    }
}
