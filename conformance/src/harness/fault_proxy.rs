//! `FaultProxy`: a fault-injecting HTTP reverse proxy placed in front of a registry in tests.
//!
//! The proxy listens on `127.0.0.1:<random port>` and forwards every request (method,
//! path + query, headers including `Authorization`, streamed body) to one upstream, and streams
//! the answer back (status, headers, body). By default it is transparent: a registry client
//! talking to it must not notice. It never follows redirects itself; absolute `Location`
//! headers that point at the upstream are rewritten to point at the proxy.
//!
//! Faults are queued [`Rule`]s (a [`Matcher`] plus a [`Fault`] that carries a `times` budget).
//! For each request the first rule (in insertion order) that matches and still has budget is
//! applied once and its budget decremented; used-up rules are dropped. Every request is logged
//! ([`FaultProxy::requests`]) and every fault that fired is logged too ([`FaultProxy::faults`]).
//!
//! [`Fault::RedirectBlobs`] answers blob GETs with a `307` to a second, built-in listener on a
//! *different loopback host*: `127.0.0.2` when that address is bindable (it is on Linux, where
//! all of `127.0.0.0/8` is routed to `lo`), otherwise the listener binds `127.0.0.1` and the
//! redirect uses the host name `localhost`, which is still a different host for a client that
//! compares hosts (reqwest, Go, curl). That listener plays an S3/CDN: it serves the blob bytes
//! from a Distribution storage root ([`FaultProxyBuilder::blob_dir`]) or, without one, fetches
//! them from the upstream with the credentials of the redirected request (as a presigned URL
//! would), honours `Range`, and records every request it receives
//! ([`FaultProxy::redirect_requests`]), including whether an `Authorization` header came with it.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HOST, LOCATION, RANGE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use url::Url;

type BoxError = Box<dyn StdError + Send + Sync>;
type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// Upper bound on how long a `ResetAfter` body waits for its last bytes to be flushed to the
/// socket before aborting the connection anyway (a client that stops reading).
const RESET_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Request classification
// ---------------------------------------------------------------------------------------------

/// `true` if `path` addresses a blob by digest (`…/blobs/sha256:…`).
pub fn is_blob_path(path: &str) -> bool {
    path.contains("/blobs/sha256:")
}

/// `true` if `path` addresses a manifest (`…/manifests/<tag or digest>`).
pub fn is_manifest_path(path: &str) -> bool {
    path.contains("/manifests/")
}

/// `true` if `path` looks like a token endpoint: its last segment is `token` or `auth`
/// (the harness token server and Docker Hub / GHCR `/token`, Quay `/v2/auth`). Token requests
/// only pass through a proxy placed in front of the token server (see
/// [`FaultProxyBuilder::rewrite`]).
pub fn is_token_path(path: &str) -> bool {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    last == "token" || last == "auth"
}

/// The request as seen by a [`Matcher`] predicate.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

type Predicate = Arc<dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync>;

#[derive(Clone)]
enum Target {
    Any,
    PathContains(String),
    Blobs,
    Manifests,
    Tokens,
    Predicate(Predicate),
}

/// Which requests a [`Rule`] applies to: an optional method plus a path condition.
#[derive(Clone)]
pub struct Matcher {
    method: Option<Method>,
    target: Target,
}

impl Matcher {
    /// Every request.
    pub fn any() -> Self {
        Self {
            method: None,
            target: Target::Any,
        }
    }

    /// Requests whose path contains `needle` (the query is not searched).
    pub fn path_contains(needle: impl Into<String>) -> Self {
        Self {
            method: None,
            target: Target::PathContains(needle.into()),
        }
    }

    /// Blob requests of any method (path contains `/blobs/sha256:`).
    pub fn blobs() -> Self {
        Self {
            method: None,
            target: Target::Blobs,
        }
    }

    /// Blob GETs (path contains `/blobs/sha256:`, method GET).
    pub fn blob_gets() -> Self {
        Self::blobs().method(Method::GET)
    }

    /// Manifest requests of any method (path contains `/manifests/`); add `.method(..)` to
    /// restrict to GET or HEAD.
    pub fn manifests() -> Self {
        Self {
            method: None,
            target: Target::Manifests,
        }
    }

    /// Token requests (see [`is_token_path`]).
    pub fn token_requests() -> Self {
        Self {
            method: None,
            target: Target::Tokens,
        }
    }

