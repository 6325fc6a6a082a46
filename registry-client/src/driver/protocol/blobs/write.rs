//! The upload side of the distribution API, for one repository of one registry (never a
//! mirror): blob existence, cross-repository mounts, monolithic and chunked uploads resumed
//! from the offset the registry reports, and manifests put with their exact bytes (and, for
//! a registry without the referrers API, a referrer added to its subject's fallback tag).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, stream};
use http::{HeaderValue, Method, StatusCode, header};
use url::Url;

use crate::driver::protocol::referrers::read_fallback_index;
use crate::driver::protocol::registry::Registry;
use crate::driver::sources::Source;
use crate::driver::transport::{RegistryRequest, host_port};
use crate::error::{Error, Resource, Result};
use crate::model::digest::{Hasher, sha256};
use crate::model::manifest::media_types::OCI_INDEX;
use crate::model::reference::ImageReference;
use crate::model::referrers::fallback_tag;
use oci_spec::image::{Descriptor, Digest, ImageIndexBuilder, MediaType};
use std::str::FromStr as _;

/// Blobs up to this size go up in one `PUT`; larger ones in `PATCH` chunks of this size
/// (or the registry's `OCI-Chunk-Min-Length`, when larger), each kept until the registry
/// has it, so that a broken chunk is sent again from where the registry says it stopped.
pub(crate) const CHUNK_SIZE: usize = 8 * 1024 * 1024;
/// Times one chunk is sent again after its request failed.
const CHUNK_ATTEMPTS: u32 = 4;

/// What a push did with one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository had it already.
    Present,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// An upload session: where its next request goes (the registry moves it with each answer).
struct Session {
    location: Url,
    /// `OCI-Chunk-Min-Length`: the smallest chunk the registry takes, but for the last.
    min_chunk: usize,
}

