//! Streaming a blob to a file: verified as it arrives, resumed with `Range`
//! after a broken body, never held whole in memory.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::progress::{Progress, ProgressEvent};
use super::sink::{Durability, FileSink, Hasher};
use crate::client::RepositoryClient;
use crate::error::{Error, Resource, Result};
use crate::output::BlobInfo;
use crate::reference::ImageReference;
use crate::transport::{RegistryRequest, RetryObserver, host_port};

impl RepositoryClient {
    /// Downloads `blob` of `reference`'s repository into `file` (from its
    /// current position), verifying its size and digest, as durable as
    /// `durability` says. A body that breaks off is resumed
    /// from the last byte received (`Range: bytes=N-`); a server that answers
    /// the whole blob (200) instead of the range (206) has the first N bytes
    /// skipped. On any error `file` holds a partial blob that the caller must
    /// discard.
    pub(crate) async fn download_blob(
        &self,
        reference: &ImageReference,
        blob: &BlobInfo,
        file: std::fs::File,
        durability: Durability,
        progress: Option<&Progress>,
    ) -> Result<()> {
        let emit = |event| {
            if let Some(p) = progress {
                p.emit(event)
            }
        };
        let retry = self.transport().retry_config().clone();
        let mut out = FileSink::new(file, Hasher::for_digest(&blob.digest)?, durability)?;
        let mut written: u64 = 0;
        let mut resumes: u32 = 0;
        emit(ProgressEvent::BlobStarted {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        let mut request = self.blob_request(reference, &blob.digest, progress)?;
        loop {
            request.headers.remove(header::RANGE);
            if written > 0 {
                let range = HeaderValue::from_str(&format!("bytes={written}-")).expect("ASCII");
                request.headers.insert(header::RANGE, range);
            }
            let mut response = self.transport().send(&request).await?;
            let host = host_port(response.url());
            let mut skip = match (written, response.status()) {
                (0, _) | (_, StatusCode::OK) => written,
                (_, StatusCode::PARTIAL_CONTENT) => {
                    check_content_range(response.headers(), written, &host)?;
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
                if written + data.len() as u64 > blob.size {
                    return Err(Error::SizeMismatch {
                        digest: blob.digest.clone(),
                        expected: blob.size,
                        actual: written + data.len() as u64,
                    });
                }
                written += data.len() as u64;
                out.write(data).await?;
                emit(ProgressEvent::BlobProgress {
                    digest: blob.digest.clone(),
                    done: written,
                    size: blob.size,
                });
            };
            if written == blob.size {
                break;
            }
            // Broken off, or ended early: resume from what we have.
            let reason = match broke {
                Some(e) => format!("connection broke after {written} bytes: {}", e.without_url()),
                None => format!("body ended after {written} of {} bytes", blob.size),
            };
            resumes += 1;
            if resumes > retry.max_retries {
                // A network failure, not bad content: what arrived so far verified.
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
            tracing::info!(digest = %blob.digest, written, "resuming blob: {reason}");
            emit(ProgressEvent::Retry {
                what: blob.digest.clone(),
                attempt: resumes,
                reason,
            });
            tokio::time::sleep(retry.backoff(resumes - 1)).await;
        }
        let (_, actual) = out.finish().await?;
        if actual != blob.digest {
            return Err(Error::DigestMismatch {
                expected: blob.digest.clone(),
                actual,
            });
        }
        emit(ProgressEvent::BlobDone {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        Ok(())
    }

    fn blob_request(
        &self,
        reference: &ImageReference,
        digest: &str,
        progress: Option<&Progress>,
    ) -> Result<RegistryRequest> {
        let on_retry = progress.map(|p| {
            let (p, digest) = (p.clone(), digest.to_owned());
            RetryObserver(Arc::new(move |attempt, error: &Error| {
                p.emit(ProgressEvent::Retry {
                    what: digest.clone(),
                    attempt,
                    reason: error.to_string(),
                })
            }))
        });
        Ok(RegistryRequest {
            registry: reference.registry().to_owned(),
            method: Method::GET,
            url: self.repository_url(reference, &format!("blobs/{digest}"))?,
            headers: HeaderMap::new(),
            scope: Some(crate::client::pull_scope(reference)),
            not_found: Some((
                Resource::Blob,
                reference.repository().to_owned(),
                digest.to_owned(),
            )),
            on_retry,
        })
    }
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
