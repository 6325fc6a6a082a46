//! Manifests, blobs (`GET`, `HEAD`, `Range`), tag lists (`n`, `last`) and
//! referrers (`artifactType`) of a route's images, in the spec's answers.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use registry_client::error::Resource;
use registry_client::{ImageReference, ReferencePart};
use serde_json::json;

use crate::Proxy;
use crate::cache::{BlobFound, ManifestAnswer};
use crate::cache_result::CacheResult;
use crate::error::Error;
use crate::log::{Early, Served};
use crate::routes::{NoRoute, Route, Selector};

use super::errors::{ApiError, READ, unsupported};
use super::service::{authenticate, request_host};

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const OCI_NAMESPACE: HeaderName = HeaderName::from_static("oci-namespace");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
const OCI_INDEX: &str = registry_client::media_types::OCI_INDEX;

/// What a `/v2/…` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target<'p> {
    Manifest { name: &'p str, reference: &'p str },
    Blob { name: &'p str, digest: &'p str },
    Upload,
    Tags { name: &'p str },
    Referrers { name: &'p str, digest: &'p str },
    Unknown,
}

fn target(path: &str) -> Target<'_> {
    if let Some(name) = path.strip_suffix("/tags/list") {
        return Target::Tags { name };
    }
    if path.contains("/blobs/uploads") {
        return Target::Upload;
    }
    if let Some((name, reference)) = path.rsplit_once("/manifests/") {
        return Target::Manifest { name, reference };
    }
    if let Some((name, digest)) = path.rsplit_once("/referrers/")
        && !digest.contains('/')
    {
        return Target::Referrers { name, digest };
    }
    if let Some((name, digest)) = path.rsplit_once("/blobs/") {
        return Target::Blob { name, digest };
    }
    Target::Unknown
}

pub(super) async fn v2(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    Path(path): Path<String>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    early: Option<Extension<Early>>,
) -> Response {
    let namespace = query.get("ns").map(String::as_str).filter(|ns| !ns.is_empty());
    let host = request_host(&headers, &uri);
    let early = early.map(|Extension(early)| early).unwrap_or_default();
    let asked = Asked {
        namespace,
        host,
        headers: &headers,
        early: &early,
    };
    let mut response = match target(&path) {
        // Nothing is ever being uploaded: the status of an upload is
        // "unknown" (as a registry says of one it never started), and
        // starting or continuing one is not allowed.
        Target::Upload => match method {
            Method::GET | Method::HEAD => ApiError::new(
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
                "this cache takes no uploads",
            )
            .into_response(),
            _ => unsupported(READ),
        },
        Target::Unknown => ApiError::new(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "this cache serves manifests, blobs, tag lists and referrers",
        )
        .into_response(),
        Target::Manifest { name, reference } => match method {
            Method::GET | Method::HEAD => {
                let head = method == Method::HEAD;
                routed(&proxy, &asked, name, |route, name| {
                    manifest(proxy.clone(), route, name, reference, head)
                })
                .await
            }
            _ => unsupported(READ),
        },
        Target::Blob { name, digest } => match method {
            Method::GET | Method::HEAD => {
                let head = method == Method::HEAD;
                let range = headers.get(header::RANGE).cloned();
                routed(&proxy, &asked, name, |route, name| {
                    blob(proxy.clone(), route, name, digest, head, range)
                })
                .await
            }
            _ => unsupported(READ),
        },
        Target::Tags { name } => match method {
            Method::GET => {
                let (n, last) = (query.get("n").cloned(), query.get("last").cloned());
                let shown = path.strip_suffix("/tags/list").unwrap_or_default().to_owned();
                routed(&proxy, &asked, name, |route, name| {
                    tags(route, name, shown, n, last, namespace.map(str::to_owned))
                })
                .await
            }
            _ => unsupported("GET"),
        },
        Target::Referrers { name, digest } => match method {
            Method::GET => {
                let artifact_type = query.get("artifactType").filter(|t| !t.is_empty()).cloned();
                routed(&proxy, &asked, name, |route, name| {
                    referrers(proxy.clone(), route, name, digest, artifact_type)
                })
                .await
            }
            _ => unsupported("GET"),
        },
    };
    if let Some(ns) = namespace.and_then(|ns| HeaderValue::from_str(ns).ok()) {
        response.headers_mut().insert(OCI_NAMESPACE, ns);
    }
    response
}