/// Whether `reference`'s repository holds blob `digest` (a `HEAD`, with push access
/// asked for, so that a push that follows needs no other token).
pub(crate) async fn blob_exists(
    registry: &Registry,
    reference: &ImageReference,
    digest: &str,
) -> Result<bool> {
    let target = push_target(registry, reference)?;
    let mut request = push_request(&target, Method::HEAD, target.url(&format!("blobs/{digest}"))?)?;
    request.not_found = Some((Resource::Blob, target.repository().to_owned(), digest.to_owned()));
    match target.transport().send(&request).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Mounts blob `digest` from repository `from` (of the same registry) into
/// `reference`'s repository. `false` when the registry would not (it does not have the
/// blob there, or does not mount across repositories); the upload it opened instead is
/// cancelled.
pub(crate) async fn mount_blob(
    registry: &Registry,
    reference: &ImageReference,
    digest: &str,
    from: &str,
) -> Result<bool> {
    let target = push_target(registry, reference)?;
    let mut url = target.url("blobs/uploads/")?;
    url.query_pairs_mut()
        .append_pair("mount", digest)
        .append_pair("from", from);
    let mut request = push_request(&target, Method::POST, url)?;
    request.scope = Some(format!(
        "repository:{}:pull,push repository:{from}:pull",
        reference.repository()
    ));
    let response = target.transport().send(&request).await?;
    if response.status() == StatusCode::CREATED {
        return Ok(true);
    }
    // 202: an upload was opened instead; nothing will be sent to it.
    if let Ok(session) = session_from(&response, request.url.clone()) {
        cancel_upload(&target, &session).await;
    }
    Ok(false)
}

/// Uploads blob `digest` of `size` bytes from `chunks` (its bytes in order) into
/// `reference`'s repository: in one `PUT` when small, else in `PATCH` chunks, each sent
/// again from the registry's offset when its request fails. The bytes are checked
/// against `digest` and `size` before the registry is asked to commit them (a stream
/// that brings more than `size` is [`Error::SizeMismatch`] as soon as it does); on any
/// error the upload is cancelled and nothing is committed.
pub(crate) async fn upload_blob<S>(
    registry: &Registry,
    reference: &ImageReference,
    digest: &str,
    size: u64,
    mut chunks: S,
) -> Result<()>
where
    S: Stream<Item = Result<Bytes>> + Unpin + Send,
{
    let target = push_target(registry, reference)?;
    let mut session = start_upload(&target).await?;
    let result = async {
        let mut hasher = Hasher::for_digest(digest)?;
        let mut sent = 0u64;
        let chunk_size = CHUNK_SIZE.max(session.min_chunk);
        let mut buffer = BytesMut::with_capacity(chunk_size.min(size as usize));
        loop {
            let next = chunks.next().await.transpose()?;
            if let Some(bytes) = &next {
                hasher.update(bytes);
                buffer.extend_from_slice(bytes);
                // The stream's fault, not the registry's: stop before sending more.
                let seen = sent + buffer.len() as u64;
                if seen > size {
                    return Err(Error::SizeMismatch {
                        digest: digest.to_owned(),
                        expected: size,
                        actual: seen,
                    });
                }
            }
            let last = next.is_none();
            // A small blob goes up whole with the commit; a large one in chunks.
            if last && sent == 0 {
                break;
            }
            if buffer.len() >= chunk_size || (last && !buffer.is_empty()) {
                let chunk = buffer.split().freeze();
                send_chunk(&target, &mut session, sent, chunk.clone()).await?;
                sent += chunk.len() as u64;
            }
            if last {
                break;
            }
        }
        check_sent(digest, size, hasher.finish(), sent + buffer.len() as u64)?;
        commit_upload(&target, &session, digest, buffer.freeze()).await
    }
    .await;
    if result.is_err() {
        cancel_upload(&target, &session).await;
    }
    result
}

/// Uploads blob `digest` of `size` bytes from `chunks` in one streamed `PATCH`, as
/// skopeo does: memory is what the stream holds, one request per blob.
///
/// `chunks` is checked by its producer, so that its bytes are hashed once: it must end
/// only after all its bytes were found to be the blob, and yield an error otherwise (a
/// verified download does both). The upload commits only after that end and with
/// `size` bytes sent. On any error the upload is cancelled; the stream cannot be sent
/// again, so the caller starts over.
pub(crate) async fn upload_blob_streamed<S>(
    registry: &Registry,
    reference: &ImageReference,
    digest: &str,
    size: u64,
    chunks: S,
) -> Result<()>
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    let target = push_target(registry, reference)?;
    let session = start_upload(&target).await?;
    let sent = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicBool::new(false));
    let counted = {
        let (sent, ended) = (sent.clone(), ended.clone());
        chunks
            .inspect(move |item| {
                if let Ok(bytes) = item {
                    sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            })
            // Polled only once `chunks` has ended: its producer vouched for its bytes.
            .chain(stream::poll_fn(move |_| {
                ended.store(true, Ordering::Release);
                Poll::Ready(None)
            }))
    };
    let result = async {
        let mut request = push_request(&target, Method::PATCH, session.location.clone())?;
        request.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let response = target
            .transport()
            .send_streaming(&request, reqwest::Body::wrap_stream(counted))
            .await?;
        let next = Session {
            location: location(&response, &session.location)?,
            min_chunk: session.min_chunk,
        };
        let total = sent.load(Ordering::Relaxed);
        if !ended.load(Ordering::Acquire) || total != size {
            return Err(Error::from(std::io::Error::other(format!(
                "the registry answered the upload of {digest} after {total} of its {size} bytes"
            ))));
        }
        commit_upload(&target, &next, digest, Bytes::new()).await
    }
    .await;
    if result.is_err() {
        cancel_upload(&target, &session).await;
    }
    result
}

