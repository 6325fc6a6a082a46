#![doc = include_str!("../README.md")]

mod api;
mod auth;
mod cache;
mod cache_result;
pub mod config;
pub mod error;
mod fill;
mod health;
mod log;
mod maintenance;
mod metrics;
mod passthrough;
mod referrers;
mod routes;
mod server;
mod singleflight;
pub mod storage;
mod tls;
mod usage;
mod warnings;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use registry_client::RepositoryClientBuilder;

pub use config::{AuthConfig, Config, RouteConfig, S3Config, UpstreamConfig};
pub use error::{Error, Result};
use routes::Routes;
pub use server::raise_open_file_limit;
use storage::Storage;

/// A pull-through cache: its routes and their upstream clients, its storage.
pub struct Proxy {
    routes: Routes,
    cache: cache::Cache,
    referrers: referrers::ReferrerLists,
    metrics: Arc<metrics::Metrics>,
    maintenance: maintenance::Maintenance,
    server: config::ServerConfig,
    /// Users and tokens, when some route is not public.
    access: Option<auth::Access>,
    /// The cache's directory (with S3, where blobs are spooled).
    directory: std::path::PathBuf,
}

impl Proxy {
    /// A proxy for `config`, storing on local disk at `config.storage`, or
    /// in its S3 bucket. `customize` is applied to every route's upstream
    /// client (mirror config files, a docker config to read, timeouts).
    pub fn new(
        config: &Config,
        customize: impl Fn(RepositoryClientBuilder) -> RepositoryClientBuilder,
    ) -> Result<Proxy> {
        let storage = match &config.s3 {
            Some(s3) => Storage::s3(s3, config.storage.join("spool"))?,
            None => Storage::local(&config.storage)?,
        };
        Self::with_storage(config, storage, customize)
    }

    /// A proxy on any storage.
    pub fn with_storage(
        config: &Config,
        storage: Storage,
        customize: impl Fn(RepositoryClientBuilder) -> RepositoryClientBuilder,
    ) -> Result<Proxy> {
        config::validate(config)?;
        let access = match &config.auth {
            Some(auth) => Some(auth::Access::new(auth, config.server.tls.is_some())?),
            None => None,
        };
        let metrics = Arc::new(metrics::Metrics::default());
        let limits = usage::Limits {
            max_size: config.max_size,
            max_age: config.max_age,
        };
        let replica = config.replica.clone().unwrap_or_else(host_name);
        let maintenance = maintenance::Maintenance {
            storage,
            usage: Arc::new(usage::Usage::new(limits, replica)),
            metrics: metrics.clone(),
            health: Arc::default(),
        };
        Ok(Proxy {
            routes: Routes::build(config, &customize)?,
            cache: cache::Cache::new(maintenance.clone()),
            referrers: referrers::ReferrerLists::new(maintenance.clone()),
            maintenance,
            metrics,
            server: config.server.clone(),
            access,
            directory: config.storage.clone(),
        })
    }

    /// The HTTP service: the `/v2/` API, `/health`, `/ready`, `/metrics`,
    /// `/stats`, the access log. (Without [`serve`](Self::serve), nothing
    /// keeps the cache within its limits.)
    pub fn router(self) -> Router {
        let metrics = self.metrics.clone();
        api::router(Arc::new(self)).layer(axum::middleware::from_fn_with_state(metrics, log::layer))
    }

    /// The cache's directory on local disk (with S3, where blobs are spooled).
    pub fn directory(&self) -> &std::path::Path {
        &self.directory
    }

    /// The routes: name, registry, and whether anonymous clients may use
    /// it (for start-up messages).
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.routes
            .all()
            .iter()
            .map(|r| (r.name.as_str(), r.registry.as_str(), r.public))
    }

    /// Serves on `listener` (HTTPS and HTTP/2 when the configuration has a
    /// certificate) until `shutdown` completes, within the configured
    /// bounds on connections (see [`server`]); then lets the answers under
    /// way finish for the grace period and cuts what is left. The
    /// housekeeping (use records, eviction) runs alongside.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        self.serve_with(listener, shutdown, |router| router).await
    }

    /// [`serve`](Self::serve), with `wrap` applied to the HTTP service
    /// (more routes, or layers of the embedder's own, outside the access log).
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        wrap: impl FnOnce(Router) -> Router,
    ) -> Result<()> {
        let settings = self.server.clone();
        let tls = match &settings.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        let limits = server::Limits {
            header_timeout: settings.header_timeout,
            idle_timeout: settings.idle_timeout,
            max_connections: settings
                .max_connections
                .unwrap_or_else(server::default_max_connections),
            max_header_bytes: settings.max_header_bytes,
            shutdown_grace: settings.shutdown_grace,
        };
        tracing::info!(
            max_connections = limits.max_connections,
            header_timeout = ?limits.header_timeout,
            idle_timeout = ?limits.idle_timeout,
            "connection limits"
        );
        let maintenance = self.maintenance.clone();
        let housekeeping = tokio::spawn(maintenance.clone().run());
        let (metrics, fills, grace) = (self.metrics.clone(), self.cache.fills(), limits.shutdown_grace);
        let stopping = Arc::new(std::sync::OnceLock::new());
        let stopped_at = stopping.clone();
        let shutdown = async move {
            shutdown.await;
            let _ = stopped_at.set(std::time::Instant::now());
        };
        server::serve(listener, wrap(self.router()), tls, limits, metrics, shutdown).await;
        // A fill that ends within the grace period is kept (its client may
        // have had every byte already): its commit is waited for.
        let since = stopping.get().copied().unwrap_or_else(std::time::Instant::now);
        fills.settle(since + grace).await;
        housekeeping.abort();
        maintenance.flush().await;
        Ok(())
    }
}

/// This machine's name, for its record of uses in shared storage.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() { "local".to_owned() } else { name }
}