/// What selects a request's route and says who sent it.
struct Asked<'r> {
    namespace: Option<&'r str>,
    host: Option<&'r str>,
    headers: &'r HeaderMap,
    /// Where the route goes as soon as it is known (for a client that
    /// leaves before its answer).
    early: &'r Early,
}

/// Finds the request's route, checks the client may use it, then runs
/// `handle` with it and the name without the route's prefix; notes the
/// route and the user for the access log.
async fn routed<F, Fut>(proxy: &Proxy, asked: &Asked<'_>, name: &str, handle: F) -> Response
where
    F: FnOnce(Arc<Route>, String) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let shown = name;
    let (route, name, selector): (Arc<Route>, &str, Selector) =
        match proxy.routes.resolve(asked.namespace, asked.host, name) {
            Ok(found) => found,
            Err(NoRoute::Namespace(ns)) => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    format!("this cache has no route for registry {ns:?}"),
                )
                .into_response();
            }
            Err(NoRoute::NoDefault) => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    "no route matches this name and there is no default route",
                )
                .into_response();
            }
        };
    asked.early.route(&route.name, selector);
    let note = |mut response: Response, user: Option<String>| {
        let served = response.extensions_mut().get_or_insert_with(Served::default);
        served.user = user;
        response
    };
    let user = if route.public {
        None
    } else {
        let scope = format!("repository:{shown}:pull");
        match authenticate(proxy, asked.headers, asked.host, Some(&scope)).await {
            Ok(user) => Some(user),
            Err(refusal) => return note(refusal.into_response(), None),
        }
    };
    let response = handle(route, name.to_owned())
        .await
        .unwrap_or_else(IntoResponse::into_response);
    note(response, user)
}

/// `GET`/`HEAD /v2/<name>/manifests/<tag or digest>`.
async fn manifest(
    proxy: Arc<Proxy>,
    route: Arc<Route>,
    name: String,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let separator = if reference.contains(':') { '@' } else { ':' };
    let image = image_reference(&route, &format!("{name}{separator}{reference}"))?;
    let answer: ManifestAnswer = proxy
        .cache
        .manifest(&route, &image, head)
        .await
        .map_err(|e| ApiError::from_error(&e, Resource::Manifest))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, header_value(&answer.media_type)?);
    headers.insert(DIGEST, header_value(&answer.digest)?);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(answer.size));
    headers.insert(header::ETAG, header_value(&format!("\"{}\"", answer.digest))?);
    headers.insert(X_CACHE, HeaderValue::from_static(answer.cache.as_str()));
    let body = match (head, answer.bytes) {
        (false, Some(bytes)) => Body::from(bytes),
        _ => Body::empty(),
    };
    let mut response = (StatusCode::OK, headers, body).into_response();
    let mut served = Served::new(answer.cache, answer.upstream);
    if !head {
        served.pulled = Some(image.repository().to_owned());
    }
    response.extensions_mut().insert(served);
    Ok(response)
}

