//! The listening side: accepts connections (TLS when configured) and serves
//! each with hyper, HTTP/1.1 and HTTP/2, keeping what one client can hold
//! bounded:
//!
//! - a connection must deliver its first request's headers (after the TLS
//!   handshake) within `header_timeout` of being accepted, whether or not
//!   it sends a byte;
//! - between requests, or while an answer makes no progress (its client
//!   does not read it: HTTP/1 writes wait, HTTP/2 flow control closes), a
//!   connection may sit for `idle_timeout`;
//! - at most `max_connections` are open: at the limit, the connection idle
//!   the longest is closed to make room; when every one is busy, new
//!   connections wait in the listen queue;
//! - on shutdown, nothing new is accepted, idle connections close, and
//!   answers under way have the grace period; what is left is then cut.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::warnings::Occasional;

/// What bounds the clients' connections.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
}

/// The default connection limit: half the open-file limit (the other half
/// is for upstream connections, spool and cache files), within 16..=65536.
pub fn default_max_connections() -> usize {
    let files = open_file_limit().map_or(1024, |limit| limit.rlim_cur);
    usize::try_from(files / 2).unwrap_or(usize::MAX).clamp(16, 65_536)
}

fn open_file_limit() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

/// Raises this process's soft open-file limit to its hard limit (what Go
/// programs do at start: the soft default of 1024 is far too low for a
/// server). Returns the limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = open_file_limit()?;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: a valid rlimit for this process.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see
/// the module's docs).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let table = Arc::new(Table::default());
    let (stop, stopping) = watch::channel(false);
    let builder = Arc::new(http_builder(&limits));
    let serving = Serving {
        app,
        tls,
        limits: limits.clone(),
        metrics: metrics.clone(),
        builder,
    };
    let mut connections = JoinSet::new();
    let at_limit = Occasional::new(Duration::from_secs(10));
    let accept_failed = Occasional::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    'accepting: loop {
        // Room for one more: close the connection idle the longest, or wait
        // for one to end or go idle.
        let mut at_the_limit = false;
        while table.live() >= limits.max_connections {
            let room = table.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let evicted = table.close_oldest_idle();
            if !at_the_limit {
                at_the_limit = true;
                metrics.connection_limit_reached();
                if let Some(held_back) = at_limit.ready() {
                    tracing::warn!(
                        limit = limits.max_connections,
                        held_back,
                        "connection limit reached: {}",
                        if evicted {
                            "closing the connection idle the longest"
                        } else {
                            "every connection is busy; new ones wait"
                        }
                    );
                }
            }
            if evicted {
                break;
            }
            tokio::select! {
                _ = room => {}
                Some(_) = connections.join_next() => {}
                _ = &mut shutdown => break 'accepting,
            }
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    metrics.accept_failed();
                    if let Some(held_back) = accept_failed.ready() {
                        tracing::error!(held_back, "cannot accept a connection: {error}");
                    }
                    // Out of descriptors, most likely: make some, and do not spin.
                    table.close_oldest_idle();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next() => continue,
            _ = &mut shutdown => break,
        };
        let connection = table.open();
        metrics.connection_opened();
        let serving = serving.clone();
        let stopping = stopping.clone();
        let table = table.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            serving.connection(stream, peer, &connection, stopping).await;
            table.close(&connection);
            metrics.connection_ended();
        });
    }
    drop(listener);
    drain(connections, stop, &limits).await;
}

/// Tells every connection to finish, waits for them for the grace period,
/// then cuts the rest.
async fn drain(mut connections: JoinSet<()>, stop: watch::Sender<bool>, limits: &Limits) {
    stop.send_replace(true);
    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { return },
            _ = &mut grace => break,
        }
    }
    connections.shutdown().await;
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Our own timers cover the headers: the first request's from the
        // accept, later ones as idle time (hyper's would restart after
        // every answer and close kept-alive connections at header_timeout).
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    builder
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// No complete request headers within `header_timeout` of the accept.
    HeaderTimeout,
    /// Nothing asked for `idle_timeout` since the last answer.
    Idle,
    /// Answers under way, and none of their bytes taken for `idle_timeout`.
    Stalled,
    /// Closed to make room at the connection limit.
    Evicted,
}

impl Close {
    fn as_str(self) -> &'static str {
        match self {
            Close::HeaderTimeout => "header_timeout",
            Close::Idle => "idle_timeout",
            Close::Stalled => "stalled",
            Close::Evicted => "evicted",
        }
    }
}

/// Everything a connection task needs.
#[derive(Clone)]
struct Serving {
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    metrics: Arc<Metrics>,
    builder: Arc<auto::Builder<TokioExecutor>>,
}

