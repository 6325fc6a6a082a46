//! The proxy's handler: applies the fault a request draws (answering it, redirecting it, or
//! altering how it is forwarded), otherwise forwards it to the upstream and streams the answer
//! back, rewriting `Location` and `WWW-Authenticate`; plus the small header and response helpers
//! it shares with the redirect target.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::TryStreamExt;

use super::body::{BoxError, ByteStream, corrupt_byte, cut_after, reset_after, throttle};
use super::connection::ConnFlushes;
use super::log::RecordedRequest;
use super::matcher::{RequestInfo, blob_digest};
use super::rules::Fault;
use super::shared::{Shared, Ticket, lock};

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "trailers"
            | "transfer-encoding"
            | "upgrade"
    )
}

pub(super) fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn registry_error(status: u16, message: &str) -> String {
    let code = match status {
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        429 => "TOOMANYREQUESTS",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string()
}

pub(super) fn simple_response(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(*k), HeaderValue::try_from(*v)) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

pub(super) async fn proxy_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnFlushes>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let authorization = header_str(&parts.headers, AUTHORIZATION);
    let range = header_str(&parts.headers, RANGE);

    let fault = shared.take_fault(&RequestInfo {
        method: &method,
        path: &path,
        query: query.as_deref(),
        headers: &parts.headers,
    });
    let rec_id = shared.record(
        &shared.log,
        RecordedRequest {
            id: 0,
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            status: None,
            had_authorization: authorization.is_some(),
            authorization,
            range,
            fault: fault.as_ref().map(Fault::kind),
            forwarded: false,
            at: Instant::now(),
        },
    );
    let set_status = |status: u16, forwarded: bool| {
        shared.update(&shared.log, rec_id, |r| {
            r.status = Some(status);
            r.forwarded = forwarded;
        })
    };

    let mut drop_authorization = false;
    let mut ignore_range = false;
    let mut body_fault = None;
    let mut cut_request = None;
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            headers,
            body,
            ..
        }) => {
            let resp = status_response(&method, status, retry_after, headers, body);
            set_status(resp.status().as_u16(), false);
            return resp;
        }
        Some(Fault::RedirectBlobs { .. }) => {
            let digest = blob_digest(&path).unwrap_or_default();
            let n = shared.next_ticket.fetch_add(1, Ordering::Relaxed);
            let ticket = format!("t{n}");
            let path_and_query = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            lock(&shared.tickets).insert(
                ticket.clone(),
                Ticket {
                    path_and_query,
                    authorization: parts.headers.get(AUTHORIZATION).cloned(),
                },
            );
            let location = format!(
                "{}/blobs/{digest}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=1200&X-Amz-Signature={ticket}",
                shared.redirect_base
            );
            set_status(307, false);
            return simple_response(
                307,
                &[
                    ("location", &location),
                    ("docker-distribution-api-version", "registry/2.0"),
                    ("content-length", "0"),
                ],
                Body::empty(),
            );
        }
        Some(Fault::Delay { duration, .. }) => tokio::time::sleep(duration).await,
        Some(Fault::DropAuthorization { .. }) => drop_authorization = true,
        Some(Fault::IgnoreRange { .. }) => ignore_range = true,
        Some(Fault::CutRequestBody { bytes, .. }) => cut_request = Some(bytes),
        Some(f @ (Fault::ResetAfter { .. } | Fault::CorruptByte { .. } | Fault::Throttle { .. })) => {
            body_fault = Some(f)
        }
        None => {}
    }

    // Forward.
    let target = match &query {
        Some(q) => format!("{}{path}?{q}", shared.upstream_base),
        None => format!("{}{path}", shared.upstream_base),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if is_hop_by_hop(name) || *name == HOST || name.as_str() == "expect" {
            continue;
        }
        if drop_authorization && *name == AUTHORIZATION {
            continue;
        }
        if ignore_range && *name == RANGE {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    let has_body =
        parts.headers.contains_key(CONTENT_LENGTH) || parts.headers.contains_key("transfer-encoding");
    let mut upstream_req = shared.client.request(method.clone(), &target).headers(headers);
    if has_body {
        let stream: ByteStream = Box::pin(body.into_data_stream().map_err(BoxError::from));
        let stream = match cut_request {
            Some(limit) => cut_after(stream, limit),
            None => stream,
        };
        upstream_req = upstream_req.body(reqwest::Body::wrap_stream(stream));
    }
    let upstream_resp = match upstream_req.send().await {
        Ok(r) => r,
        Err(e) => {
            set_status(502, true);
            return simple_response(
                502,
                &[("content-type", "application/json")],
                registry_error(502, &format!("fault proxy: upstream request failed: {e}")),
            );
        }
    };

    let status = upstream_resp.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in upstream_resp.headers() {
        if is_hop_by_hop(name) {
            continue;
        }
        let value = if *name == LOCATION || *name == WWW_AUTHENTICATE {
            let s = String::from_utf8_lossy(value.as_bytes());
            let rewritten = if *name == LOCATION {
                shared.rewrite_location(&s)
            } else {
                shared.apply_rewrites(&s)
            };
            HeaderValue::from_str(&rewritten).unwrap_or_else(|_| value.clone())
        } else {
            value.clone()
        };
        out_headers.append(name.clone(), value);
    }

    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let stream: ByteStream = Box::pin(upstream_resp.bytes_stream().map_err(BoxError::from));
        let stream = match body_fault {
            Some(Fault::ResetAfter { bytes, .. }) => reset_after(stream, bytes, conn.0),
            Some(Fault::CorruptByte { offset, .. }) => corrupt_byte(stream, offset),
            Some(Fault::Throttle { bytes_per_second, .. }) => throttle(stream, bytes_per_second),
            _ => stream,
        };
        Body::from_stream(stream)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = out_headers;
    set_status(status.as_u16(), true);
    resp
}

fn status_response(
    method: &Method,
    status: u16,
    retry_after: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<String>,
) -> Response {
    let mut h = HeaderMap::new();
    let body = match body {
        Some(b) => b,
        None => {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            registry_error(status, &format!("fault injected: {status}"))
        }
    };
    h.insert(
        HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static("registry/2.0"),
    );
    if let Some(ra) = retry_after
        && let Ok(v) = HeaderValue::from_str(&ra)
    {
        h.insert(RETRY_AFTER, v);
    }
    let mut first_seen: Vec<HeaderName> = Vec::new();
    for (k, v) in headers {
        let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) else {
            continue;
        };
        if k == CONTENT_LENGTH || is_hop_by_hop(&k) {
            continue;
        }
        // The caller's headers replace defaults of the same name; repeated names append.
        if first_seen.contains(&k) {
            h.append(k, v);
        } else {
            h.insert(k.clone(), v);
            first_seen.push(k);
        }
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *resp.headers_mut() = h;
    resp
}