    /// Requests for which `f` returns `true`.
    pub fn predicate(f: impl Fn(&RequestInfo<'_>) -> bool + Send + Sync + 'static) -> Self {
        Self {
            method: None,
            target: Target::Predicate(Arc::new(f)),
        }
    }

    /// Additionally require this method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Does this matcher select `info`?
    pub fn matches(&self, info: &RequestInfo<'_>) -> bool {
        if let Some(m) = &self.method
            && m != info.method
        {
            return false;
        }
        match &self.target {
            Target::Any => true,
            Target::PathContains(needle) => info.path.contains(needle.as_str()),
            Target::Blobs => is_blob_path(info.path),
            Target::Manifests => is_manifest_path(info.path),
            Target::Tokens => is_token_path(info.path),
            Target::Predicate(f) => f(info),
        }
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Any => "any".to_owned(),
            Target::PathContains(n) => format!("path contains {n:?}"),
            Target::Blobs => "blobs".to_owned(),
            Target::Manifests => "manifests".to_owned(),
            Target::Tokens => "token requests".to_owned(),
            Target::Predicate(_) => "predicate".to_owned(),
        };
        f.debug_struct("Matcher")
            .field("method", &self.method)
            .field("target", &target)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Faults and rules
// ---------------------------------------------------------------------------------------------

/// A fault and how many matching requests it applies to (`times`; then it is used up).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer `status` without contacting the upstream. `retry_after` becomes a `Retry-After`
    /// header (`"1"` or an HTTP date); `headers` are added as given (a `Content-Length` in
    /// them is ignored). `body: None` sends a registry JSON error
    /// (`{"errors":[{"code":…,"message":…}]}`, code from the status: 429 `TOOMANYREQUESTS`,
    /// 401 `UNAUTHORIZED`, 403 `DENIED`, 503 `UNAVAILABLE`, else `UNKNOWN`) with
    /// `Content-Type: application/json`; `Some(s)` sends `s` verbatim (no content type unless
    /// given in `headers`). `Docker-Distribution-API-Version: registry/2.0` is added unless
    /// `headers` set it.
    Status {
        status: u16,
        times: usize,
        retry_after: Option<String>,
        headers: Vec<(String, String)>,
        body: Option<String>,
    },
    /// Forward, send the upstream's status and headers (with its real `Content-Length`) and
    /// the first `bytes` bytes of the body, then abort the connection. If the body is shorter
    /// than `bytes` it is passed through unchanged.
    ResetAfter { bytes: u64, times: usize },
    /// Wait `duration` before forwarding.
    Delay { duration: Duration, times: usize },
    /// Forward, but send the body at about `bytes_per_second` (a slow upstream: a download
    /// still under way seconds after its first bytes arrived).
    Throttle { bytes_per_second: u64, times: usize },
    /// Forward only the first `bytes` of the *request* body, then break it off (an upload
    /// cut mid-way): the upstream gets a truncated request, the client a `502`.
    CutRequestBody { bytes: u64, times: usize },
    /// Forward, but flip (XOR `0xFF`) the body byte at `offset`; length unchanged. Nothing
    /// changes if the body is shorter.
    CorruptByte { offset: u64, times: usize },
    /// Forward without the `Authorization` header.
    DropAuthorization { times: usize },
    /// Forward without the `Range` header, so the upstream answers `200` with the whole
    /// body where the client asked for `206` and a part (servers and CDNs that ignore ranges).
    IgnoreRange { times: usize },
    /// Answer a blob GET with `307 Location: http://127.0.0.2:<port>/blobs/<digest>?…`
    /// (see [`FaultProxy::redirect_url`]). Only applies to requests whose path contains
    /// `/blobs/sha256:<hex>`; other requests skip this rule.
    RedirectBlobs { times: usize },
}

/// The kind of a [`Fault`], without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Status,
    ResetAfter,
    Delay,
    Throttle,
    CutRequestBody,
    CorruptByte,
    DropAuthorization,
    IgnoreRange,
    RedirectBlobs,
}