impl Serving {
    async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        connection: &Arc<Connection>,
        stopping: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return self.http(stream, peer, connection, stopping).await;
        };
        // The handshake is part of the first request's time.
        let handshake = tokio::select! {
            handshake = tls.accept(stream) => handshake,
            reason = connection.expired(&self.limits) => {
                self.metrics.connection_closed(reason.as_str());
                return;
            }
        };
        match handshake {
            Ok(stream) => self.http(stream, peer, connection, stopping).await,
            Err(error) => tracing::debug!(%peer, "TLS handshake failed: {error}"),
        }
    }

    async fn http<I>(
        &self,
        io: I,
        peer: SocketAddr,
        connection: &Arc<Connection>,
        mut stopping: watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = {
            let (app, connection) = (self.app.clone(), connection.clone());
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                let busy = connection.begin();
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    let response = app.oneshot(request).await.unwrap_or_else(|never| match never {});
                    Ok::<_, Infallible>(response.map(|body| Body::new(Answering { body, busy })))
                }
            })
        };
        let served = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(served);
        let mut closing = false;
        loop {
            tokio::select! {
                result = &mut served => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, "connection ended: {error}");
                        // hyper answered it itself: it still gets its line.
                        if let Some(status) = refused_with(&*error) {
                            let started = connection.state().since.into_std();
                            crate::log::refused(self.metrics.clone(), peer, status, started);
                        }
                    }
                    return;
                }
                reason = connection.expired(&self.limits), if !closing => {
                    self.metrics.connection_closed(reason.as_str());
                    served.as_mut().graceful_shutdown();
                    // Idle or stalled: nothing will finish. Whatever hyper
                    // still waits for (half a request's headers, a client
                    // that reads no more) is not worth more than a second.
                    let _ = tokio::time::timeout(Duration::from_secs(1), &mut served).await;
                    return;
                }
                // The value only ever turns true.
                _ = stopping.changed(), if !closing => {
                    closing = true;
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The status hyper answered a request it could not read with, if that is
/// why the connection ended.
fn refused_with(error: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let error = error.downcast_ref::<hyper::Error>()?;
    if error.is_parse_too_large() {
        Some(431)
    } else if error.is_parse() {
        Some(400)
    } else {
        None
    }
}

/// The open connections.
#[derive(Default)]
struct Table {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next: AtomicU64,
    /// A connection ended or went idle: there may be room now.
    room: Arc<Notify>,
    /// Open connections told to close (to make room), not yet gone: the
    /// room they hold is already given away.
    evicted: AtomicUsize,
}

impl Table {
    fn open(&self) -> Arc<Connection> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            state: Mutex::new(State {
                in_flight: 0,
                served: 0,
                since: Instant::now(),
                progress: Instant::now(),
                close: None,
            }),
            changed: Notify::new(),
            room: self.room.clone(),
        });
        self.lock().insert(id, connection.clone());
        connection
    }

    fn close(&self, connection: &Connection) {
        let mut open = self.lock();
        open.remove(&connection.id);
        if connection.state().close == Some(Close::Evicted) {
            self.evicted.fetch_sub(1, Ordering::Relaxed);
        }
        drop(open);
        self.room.notify_waiters();
    }

    /// Connections not already told to close.
    fn live(&self) -> usize {
        let open = self.lock();
        open.len() - self.evicted.load(Ordering::Relaxed)
    }

    /// Tells the connection idle the longest to close; false if none is idle.
    fn close_oldest_idle(&self) -> bool {
        let open = self.lock();
        let oldest = open
            .values()
            .filter_map(|c| {
                let state = c.state();
                (state.in_flight == 0 && state.close.is_none()).then_some((state.since, c))
            })
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, connection)) => {
                connection.state().close = Some(Close::Evicted);
                self.evicted.fetch_add(1, Ordering::Relaxed);
                connection.changed.notify_waiters();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One client connection, as its timers see it.
struct Connection {
    id: u64,
    state: Mutex<State>,
    /// A request began or ended, or the connection was told to close.
    changed: Notify,
    /// The table's: told when this connection goes idle.
    room: Arc<Notify>,
}

struct State {
    /// Requests whose answers are not yet sent.
    in_flight: usize,
    /// Requests begun.
    served: u64,
    /// When it was accepted, or its last answer ended.
    since: Instant,
    /// When an answer's bytes were last taken (or a request began).
    progress: Instant,
    /// Told to close (at the connection limit).
    close: Option<Close>,
}

impl Connection {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request's headers are in: busy until its answer is sent.
    fn begin(self: &Arc<Self>) -> Busy {
        let mut state = self.state();
        state.in_flight += 1;
        state.served += 1;
        state.progress = Instant::now();
        drop(state);
        self.changed.notify_waiters();
        Busy(self.clone())
    }

    /// Resolves when the connection has been idle too long, or is told to close.
    async fn expired(&self, limits: &Limits) -> Close {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let deadline = {
                let state = self.state();
                if let Some(reason) = state.close {
                    return reason;
                }
                match (state.in_flight, state.served) {
                    (0, 0) => (state.since + limits.header_timeout, Close::HeaderTimeout),
                    (0, _) => (state.since + limits.idle_timeout, Close::Idle),
                    _ => (state.progress + limits.idle_timeout, Close::Stalled),
                }
            };
            match deadline {
                (at, reason) if Instant::now() >= at => return reason,
                (at, _) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
            }
        }
    }
}

/// A request being answered; its connection is idle again when the last one drops.
struct Busy(Arc<Connection>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight -= 1;
        let idle = state.in_flight == 0;
        if idle {
            state.since = Instant::now();
        }
        drop(state);
        self.0.changed.notify_waiters();
        if idle {
            self.0.room.notify_waiters();
        }
    }
}

/// An answer's body, holding its connection busy until it is sent (or
/// dropped), and noting each time its bytes are taken.
struct Answering {
    body: Body,
    busy: Busy,
}

impl http_body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &frame {
            // Taken: the client is reading (the connection asks for more
            // only as the client takes what was sent).
            self.busy.0.state().progress = Instant::now();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