/// Puts `bytes` as they are, as the manifest `reference` names (by tag, or by digest).
/// Returns its digest. A manifest put by digest must have that digest.
pub(crate) async fn put_manifest(
    registry: &Registry,
    reference: &ImageReference,
    media_type: &str,
    bytes: Bytes,
) -> Result<String> {
    let digest = sha256(&bytes);
    let name = match (reference.tag(), reference.digest()) {
        (_, Some(expected)) if expected != digest => {
            return Err(Error::DigestMismatch {
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        (_, Some(by_digest)) => by_digest.to_owned(),
        (Some(tag), None) => tag.to_owned(),
        (None, None) => digest.clone(),
    };
    let target = push_target(registry, reference)?;
    let response = send_manifest(&target, &name, media_type, bytes.clone()).await?;
    check_stored_digest(&response, &digest, "the manifest")?;
    // A registry with the referrers API says it indexed the subject; for one without,
    // the client keeps the subject's fallback tag up to date (OCI distribution 1.1).
    if !response.headers().contains_key("oci-subject")
        && let Some(referrer) = referrer_of(&bytes, media_type, &digest)
    {
        add_to_fallback_index(&target, reference, referrer).await?;
    }
    Ok(digest)
}

/// `PUT …/manifests/<name>` with `bytes` as they are.
async fn send_manifest(
    target: &Source,
    name: &str,
    media_type: &str,
    bytes: Bytes,
) -> Result<reqwest::Response> {
    let mut request = push_request(target, Method::PUT, target.url(&format!("manifests/{name}"))?)?;
    request
        .headers
        .insert(header::CONTENT_TYPE, header_value(media_type)?);
    request.body = Some(bytes);
    target.transport().send(&request).await
}

/// A manifest's subject, and its own descriptor as the subject's referrers list names
/// it; `None` when it has no subject.
struct Referrer {
    subject: String,
    descriptor: Descriptor,
}

fn referrer_of(bytes: &[u8], media_type: &str, digest: &str) -> Option<Referrer> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct WithSubject {
        subject: Option<Descriptor>,
        artifact_type: Option<String>,
        config: Option<Descriptor>,
        annotations: Option<std::collections::HashMap<String, String>>,
    }
    let parsed: WithSubject = serde_json::from_slice(bytes).ok()?;
    let subject = parsed.subject?.digest().to_string();
    // An image manifest without `artifactType` is of its config's type.
    let artifact_type = parsed
        .artifact_type
        .or_else(|| parsed.config.map(|c| c.media_type().to_string()));
    let mut descriptor = Descriptor::new(
        MediaType::from(media_type),
        bytes.len() as u64,
        Digest::from_str(digest).ok()?,
    );
    descriptor.set_artifact_type(artifact_type.map(|t| MediaType::from(t.as_str())));
    descriptor.set_annotations(parsed.annotations);
    Some(Referrer { subject, descriptor })
}

/// How many times the fallback index is read, changed and written again when another
/// writer's change replaced ours in between.
const INDEX_ATTEMPTS: usize = 3;

/// Adds `referrer` to its subject's fallback index (`sha256-<hex>`): reads it (none is
/// an empty index), adds the descriptor unless it is there, writes it back, and reads it
/// again to check. Distribution takes no conditional `PUT`, so a concurrent writer can
/// still replace the index between our write and its own: a descriptor found missing
/// when read back is added again, up to three times, and then it is an error.
async fn add_to_fallback_index(
    target: &Source,
    reference: &ImageReference,
    referrer: Referrer,
) -> Result<()> {
    let tag = fallback_tag(&referrer.subject);
    let wanted = referrer.descriptor.digest().to_string();
    // Read from the registry itself; no index yet is an empty one.
    let read_index = || async {
        match read_fallback_index(target, reference, &referrer.subject, true).await {
            Err(err) if err.is_not_found() => Ok(Vec::new()),
            read => read,
        }
    };
    let lists_it = |listed: &[Descriptor]| listed.iter().any(|d| d.digest().to_string() == wanted);
    for _ in 0..INDEX_ATTEMPTS {
        let mut listed = read_index().await?;
        if lists_it(&listed) {
            return Ok(());
        }
        listed.push(referrer.descriptor.clone());
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(listed)
            .build()
            .map_err(|e| Error::InvalidConfig(format!("the referrers index {tag}: {e}")))?;
        let bytes = Bytes::from(serde_json::to_vec(&index).map_err(|e| Error::InvalidConfig(e.to_string()))?);
        send_manifest(target, &tag, OCI_INDEX, bytes).await?;
        if lists_it(&read_index().await?) {
            return Ok(());
        }
    }
    Err(Error::invalid_response(
        &host_port(&target.url("")?),
        format!(
            "{}:{tag}: another writer kept replacing the referrers index; {wanted} is not in it",
            reference.name()
        ),
    ))
}

/// The registry itself (never a mirror) for `reference`'s repository.
fn push_target(registry: &Registry, reference: &ImageReference) -> Result<Source> {
    registry.registry_source(reference)
}

async fn start_upload(target: &Source) -> Result<Session> {
    let request = push_request(target, Method::POST, target.url("blobs/uploads/")?)?;
    let response = target.transport().send(&request).await?;
    session_from(&response, request.url.clone())
}

/// Sends `chunk`, which starts at `offset` of the blob. When the request fails, asks
/// the registry how far it got and sends the rest of the chunk from there.
async fn send_chunk(target: &Source, session: &mut Session, offset: u64, chunk: Bytes) -> Result<()> {
    let end = offset + chunk.len() as u64;
    let mut from = offset;
    let mut attempt = 0;
    loop {
        let part = chunk.slice((from - offset) as usize..);
        let mut request = push_request(target, Method::PATCH, session.location.clone())?;
        request.fail_fast = true;
        request.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        request.headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("{from}-{}", end - 1))?,
        );
        request.body = Some(part);
        let error = match target.transport().send(&request).await {
            Ok(response) => {
                *session = Session {
                    location: location(&response, &session.location)?,
                    min_chunk: session.min_chunk,
                };
                return Ok(());
            }
            Err(error) => error,
        };
        attempt += 1;
        if attempt >= CHUNK_ATTEMPTS || !(error.is_retryable() || is_range_error(&error)) {
            return Err(error);
        }
        tracing::info!(
            host = %host_port(&session.location),
            offset = from,
            attempt,
            "upload chunk failed, asking the registry where to go on: {error}"
        );
        let reached = upload_offset(target, session).await?;
        if reached < offset || reached > end {
            return Err(Error::invalid_response(
                &host_port(&session.location),
                format!("the upload is at byte {reached}, not within the chunk {offset}-{end} being sent"),
            ));
        }
        if reached == end {
            return Ok(());
        }
        from = reached;
    }
}