impl Fault {
    /// `status` answered `times` times, no `Retry-After`, no extra headers, registry JSON error
    /// body.
    pub fn status(status: u16, times: usize) -> Self {
        Fault::Status {
            status,
            times,
            retry_after: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// A Docker Hub style `429 Too Many Requests`, `times` times: `Retry-After: <retry_after>`,
    /// `ratelimit-limit: 100;w=21600`, `ratelimit-remaining: 0;w=21600`,
    /// `docker-ratelimit-source: 127.0.0.1` and body
    /// `{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. …"}]}`.
    pub fn rate_limited(times: usize, retry_after: impl Into<String>) -> Self {
        Fault::Status {
            status: 429,
            times,
            retry_after: Some(retry_after.into()),
            headers: vec![
                ("ratelimit-limit".into(), "100;w=21600".into()),
                ("ratelimit-remaining".into(), "0;w=21600".into()),
                ("docker-ratelimit-source".into(), "127.0.0.1".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: Some(
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}"#
                    .into(),
            ),
        }
    }

    /// This fault's kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Status { .. } => FaultKind::Status,
            Fault::ResetAfter { .. } => FaultKind::ResetAfter,
            Fault::Delay { .. } => FaultKind::Delay,
            Fault::Throttle { .. } => FaultKind::Throttle,
            Fault::CutRequestBody { .. } => FaultKind::CutRequestBody,
            Fault::CorruptByte { .. } => FaultKind::CorruptByte,
            Fault::DropAuthorization { .. } => FaultKind::DropAuthorization,
            Fault::IgnoreRange { .. } => FaultKind::IgnoreRange,
            Fault::RedirectBlobs { .. } => FaultKind::RedirectBlobs,
        }
    }

    /// How many matching requests this fault applies to.
    pub fn times(&self) -> usize {
        match self {
            Fault::Status { times, .. }
            | Fault::ResetAfter { times, .. }
            | Fault::Delay { times, .. }
            | Fault::Throttle { times, .. }
            | Fault::CutRequestBody { times, .. }
            | Fault::CorruptByte { times, .. }
            | Fault::DropAuthorization { times }
            | Fault::IgnoreRange { times }
            | Fault::RedirectBlobs { times } => *times,
        }
    }
}

/// A queued fault: applies `fault` to the next `fault.times()` requests selected by `matcher`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: Matcher,
    pub fault: Fault,
}

impl Rule {
    pub fn new(matcher: Matcher, fault: Fault) -> Self {
        Self { matcher, fault }
    }
}

/// Identifies an injected rule (returned by [`FaultProxy::inject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u64);

struct ActiveRule {
    id: RuleId,
    matcher: Matcher,
    fault: Fault,
    remaining: usize,
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

/// One request received by the proxy (or by the redirect target).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Unique (per proxy) and increasing in arrival order.
    pub id: u64,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// Status answered to the client; `None` while the answer is still pending (e.g. during a
    /// `Delay`) or if the request was abandoned before one was produced.
    pub status: Option<u16>,
    /// Whether the *client* sent an `Authorization` header (even if a `DropAuthorization`
    /// fault then removed it before forwarding).
    pub had_authorization: bool,
    /// The client's `Authorization` header value, if any.
    pub authorization: Option<String>,
    /// The client's `Range` header value, if any.
    pub range: Option<String>,
    /// The fault applied to this request, if any.
    pub fault: Option<FaultKind>,
    /// Whether the request was sent to the upstream (false for `Status` and `RedirectBlobs`
    /// faults; for the redirect target, true when it fetched from the upstream rather than
    /// from the blob directory).
    pub forwarded: bool,
    /// When the request arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// GET of a blob (`/blobs/sha256:` in the path).
    pub fn is_blob_get(&self) -> bool {
        self.method == Method::GET && is_blob_path(&self.path)
    }
    /// Any blob request.
    pub fn is_blob(&self) -> bool {
        is_blob_path(&self.path)
    }
    /// Any manifest request.
    pub fn is_manifest(&self) -> bool {
        is_manifest_path(&self.path)
    }
    /// A token request (see [`is_token_path`]).
    pub fn is_token(&self) -> bool {
        is_token_path(&self.path)
    }
}

/// One application of a fault.
#[derive(Debug, Clone)]
pub struct FiredFault {
    pub rule: RuleId,
    pub kind: FaultKind,
    pub method: Method,
    pub path: String,
    pub at: Instant,
}

// ---------------------------------------------------------------------------------------------
// Proxy
// ---------------------------------------------------------------------------------------------

struct Ticket {
    path_and_query: String,
    authorization: Option<HeaderValue>,
}