/// `GET`/`HEAD /v2/<name>/blobs/<digest>`, with `Range`.
async fn blob(
    proxy: Arc<Proxy>,
    route: Arc<Route>,
    name: String,
    digest: &str,
    head: bool,
    range: Option<HeaderValue>,
) -> Result<Response, ApiError> {
    check_digest(digest)?;
    let image = image_reference(&route, &format!("{name}@{digest}"))?;
    let found: BlobFound = if head {
        proxy.cache.blob_for_head(&route, &image, digest).await
    } else {
        proxy.cache.blob_for_get(&route, &image, digest).await
    }
    .map_err(|e| ApiError::from_error(&e, Resource::Blob))?;
    let cache = found.cache();
    let (upstream, fill) = match &found.location {
        crate::cache::BlobLocation::Upstream(source) => (Some(source.clone()), None),
        crate::cache::BlobLocation::Filling(fill) => (None, Some(fill.clone())),
        _ => (None, None),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(DIGEST, header_value(digest)?);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(X_CACHE, HeaderValue::from_static(cache.as_str()));
    let (status, span) = match byte_range(range.as_ref(), found.size) {
        ByteRange::Whole => (StatusCode::OK, 0..found.size),
        ByteRange::Part(span) => {
            let content_range = format!("bytes {}-{}/{}", span.start, span.end - 1, found.size);
            headers.insert(header::CONTENT_RANGE, header_value(&content_range)?);
            (StatusCode::PARTIAL_CONTENT, span)
        }
        ByteRange::Unsatisfiable => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{}", found.size))?,
            );
            headers.remove(header::CONTENT_TYPE);
            let mut response = (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
            response.extensions_mut().insert(Served::new(cache, upstream));
            return Ok(response);
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(span.end - span.start));
    let body = if head {
        Body::empty()
    } else {
        let stream = proxy
            .cache
            .read_blob(&route, &image, digest, found, span)
            .await
            .map_err(|e| ApiError::from_error(&e, Resource::Blob))?;
        Body::from_stream(stream)
    };
    let mut served = Served::new(cache, upstream);
    served.fill = fill;
    let mut response = (status, headers, body).into_response();
    response.extensions_mut().insert(served);
    Ok(response)
}

/// `GET /v2/<name>/tags/list?n=&last=`: the upstream's whole list, sorted,
/// then paged here.
async fn tags(
    route: Arc<Route>,
    name: String,
    shown: String,
    n: Option<String>,
    last: Option<String>,
    namespace: Option<String>,
) -> Result<Response, ApiError> {
    let image = image_reference(&route, &name)?;
    let limit = match n.as_deref() {
        None | Some("") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("n={n:?} is not a number"),
            )
        })?),
    };
    let listed = match route.upstream().await {
        Ok(upstream) => upstream.list_tags(&image).await.map_err(Error::Upstream),
        Err(error) => Err(error),
    };
    let mut all = listed.map_err(|e| ApiError::from_error(&e, Resource::Repository))?;
    all.sort();
    all.dedup();
    let after: Vec<String> = match last.as_deref().filter(|l| !l.is_empty()) {
        Some(last) => all.into_iter().filter(|t| t.as_str() > last).collect(),
        None => all,
    };
    let (page, more) = match limit {
        Some(n) if n < after.len() => (after[..n].to_vec(), true),
        _ => (after, false),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let (true, Some(n), Some(last)) = (more, limit, page.last()) {
        let mut link = format!("</v2/{shown}/tags/list?n={n}&last={last}");
        if let Some(ns) = &namespace {
            link.push_str(&format!("&ns={ns}"));
        }
        link.push_str(">; rel=\"next\"");
        headers.insert(header::LINK, header_value(&link)?);
    }
    let body = json!({ "name": image.repository(), "tags": page }).to_string();
    let mut response = (StatusCode::OK, headers, body).into_response();
    response
        .extensions_mut()
        .insert(Served::new(CacheResult::Miss, None));
    Ok(response)
}

/// `GET /v2/<name>/referrers/<digest>?artifactType=`: the subject's referrers (from
/// the upstream's API, or its fallback tag where it has none, kept like a tag) in one
/// page, filtered as asked.
async fn referrers(
    proxy: Arc<Proxy>,
    route: Arc<Route>,
    name: String,
    digest: &str,
    artifact_type: Option<String>,
) -> Result<Response, ApiError> {
    check_digest(digest)?;
    let image = image_reference(&route, &format!("{name}@{digest}"))?;
    let found = proxy
        .referrers
        .list(&route, &image, artifact_type.as_deref())
        .await
        .map_err(|e| ApiError::from_error(&e, Resource::Manifest))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if artifact_type.is_some() {
        headers.insert(OCI_FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
    }
    headers.insert(X_CACHE, HeaderValue::from_static(found.cache.as_str()));
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": found.manifests,
    })
    .to_string();
    let mut response = (StatusCode::OK, headers, body).into_response();
    response
        .extensions_mut()
        .insert(Served::new(found.cache, found.upstream));
    Ok(response)
}

