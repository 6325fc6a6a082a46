//! The read side of the OCI Distribution API: `/v2/`, manifests and blobs
//! (`GET`, `HEAD`, `Range`), tag lists (`n`, `last`). Push and delete answer
//! `405 UNSUPPORTED`; errors are the spec's JSON.

mod distribution;
mod errors;
mod service;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get};

use crate::Proxy;
use crate::auth::TOKEN_PATH;
use distribution::v2;
use errors::ApiError;
use service::{health, metrics, ready, require_host, stats, token, version_check};

/// The whole HTTP surface.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .route("/v2", any(version_check))
        .route("/v2/", any(version_check))
        .route("/v2/{*path}", any(v2))
        .route(TOKEN_PATH, any(token))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "not an OCI distribution endpoint",
            )
        })
        .layer(axum::middleware::from_fn(require_host))
        .with_state(proxy)
}
