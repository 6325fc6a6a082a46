//! One log line per request, when its answer has been sent (or the client
//! has gone: status 499): its id, method, path, status, route, upstream,
//! cache result, bytes and time, and what went wrong inside the cache when
//! that is what the client was told (the client gets only the id). Also
//! the header every answer carries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

use crate::cache_result::CacheResult;
use crate::fill::Fill;
use crate::metrics::{Answered, Metrics};
use crate::routes::Selector;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// What a handler tells the access log about its answer.
#[derive(Clone, Default)]
pub struct Served {
    pub cache: Option<CacheResult>,
    pub upstream: Option<String>,
    /// A blob's fill, which knows its upstream once it is done.
    pub fill: Option<Arc<Fill>>,
    /// The repository of a manifest `GET` (a pull, for the stats).
    pub pulled: Option<String>,
    /// Who sent the request, when a route or endpoint asked.
    pub user: Option<String>,
    /// What failed inside the cache, for the log only (it may name paths).
    pub error: Option<String>,
}

impl Served {
    pub fn new(cache: CacheResult, upstream: Option<String>) -> Served {
        Served {
            cache: Some(cache),
            upstream,
            fill: None,
            pulled: None,
            user: None,
            error: None,
        }
    }
}

/// The request's route and how it was chosen: a request extension the
/// handler fills in as soon as it knows (so a client that leaves before
/// its answer has them on its line too).
#[derive(Clone, Default)]
pub struct Early(Arc<std::sync::Mutex<Option<(String, Selector)>>>);

impl Early {
    pub fn route(&self, name: &str, via: Selector) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((name.to_owned(), via));
    }

    fn take(&self) -> Option<(String, Selector)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Names one request in the log and in what its client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(u64);

impl RequestId {
    fn new() -> RequestId {
        RequestId(rand::random::<u64>() & 0xffff_ffff_ffff)
    }

    /// The request being answered, inside the access log's layer.
    pub fn current() -> Option<RequestId> {
        REQUEST.try_with(|id| *id).ok()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:012x}", self.0)
    }
}

tokio::task_local! {
    static REQUEST: RequestId;
}

/// The status logged for a client that went away before its answer: nginx's
/// "client closed request".
const CLIENT_GONE: u16 = 499;

/// Adds `Docker-Distribution-API-Version: registry/2.0` and logs the
/// request once its body is sent, or the client has gone (before the
/// answer: status 499).
pub async fn layer(State(metrics): State<Arc<Metrics>>, mut request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_string());
    let id = RequestId::new();
    let early = Early::default();
    request.extensions_mut().insert(early.clone());
    // Written when dropped: after the body, or here if the client leaves
    // while the answer is being made (this future is then dropped).
    let mut line = Line {
        metrics,
        id,
        client,
        method: request.method().to_string(),
        target: request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path().to_owned(), ToString::to_string),
        status: CLIENT_GONE,
        served: Served::default(),
        early,
        started: Instant::now(),
        bytes: Arc::new(AtomicU64::new(0)),
    };
    let mut response = REQUEST.scope(id, next.run(request)).await;
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    line.status = response.status().as_u16();
    line.served = response.extensions().get::<Served>().cloned().unwrap_or_default();
    let (parts, body) = response.into_parts();
    let bytes = line.bytes.clone();
    let counted = body.into_data_stream().map(move |chunk| {
        let _keep = &line;
        if let Ok(data) = &chunk {
            bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        chunk
    });
    Response::from_parts(parts, Body::from_stream(counted))
}

/// The line of a request refused before it reached the service, by the
/// HTTP layer itself (headers too large: 431; not HTTP: 400): its method and
/// path cannot be told.
pub fn refused(metrics: Arc<Metrics>, client: std::net::SocketAddr, status: u16, started: Instant) {
    drop(Line {
        metrics,
        early: Early::default(),
        id: RequestId::new(),
        client: Some(client.ip().to_string()),
        method: "-".to_owned(),
        target: "-".to_owned(),
        status,
        served: Served::default(),
        started,
        bytes: Arc::new(AtomicU64::new(0)),
    });
}

/// A request's access line, written when dropped.
struct Line {
    metrics: Arc<Metrics>,
    early: Early,
    id: RequestId,
    client: Option<String>,
    method: String,
    target: String,
    status: u16,
    served: Served,
    started: Instant,
    bytes: Arc<AtomicU64>,
}

impl Drop for Line {
    fn drop(&mut self) {
        let (route, via) = self.early.take().unzip();
        let bytes = self.bytes.load(Ordering::Relaxed);
        self.metrics.answered(&Answered {
            route: route.as_deref(),
            method: &self.method,
            status: self.status,
            cache: self.served.cache,
            bytes,
            pulled: self.served.pulled.as_deref(),
        });
        let upstream = self
            .served
            .upstream
            .clone()
            .or_else(|| self.served.fill.as_ref().and_then(|fill| fill.source()));
        tracing::info!(
            target: "mcreg::access",
            id = %self.id,
            client = %self.client.as_deref().unwrap_or("-"),
            user = %self.served.user.as_deref().filter(|u| !u.is_empty()).unwrap_or("-"),
            method = %self.method,
            path = %self.target,
            status = self.status,
            route = %route.as_deref().unwrap_or("-"),
            via = %via.map_or("-", Selector::as_str),
            upstream = %upstream.as_deref().unwrap_or("-"),
            cache = %self.served.cache.map_or("-", CacheResult::as_str),
            bytes,
            ms = self.started.elapsed().as_millis() as u64,
            error = self.served.error.as_deref(),
            "request"
        );
    }
}