struct Shared {
    upstream: Url,
    /// Upstream base without trailing slash, e.g. `http://127.0.0.1:5000`.
    upstream_base: String,
    proxy_url: Url,
    redirect_base: String,
    client: reqwest::Client,
    blob_dir: Option<PathBuf>,
    rewrites: Vec<(String, String)>,
    redirect_rejects_authorization: bool,
    rules: Mutex<Vec<ActiveRule>>,
    next_rule: AtomicU64,
    next_ticket: AtomicU64,
    next_request: AtomicU64,
    log: Mutex<Vec<RecordedRequest>>,
    redirect_log: Mutex<Vec<RecordedRequest>>,
    fired: Mutex<Vec<FiredFault>>,
    tickets: Mutex<HashMap<String, Ticket>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Configures a [`FaultProxy`] before starting it.
#[derive(Debug, Clone)]
pub struct FaultProxyBuilder {
    upstream: Url,
    blob_dir: Option<PathBuf>,
    rewrites: Vec<(String, String)>,
    redirect_rejects_authorization: bool,
}

impl FaultProxyBuilder {
    /// Serve `RedirectBlobs` targets from this Distribution storage root
    /// (`<root>/docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data`; a directory that directly
    /// contains `blobs/sha256/…` is accepted too).
    pub fn blob_dir(mut self, root: impl Into<PathBuf>) -> Self {
        self.blob_dir = Some(root.into());
        self
    }

    /// Also replace the string `from` by `to` in `Location` and `WWW-Authenticate` response
    /// headers (e.g. to point a registry's token realm at a second `FaultProxy` in front of
    /// the token server).
    pub fn rewrite(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.rewrites.push((from.into(), to.into()));
        self
    }

    /// Make the redirect target behave like S3 with a presigned URL: a request that carries an
    /// `Authorization` header is answered `400` (it is still recorded). Default: served.
    pub fn redirect_rejects_authorization(mut self, reject: bool) -> Self {
        self.redirect_rejects_authorization = reject;
        self
    }

    /// Bind both listeners and start serving. Panics if binding fails.
    pub async fn start(self) -> FaultProxy {
        self.spawn()
    }

    /// Like [`start`](Self::start), for callers outside async code (it does not block: the
    /// listeners are bound before it returns and served on the proxy's own thread).
    pub fn spawn(self) -> FaultProxy {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");

        // The redirect target must be a different host than the proxy.
        let (redirect_listener, redirect_host) =
            match std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)) {
                Ok(l) => (l, "127.0.0.2"),
                Err(_) => (
                    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind redirect target"),
                    "localhost",
                ),
            };
        let redirect_addr = redirect_listener.local_addr().expect("redirect target address");
        let redirect_base = format!("http://{redirect_host}:{}", redirect_addr.port());
        for l in [&listener, &redirect_listener] {
            l.set_nonblocking(true).expect("non-blocking listener");
        }

        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .expect("build fault proxy upstream client");

        let proxy_url = Url::parse(&format!("http://{addr}/")).expect("proxy url");
        let shared = Arc::new(Shared {
            upstream_base: self.upstream.as_str().trim_end_matches('/').to_owned(),
            upstream: self.upstream,
            proxy_url,
            redirect_base: redirect_base.clone(),
            client,
            blob_dir: self.blob_dir,
            rewrites: self.rewrites,
            redirect_rejects_authorization: self.redirect_rejects_authorization,
            rules: Mutex::new(Vec::new()),
            next_rule: AtomicU64::new(1),
            next_ticket: AtomicU64::new(1),
            next_request: AtomicU64::new(1),
            log: Mutex::new(Vec::new()),
            redirect_log: Mutex::new(Vec::new()),
            fired: Mutex::new(Vec::new()),
            tickets: Mutex::new(HashMap::new()),
        });

        let app = Router::new()
            .fallback(proxy_handler)
            .with_state(shared.clone())
            .into_make_service_with_connect_info::<ConnFlushes>();
        let redirect_app = Router::new()
            .fallback(redirect_handler)
            .with_state(shared.clone());
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fault-proxy")
                    .enable_all()
                    .build()
                    .expect("fault proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("fault proxy listener");
                    let redirect_listener =
                        TcpListener::from_std(redirect_listener).expect("redirect target listener");
                    tokio::spawn(async move {
                        let _ = axum::serve(TrackedListener(listener), app).await;
                    });
                    tokio::spawn(async move {
                        let _ = axum::serve(redirect_listener, redirect_app).await;
                    });
                    // Until the FaultProxy is dropped.
                    let _ = shutdown_rx.await;
                });
                // Cancels every connection still open.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn fault proxy thread");

        FaultProxy {
            shared,
            addr,
            redirect_addr,
            redirect_url: Url::parse(&format!("{redirect_base}/")).expect("redirect url"),
            shutdown: Some(shutdown),
        }
    }
}