/// How many bytes of the upload the registry holds (`GET` on the session: its `Range`).
async fn upload_offset(target: &Source, session: &mut Session) -> Result<u64> {
    let request = push_request(target, Method::GET, session.location.clone())?;
    let response = target.transport().send(&request).await?;
    let host = host_port(response.url());
    let range = response
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    session.location = location(&response, &session.location)?;
    match range {
        // Nothing yet: some registries send no Range, others `0-0`… ambiguous only for
        // a one-byte upload, which is never chunked.
        None => Ok(0),
        Some(range) => {
            let end = range
                .trim()
                .trim_start_matches("bytes=")
                .split_once('-')
                .and_then(|(_, end)| end.parse::<u64>().ok())
                .ok_or_else(|| Error::invalid_response(&host, format!("upload status Range {range:?}")))?;
            Ok(if end == 0 { 0 } else { end + 1 })
        }
    }
}

/// `PUT` with the digest: the rest of the blob (`tail`, maybe all of it) and the commit.
async fn commit_upload(target: &Source, session: &Session, digest: &str, tail: Bytes) -> Result<()> {
    let mut url = session.location.clone();
    url.query_pairs_mut().append_pair("digest", digest);
    let mut request = push_request(target, Method::PUT, url)?;
    request.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    request.body = Some(tail);
    let response = target.transport().send(&request).await?;
    check_stored_digest(&response, digest, &format!("blob {digest}"))
}

