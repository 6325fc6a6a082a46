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

mod body;
mod connection;
mod handler;
mod log;
mod matcher;
mod redirect;
mod rules;
mod shared;

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use url::Url;

use connection::{ConnFlushes, TrackedListener};
use handler::proxy_handler;
pub use log::{FiredFault, RecordedRequest};
pub use matcher::{Matcher, RequestInfo, is_blob_path, is_manifest_path, is_token_path};
use redirect::redirect_handler;
use rules::ActiveRule;
pub use rules::{Fault, FaultKind, Rule, RuleId};
use shared::{Shared, lock};

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

// Compile-time check: the proxy and rules can be shared across tasks.
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<FaultProxy>();
    is_send_sync::<Matcher>();
    is_send_sync::<Rule>();
};