/// A fault-injecting reverse proxy in front of one upstream.
///
/// It runs on a thread and tokio runtime of its own, so it does not depend on the caller's
/// runtime (it works from a current-thread `#[tokio::test]` that blocks on a subprocess, and can
/// outlive the runtime that started it). Dropping it stops both listeners and closes all their
/// connections.
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    redirect_addr: SocketAddr,
    redirect_url: Url,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("url", &self.shared.proxy_url.as_str())
            .field("upstream", &self.shared.upstream.as_str())
            .field("redirect_url", &self.redirect_url.as_str())
            .finish()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl FaultProxy {
    /// Start a transparent proxy in front of `upstream` (no blob directory).
    pub async fn start(upstream: Url) -> FaultProxy {
        Self::builder(upstream).spawn()
    }

    /// Configure a proxy in front of `upstream`.
    pub fn builder(upstream: Url) -> FaultProxyBuilder {
        FaultProxyBuilder {
            upstream,
            blob_dir: None,
            rewrites: Vec::new(),
            redirect_rejects_authorization: false,
        }
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> Url {
        self.shared.proxy_url.clone()
    }

    /// `127.0.0.1:<port>` (the registry host to put in image references).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The proxy's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream this proxy forwards to.
    pub fn upstream(&self) -> &Url {
        &self.shared.upstream
    }

    /// Base URL of the redirect target: `http://127.0.0.2:<port>/` (or
    /// `http://localhost:<port>/` where 127.0.0.2 cannot be bound).
    pub fn redirect_url(&self) -> Url {
        self.redirect_url.clone()
    }

    /// The redirect target's host as it appears in `Location` (`127.0.0.2` or `localhost`).
    pub fn redirect_host(&self) -> String {
        self.redirect_url.host_str().unwrap_or_default().to_owned()
    }

    /// The redirect target's socket address.
    pub fn redirect_addr(&self) -> SocketAddr {
        self.redirect_addr
    }

    /// Queue a rule (after all existing ones).
    pub fn inject(&self, rule: Rule) -> RuleId {
        let id = RuleId(self.shared.next_rule.fetch_add(1, Ordering::Relaxed));
        let remaining = rule.fault.times();
        lock(&self.shared.rules).push(ActiveRule {
            id,
            matcher: rule.matcher,
            fault: rule.fault,
            remaining,
        });
        id
    }

    /// Shorthand for `inject(Rule::new(matcher, fault))`.
    pub fn inject_when(&self, matcher: Matcher, fault: Fault) -> RuleId {
        self.inject(Rule::new(matcher, fault))
    }

    /// Remove all queued rules (logs are kept).
    pub fn clear(&self) {
        lock(&self.shared.rules).clear();
    }

    /// How many applications rule `id` has left (0 once used up or cleared).
    pub fn remaining(&self, id: RuleId) -> usize {
        lock(&self.shared.rules)
            .iter()
            .find(|r| r.id == id)
            .map_or(0, |r| r.remaining)
    }

    /// Number of queued rules that still have budget.
    pub fn pending_rules(&self) -> usize {
        lock(&self.shared.rules).len()
    }

    /// Every request the proxy received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Number of received requests satisfying `f`.
    pub fn count(&self, f: impl Fn(&RecordedRequest) -> bool) -> usize {
        lock(&self.shared.log).iter().filter(|r| f(r)).count()
    }

    /// Number of blob GETs that were forwarded to the upstream (i.e. reached the registry).
    pub fn upstream_blob_gets(&self) -> usize {
        self.count(|r| r.is_blob_get() && r.forwarded)
    }

    /// Every request the redirect target received, in arrival order.
    pub fn redirect_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.redirect_log).clone()
    }

    /// Number of redirect-target requests satisfying `f`.
    pub fn redirect_count(&self, f: impl Fn(&RecordedRequest) -> bool) -> usize {
        lock(&self.shared.redirect_log).iter().filter(|r| f(r)).count()
    }

    /// Every fault application, in order.
    pub fn faults(&self) -> Vec<FiredFault> {
        lock(&self.shared.fired).clone()
    }

    /// How many times a fault of `kind` fired.
    pub fn fired(&self, kind: FaultKind) -> usize {
        lock(&self.shared.fired).iter().filter(|f| f.kind == kind).count()
    }

    /// How many times rule `id` fired.
    pub fn fired_rule(&self, id: RuleId) -> usize {
        lock(&self.shared.fired).iter().filter(|f| f.rule == id).count()
    }

    /// Forget all recorded requests (proxy and redirect target) and fired faults.
    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
        lock(&self.shared.redirect_log).clear();
        lock(&self.shared.fired).clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Connection tracking (for an exact `ResetAfter`)