/// Tells the registry to drop an upload; a failure only leaves it to expire.
async fn cancel_upload(target: &Source, session: &Session) {
    if let Ok(mut request) = push_request(target, Method::DELETE, session.location.clone()) {
        request.fail_fast = true;
        if let Err(error) = target.transport().send(&request).await {
            tracing::debug!(host = %host_port(&session.location), "cancelling an upload: {error}");
        }
    }
}

/// What went up must be the blob: `total` bytes hashing to `actual`, before the commit.
fn check_sent(digest: &str, size: u64, actual: String, total: u64) -> Result<()> {
    if total != size || actual != digest {
        return Err(Error::DigestMismatch {
            expected: format!("{digest} ({size} bytes)"),
            actual: format!("{actual} ({total} bytes)"),
        });
    }
    Ok(())
}

/// A registry that says it stored `what` under another digest than `digest` stored
/// something else.
fn check_stored_digest(response: &reqwest::Response, digest: &str, what: &str) -> Result<()> {
    match response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    {
        Some(said) if said != digest => Err(Error::invalid_response(
            &host_port(response.url()),
            format!("stored {what} as {said}; its bytes are {digest}"),
        )),
        _ => Ok(()),
    }
}

/// A request to the destination, asking for pull and push access.
fn push_request(target: &Source, method: Method, url: Url) -> Result<RegistryRequest> {
    let mut request = target.request(method, "", Some((Resource::Blob, "")), true)?;
    request.url = url;
    request.not_found = None;
    request.scope = Some(format!("repository:{}:pull,push", target.repository()));
    Ok(request)
}

fn header_value(text: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(text).map_err(|_| Error::InvalidConfig(format!("{text:?} is not a header value")))
}

/// The session a `POST` (or a mount the registry declined) opened.
fn session_from(response: &reqwest::Response, request_url: Url) -> Result<Session> {
    let min_chunk = response
        .headers()
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Ok(Session {
        location: location(response, &request_url)?,
        min_chunk,
    })
}

/// An answer's `Location`, resolved against the URL it answered.
fn location(response: &reqwest::Response, base: &Url) -> Result<Url> {
    let host = host_port(base);
    let value = response
        .headers()
        .get(header::LOCATION)
        .ok_or_else(|| Error::invalid_response(&host, "upload answer without a Location"))?
        .to_str()
        .map_err(|_| Error::invalid_response(&host, "upload Location is not text"))?;
    let url = base
        .join(value)
        .map_err(|e| Error::invalid_response(&host, format!("upload Location {value:?}: {e}")))?;
    if url.origin() != base.origin() {
        // Credentials go only to the registry's own origin: an upload elsewhere would be
        // sent without them, and is not something a registry of ours does.
        return Err(Error::invalid_response(
            &host,
            format!("upload Location {value:?} leaves the registry"),
        ));
    }
    Ok(url)
}

/// Whether the registry has dropped the upload session (Distribution cancels one whose
/// `PATCH` broke off part way: the offset in its state no longer matches what it holds).
/// The blob can only be sent again from its first byte, in a new session.
pub(crate) fn is_upload_lost(error: &Error) -> bool {
    matches!(error, Error::Registry { errors, .. }
        if errors.iter().any(|e| e.code == "BLOB_UPLOAD_UNKNOWN" || e.code == "BLOB_UPLOAD_INVALID"))
}

/// A `416`: the registry's idea of the offset differs from ours.
fn is_range_error(error: &Error) -> bool {
    matches!(error, Error::Registry { status: 416, .. })
}
