//! The endpoints around the distribution API: the `/v2/` version check and
//! authentication, the token service, health, readiness, metrics and stats.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Proxy;
use crate::auth::Client;
use crate::log::Served;
use crate::routes::Selector;

use super::errors::{ApiError, READ, unsupported};

/// An HTTP/1.1 request without `Host` is refused (RFC 9112, 3.2): routes
/// are chosen by it, and a server must not guess.
pub(super) async fn require_host(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.version() == axum::http::Version::HTTP_11 && !request.headers().contains_key(header::HOST) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "an HTTP/1.1 request needs a Host header",
        )
        .into_response();
    }
    next.run(request).await
}

/// `/v2/`: a client's first request, where docker and podman learn how
/// to authenticate. Anonymous clients are challenged unless the route the
/// request is for (by `ns=` or `Host`) is public, or every route is.
pub(super) async fn version_check(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !matches!(method, Method::GET | Method::HEAD) {
        return unsupported(READ);
    }
    let host = request_host(&headers, &uri);
    let namespace = query.get("ns").map(String::as_str).filter(|ns| !ns.is_empty());
    let public = match proxy.routes.resolve(namespace, host, "") {
        Ok((route, _, Selector::Namespace | Selector::Host)) => route.public,
        _ => proxy.routes.all().iter().all(|route| route.public),
    };
    let ok = || {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            "{}",
        )
            .into_response()
    };
    if public {
        return ok();
    }
    match authenticate(&proxy, &headers, host, None).await {
        Ok(user) => {
            let mut response = ok();
            response.extensions_mut().insert(Served {
                user: Some(user),
                ..Served::default()
            });
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The user a request for a non-public resource comes from, or the
/// `401` with the challenge that tells the client where to get a token.
pub(super) async fn authenticate(
    proxy: &Proxy,
    headers: &HeaderMap,
    host: Option<&str>,
    scope: Option<&str>,
) -> Result<String, ApiError> {
    let Some(access) = &proxy.access else {
        // Without [auth] every route is public (the configuration says so).
        return Ok(String::new());
    };
    let (message, error) = match access.identify(headers).await {
        Ok(Client::User(user)) => return Ok(user),
        Ok(Client::Anonymous) => ("authentication required".to_owned(), None),
        Err(refused) => (refused.0, Some("invalid_token")),
    };
    Err(ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
        .with_challenge(access.challenge(host, scope, error)))
}

/// `GET /token?service=&scope=`: a bearer token for the user of the
/// request's Basic credentials, or an anonymous one (good for the public
/// routes) without them.
pub(super) async fn token(State(proxy): State<Arc<Proxy>>, method: Method, headers: HeaderMap) -> Response {
    let Some(access) = &proxy.access else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "this cache has no users: every route is public",
        )
        .into_response();
    };
    if method != Method::GET {
        // containerd tries an OAuth2 POST first and falls back to GET.
        let mut response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the token endpoint takes GET",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    match access.issue(&headers).await {
        Ok((client, answer)) => {
            let mut response = (
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                serde_json::to_string(&answer).expect("a token serializes"),
            )
                .into_response();
            if let Client::User(user) = client {
                response.extensions_mut().insert(Served {
                    user: Some(user),
                    ..Served::default()
                });
            }
            response
        }
        Err(refused) => ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", refused.0).into_response(),
    }
}

/// The host a client addressed: `Host`, or HTTP/2's `:authority`.
pub(super) fn request_host<'r>(headers: &'r HeaderMap, uri: &'r Uri) -> Option<&'r str> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

pub(super) async fn health() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// Ready when the storage works (a load balancer's check). The reason
/// names no path: `/ready` answers anyone; the log has the details.
pub(super) async fn ready(State(proxy): State<Arc<Proxy>>) -> Response {
    match proxy.cache.storage_ready().await {
        Ok(()) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            r#"{"status":"ready"}"#,
        )
            .into_response(),
        Err(down) => {
            let since = down
                .since
                .map(|since| humantime::format_rfc3339_seconds(since).to_string());
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                json!({
                    "status": "unavailable",
                    "reason": format!("the cache's storage is failing ({}): answers come from the upstreams, nothing is stored", down.doing),
                    "since": since,
                })
                .to_string(),
            )
                .into_response()
        }
    }
}

pub(super) async fn metrics(State(proxy): State<Arc<Proxy>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        proxy.metrics.encode(),
    )
        .into_response()
}

/// The most pulled repositories: names of private routes' images are
/// for users only.
pub(super) async fn stats(State(proxy): State<Arc<Proxy>>, uri: Uri, headers: HeaderMap) -> Response {
    if !proxy.routes.all().iter().all(|route| route.public)
        && let Err(refusal) = authenticate(&proxy, &headers, request_host(&headers, &uri), None).await
    {
        return refusal.into_response();
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        serde_json::to_string_pretty(&proxy.metrics.stats()).expect("stats serialize"),
    )
        .into_response()
}