// ---------------------------------------------------------------------------------------------

/// A TCP listener whose connections count their completed flushes.
struct TrackedListener(TcpListener);

impl Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let (flushes, _) = watch::channel(0);
                    return (
                        TrackedStream {
                            inner: stream,
                            flushes,
                        },
                        addr,
                    );
                }
                // E.g. EMFILE: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A TCP stream that bumps a counter every time a flush completes. hyper writes its whole
/// buffer into the socket before it flushes the socket, so a completed flush means every byte
/// hyper had buffered until then is in the kernel.
struct TrackedStream {
    inner: TcpStream,
    flushes: watch::Sender<u64>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        if let std::task::Poll::Ready(Ok(())) = res {
            self.flushes.send_modify(|n| *n = n.wrapping_add(1));
        }
        res
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Per-connection flush counter, handed to the handler as connect info.
#[derive(Clone)]
struct ConnFlushes(watch::Receiver<u64>);

impl Connected<IncomingStream<'_, TrackedListener>> for ConnFlushes {
    fn connect_info(stream: IncomingStream<'_, TrackedListener>) -> Self {
        ConnFlushes(stream.io().flushes.subscribe())
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

impl Shared {
    /// Find the first applicable rule, spend one unit of its budget, record the firing.
    fn take_fault(&self, info: &RequestInfo<'_>) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let idx = rules.iter().position(|r| {
            r.remaining > 0
                && r.matcher.matches(info)
                && (!matches!(r.fault, Fault::RedirectBlobs { .. }) || blob_digest(info.path).is_some())
        })?;
        let rule = &mut rules[idx];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        let id = rule.id;
        if rule.remaining == 0 {
            rules.remove(idx);
        }
        drop(rules);
        lock(&self.fired).push(FiredFault {
            rule: id,
            kind: fault.kind(),
            method: info.method.clone(),
            path: info.path.to_owned(),
            at: Instant::now(),
        });
        Some(fault)
    }

    /// Append `rec` (its `id` is assigned here) and return its id.
    fn record(&self, log: &Mutex<Vec<RecordedRequest>>, mut rec: RecordedRequest) -> u64 {
        let mut log = lock(log);
        rec.id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let id = rec.id;
        log.push(rec);
        id
    }

    fn update(&self, log: &Mutex<Vec<RecordedRequest>>, id: u64, f: impl FnOnce(&mut RecordedRequest)) {
        // `clear_log` may have run in between; then the entry is gone and nothing is updated.
        if let Some(r) = lock(log).iter_mut().rev().find(|r| r.id == id) {
            f(r);
        }
    }

    /// Rewrite a `Location` value that points at the upstream so it points at the proxy, then
    /// apply the user's rewrites.
    fn rewrite_location(&self, value: &str) -> String {
        let mut out = value.to_owned();
        if let Ok(loc) = Url::parse(value) {
            let up = &self.upstream;
            let base_path = up.path().trim_end_matches('/');
            if loc.scheme() == up.scheme()
                && loc.host_str() == up.host_str()
                && loc.port_or_known_default() == up.port_or_known_default()
                && loc.path().starts_with(base_path)
            {
                let mut rest = loc.path()[base_path.len()..].to_owned();
                if !rest.starts_with('/') {
                    rest.insert(0, '/');
                }
                let mut new = self.proxy_url.clone();
                new.set_path(&rest);
                new.set_query(loc.query());
                new.set_fragment(loc.fragment());
                out = new.to_string();
            }
        }
        self.apply_rewrites(&out)
    }