/// The image a request names, checked and normalised as a reference to the
/// route's registry (`alpine` on Docker Hub is `library/alpine`).
fn image_reference(route: &Route, name: &str) -> Result<ImageReference, ApiError> {
    ImageReference::parse(&format!("{}/{name}", route.registry)).map_err(|e| {
        let (code, message) = match &e {
            registry_client::Error::InvalidReference { part, reason, .. } => match part {
                ReferencePart::Tag => ("TAG_INVALID", reason.clone()),
                ReferencePart::Digest => ("DIGEST_INVALID", reason.clone()),
                _ => ("NAME_INVALID", reason.clone()),
            },
            other => ("NAME_INVALID", other.to_string()),
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    })
}

/// Only digests the cache can verify (and use as a key).
fn check_digest(digest: &str) -> Result<(), ApiError> {
    let valid = digest.split_once(':').is_some_and(|(algorithm, hex)| {
        matches!((algorithm, hex.len()), ("sha256", 64) | ("sha512", 128))
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("invalid digest {digest:?}: expected sha256:<64 hex> or sha512:<128 hex>"),
        ))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

/// A single `bytes=` range of a `size`-byte blob. Anything this does not
/// read (several ranges, another unit) is ignored: the whole blob is sent.
fn byte_range(header: Option<&HeaderValue>, size: u64) -> ByteRange {
    let Some(spec) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("bytes="))
        .filter(|s| !s.contains(','))
    else {
        return ByteRange::Whole;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let (first_text, last_text) = (first.trim(), last.trim());
    let span = match (position(first_text), position(last_text)) {
        (Some(first), Some(last)) if first <= last => first..last.saturating_add(1).min(size),
        (Some(first), None) if last_text.is_empty() => first..size,
        (None, Some(suffix)) if first_text.is_empty() => size.saturating_sub(suffix)..size,
        _ => return ByteRange::Whole,
    };
    if span.start >= size || span.is_empty() {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Part(span)
    }
}

/// A byte position: digits, however many (more than a `u64` holds is past
/// the end of any blob).
fn position(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "UNKNOWN",
            format!("the upstream sent a value that cannot be a header: {text:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_target() {
        assert_eq!(
            target("library/alpine/manifests/3.20"),
            Target::Manifest {
                name: "library/alpine",
                reference: "3.20"
            }
        );
        assert_eq!(
            target("a/manifests/b/manifests/v1"),
            Target::Manifest {
                name: "a/manifests/b",
                reference: "v1"
            }
        );
        assert_eq!(
            target("x/blobs/sha256:00"),
            Target::Blob {
                name: "x",
                digest: "sha256:00"
            }
        );
        assert_eq!(target("x/blobs/uploads/"), Target::Upload);
        assert_eq!(target("x/y/tags/list"), Target::Tags { name: "x/y" });
        assert_eq!(
            target("x/y/referrers/sha256:00"),
            Target::Referrers {
                name: "x/y",
                digest: "sha256:00"
            }
        );
        assert_eq!(target("_catalog"), Target::Unknown);
    }

    #[test]
    fn ranges() {
        let r = |s: &str, size| byte_range(Some(&HeaderValue::from_str(s).unwrap()), size);
        assert_eq!(r("bytes=0-9", 100), ByteRange::Part(0..10));
        assert_eq!(r("bytes=90-", 100), ByteRange::Part(90..100));
        assert_eq!(r("bytes=90-200", 100), ByteRange::Part(90..100));
        assert_eq!(r("bytes=-10", 100), ByteRange::Part(90..100));
        assert_eq!(r("bytes=-200", 100), ByteRange::Part(0..100));
        assert_eq!(r("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(r("bytes=-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), ByteRange::Unsatisfiable);
        assert_eq!(r("bytes=5-1", 100), ByteRange::Whole);
        assert_eq!(r("bytes=0-1,5-6", 100), ByteRange::Whole);
        assert_eq!(r("items=0-1", 100), ByteRange::Whole);
        assert_eq!(byte_range(None, 100), ByteRange::Whole);
        // Positions past what a u64 holds are past the end of the blob.
        assert_eq!(r("bytes=99999999999999999999999-", 100), ByteRange::Unsatisfiable);
        assert_eq!(r("bytes=0-99999999999999999999999", 100), ByteRange::Part(0..100));
        assert_eq!(r("bytes=-99999999999999999999999", 100), ByteRange::Part(0..100));
        assert_eq!(r("bytes=1x-5", 100), ByteRange::Whole);
    }

    #[test]
    fn digests_are_checked_before_use() {
        assert!(check_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in [
            "sha256:../../etc",
            "sha256:ABC",
            "md5:00",
            "sha256",
            &format!("sha256:{}", "a".repeat(63)),
        ] {
            assert!(check_digest(bad).is_err(), "{bad}");
        }
    }
}
