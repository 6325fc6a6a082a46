//! The redirect target: the second listener that `RedirectBlobs` sends blob GETs to, playing an
//! S3/CDN. It serves the blob from the blob directory (honouring `Range`) or fetches it from the
//! upstream with the credentials of the redirected request, and records every request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::body::{BoxError, ByteStream};
use super::handler::{header_str, simple_response};
use super::log::RecordedRequest;
use super::matcher::blob_digest;
use super::shared::{Shared, lock};

/// Parse `bytes=N-` / `bytes=N-M` against a blob of `len` bytes. `Ok(None)`: no (usable) range,
/// serve everything; `Err(())`: unsatisfiable (416).
fn parse_range(range: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || len == 0 {
            return Err(());
        }
        return Ok(Some((len.saturating_sub(n), len - 1)));
    }
    let Ok(start) = a.parse::<u64>() else {
        return Ok(None);
    };
    if start >= len {
        return Err(());
    }
    let end = if b.is_empty() {
        len - 1
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len - 1),
            Ok(_) => return Err(()),
            Err(_) => return Ok(None),
        }
    };
    Ok(Some((start, end)))
}

fn blob_file(root: &Path, digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:")?;
    let rel = Path::new("blobs")
        .join("sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    [root.join("docker/registry/v2").join(&rel), root.join(&rel)]
        .into_iter()
        .find(|p| p.is_file())
}

fn file_stream(file: tokio::fs::File, len: u64) -> ByteStream {
    let reader = file.take(len);
    Box::pin(futures::stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), reader))
            }
            Err(e) => Some((Err(BoxError::from(e)), reader)),
        }
    }))
}

pub(super) async fn redirect_handler(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let authorization = header_str(&parts.headers, AUTHORIZATION);
    let range = header_str(&parts.headers, RANGE);
    let had_authorization = authorization.is_some();
    let rec_id = shared.record(
        &shared.redirect_log,
        RecordedRequest {
            id: 0,
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            status: None,
            had_authorization,
            authorization,
            range: range.clone(),
            fault: None,
            forwarded: false,
            at: Instant::now(),
        },
    );
    let finish = |resp: Response, forwarded: bool| -> Response {
        let status = resp.status().as_u16();
        shared.update(&shared.redirect_log, rec_id, |r| {
            r.status = Some(status);
            r.forwarded = forwarded;
        });
        resp
    };
    let xml = |status: u16, code: &str, msg: &str| {
        simple_response(
            status,
            &[("content-type", "application/xml")],
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{msg}</Message></Error>"
            ),
        )
    };

    if method != Method::GET && method != Method::HEAD {
        return finish(xml(405, "MethodNotAllowed", "only GET and HEAD"), false);
    }
    let Some(digest) = path
        .strip_prefix("/blobs/")
        .filter(|d| blob_digest(&format!("/blobs/{d}")).as_deref() == Some(*d))
    else {
        return finish(xml(404, "NoSuchKey", "not a blob path"), false);
    };
    if had_authorization && shared.redirect_rejects_authorization {
        return finish(
            xml(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
            ),
            false,
        );
    }

    // Serve from the blob directory if we have one.
    if let Some(root) = &shared.blob_dir {
        let Some(file) = blob_file(root, digest) else {
            return finish(xml(404, "NoSuchKey", "The specified key does not exist."), false);
        };
        let resp = match serve_file(&file, &method, range.as_deref()).await {
            Ok(r) => r,
            Err(e) => xml(500, "InternalError", &e.to_string()),
        };
        return finish(resp, false);
    }

    // Otherwise fetch from the upstream with the redirected request's credentials.
    let ticket = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "X-Amz-Signature")
            .map(|(_, v)| v.into_owned())
    });
    let ticket = ticket.and_then(|t| {
        lock(&shared.tickets)
            .get(&t)
            .map(|t| (t.path_and_query.clone(), t.authorization.clone()))
    });
    let Some((path_and_query, auth)) = ticket else {
        return finish(
            xml(403, "AccessDenied", "Request has expired or signature is invalid"),
            false,
        );
    };
    let mut req = shared.client.request(
        method.clone(),
        format!("{}{path_and_query}", shared.upstream_base),
    );
    if let Some(a) = auth {
        req = req.header(AUTHORIZATION, a);
    }
    if let Some(r) = &range {
        req = req.header(RANGE, r.as_str());
    }
    let up = match req.send().await {
        Ok(r) => r,
        Err(e) => return finish(xml(502, "BadGateway", &e.to_string()), true),
    };
    let mut resp_headers = HeaderMap::new();
    for name in [CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION] {
        if let Some(v) = up.headers().get(&name) {
            resp_headers.insert(name, v.clone());
        }
    }
    resp_headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    let status = up.status();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(up.bytes_stream())
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    finish(resp, true)
}

async fn serve_file(file: &Path, method: &Method, range: Option<&str>) -> std::io::Result<Response> {
    let mut f = tokio::fs::File::open(file).await?;
    let len = f.metadata().await?.len();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    let (status, start, count) = match parse_range(range, len) {
        Err(()) => {
            headers.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("header"),
            );
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            *resp.headers_mut() = headers;
            return Ok(resp);
        }
        Ok(None) => (StatusCode::OK, 0, len),
        Ok(Some((s, e))) => {
            headers.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {s}-{e}/{len}")).expect("header"),
            );
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(count));
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        f.seek(std::io::SeekFrom::Start(start)).await?;
        Body::from_stream(file_stream(f, count))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}