    fn apply_rewrites(&self, value: &str) -> String {
        self.rewrites
            .iter()
            .fold(value.to_owned(), |v, (from, to)| v.replace(from, to))
    }
}

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

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `sha256:<64 hex>` from a path containing `/blobs/sha256:<64 hex>`.
fn blob_digest(path: &str) -> Option<String> {
    let start = path.find("/blobs/sha256:")? + "/blobs/".len();
    let digest = path[start..].split(['/', '?']).next()?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digest.to_owned())
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

fn simple_response(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(*k), HeaderValue::try_from(*v)) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

async fn proxy_handler(
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

/// Pass the first `limit` bytes of `inner`, wait until the connection has flushed them to the
/// socket, then fail the body so the server aborts the connection (hyper drops its unflushed
/// write buffer when a body fails, so failing right away could lose some of the `limit` bytes).
/// A body shorter than `limit` passes through unchanged.
fn reset_after(inner: ByteStream, limit: u64, flushes: watch::Receiver<u64>) -> ByteStream {
    struct St {
        inner: ByteStream,
        sent: u64,
        done: bool,
        flushes: watch::Receiver<u64>,
    }
    let st = St {
        inner,
        sent: 0,
        done: false,
        flushes,
    };
    Box::pin(futures::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if st.sent >= limit {
                // Our last chunk is in hyper's write buffer now; the next completed flush of the
                // connection has written it to the socket.
                st.flushes.borrow_and_update();
                let _ = tokio::time::timeout(RESET_FLUSH_TIMEOUT, st.flushes.changed()).await;
                st.done = true;
                let err: BoxError = Box::new(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    format!("fault proxy: connection reset after {limit} body bytes"),
                ));
                return Some((Err(err), st));
            }
            match st.inner.next().await {
                Some(Ok(mut chunk)) => {
                    let room = limit - st.sent;
                    if chunk.len() as u64 > room {
                        chunk.truncate(room as usize);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    st.sent += chunk.len() as u64;
                    return Some((Ok(chunk), st));
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => return None,
            }
        }
    }))
}

/// Pass `inner` on at about `rate` bytes a second: in slices of a tenth of a second's worth,
/// each sent after the time it takes at that rate.
fn throttle(inner: ByteStream, rate: u64) -> ByteStream {
    let rate = rate.max(1);
    let slice = (rate / 10).max(1) as usize;
    let slices = inner
        .map_ok(move |chunk| {
            let pieces: Vec<Result<Bytes, BoxError>> = (0..chunk.len())
                .step_by(slice)
                .map(|at| Ok(chunk.slice(at..(at + slice).min(chunk.len()))))
                .collect();
            futures::stream::iter(pieces)
        })
        .try_flatten();
    Box::pin(slices.then(move |piece| async move {
        if let Ok(bytes) = &piece {
            tokio::time::sleep(Duration::from_secs_f64(bytes.len() as f64 / rate as f64)).await;
        }
        piece
    }))
}

/// The first `limit` bytes of `inner`, then an error.
fn cut_after(inner: ByteStream, limit: u64) -> ByteStream {
    let mut passed = 0u64;
    Box::pin(inner.map(move |item| {
        let chunk = item?;
        if passed >= limit {
            return Err(BoxError::from("fault proxy: request body cut"));
        }
        let keep = (limit - passed).min(chunk.len() as u64) as usize;
        passed += keep as u64;
        if keep < chunk.len() {
            // What fits goes on; the next poll ends the body with the error.
            return Ok(chunk.slice(..keep));
        }
        Ok(chunk)
    }))
}

/// Flip (XOR 0xFF) the byte at `offset` of the stream.
fn corrupt_byte(inner: ByteStream, offset: u64) -> ByteStream {
    let mut pos = 0u64;
    Box::pin(inner.map_ok(move |chunk| {
        let start = pos;
        pos += chunk.len() as u64;
        if offset >= start && offset < pos {
            let mut b = BytesMut::from(&chunk[..]);
            b[(offset - start) as usize] ^= 0xFF;
            b.freeze()
        } else {
            chunk
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// Redirect target
// ---------------------------------------------------------------------------------------------

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

async fn redirect_handler(State(shared): State<Arc<Shared>>, req: Request) -> Response {
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

// Compile-time check: the proxy and rules can be shared across tasks.
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<FaultProxy>();
    is_send_sync::<Matcher>();
    is_send_sync::<Rule>();
};
