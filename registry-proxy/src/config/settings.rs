//! The configuration as the cache uses it: typed, defaults filled in.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use registry_client::model::reference::DOCKER_HUB;
use registry_client::{Credentials, ImageReference};

use crate::error::{Error, Result};

/// Where a server listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
/// How long a tag is trusted before it is checked upstream again.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);
/// The time a route's upstreams have to answer one request.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The cache's directory on local disk (with S3: where blobs are
    /// spooled while they fill).
    pub storage: PathBuf,
    /// Keep the cache in an S3-compatible bucket instead (shared by replicas).
    pub s3: Option<S3Config>,
    /// The cache's size and age limits (none by default).
    pub max_size: Option<u64>,
    pub max_age: Option<Duration>,
    /// Names this server's record of object uses in the storage (replicas
    /// on one bucket need different names); default: the host name.
    pub replica: Option<String>,
    /// How the server itself behaves: TLS, timeouts, sizes, shutdown.
    pub server: ServerConfig,
    /// Who may pull from the routes that are not public.
    pub auth: Option<AuthConfig>,
    /// `Host: <registry>.<suffix>` selects that registry's route.
    pub vhost_suffix: Option<String>,
    pub routes: Vec<RouteConfig>,
}

/// The server's own settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Serve HTTPS (and HTTP/2) with this certificate chain and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Time a client has to send its first request's headers after
    /// connecting, and a request's headers once it starts one.
    pub header_timeout: Duration,
    /// How long a connection may go without progress from its client:
    /// between requests on a kept-alive connection, or while the client
    /// does not read the answer being sent. Then it is closed.
    pub idle_timeout: Duration,
    /// Client connections open at once; at the limit, the oldest idle
    /// connection is closed to make room. `None`: the server derives it at
    /// start from the process's open-file limit.
    pub max_connections: Option<usize>,
    /// The most a request's headers may take.
    pub max_header_bytes: usize,
    /// On SIGTERM, how long answers under way may take before they are cut.
    pub shutdown_grace: Duration,
    /// Upstream fetches at once per route; more wait their turn.
    pub upstream_fetches: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tls: None,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: None,
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
            upstream_fetches: 16,
        }
    }
}

/// Client access control: the users of non-public routes and the tokens
/// the proxy issues them.
#[derive(Clone)]
pub struct AuthConfig {
    /// `user:bcrypt-hash` lines (`htpasswd -B`); re-read when it changes.
    pub htpasswd: PathBuf,
    /// How long a bearer token from the proxy's token endpoint is valid.
    pub token_ttl: Duration,
    /// The token endpoint's URL as clients must reach it (behind a load
    /// balancer); default: `<scheme>://<Host header>/token`.
    pub realm: Option<String>,
    /// Signs the tokens; replicas behind one load balancer need the same.
    /// `None`: a random key, so tokens are good on this server only.
    pub token_secret: Option<String>,
}

/// The secret stays out of sight.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("htpasswd", &self.htpasswd)
            .field("token_ttl", &self.token_ttl)
            .field("realm", &self.realm)
            .field("token_secret", &self.token_secret.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// How long the proxy's tokens are valid unless configured.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(600);

/// An S3-compatible bucket for the cache. Credentials, region and endpoint
/// not given here come from the usual AWS variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`).
#[derive(Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Keys start with this (`proxy/`), so a bucket can hold other things.
    pub prefix: Option<String>,
    /// An S3-compatible service (`http://127.0.0.1:9000`); plain HTTP only when given so.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The secret key stays out of sight.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One registry the proxy caches, and where its content comes from.
#[derive(Clone)]
pub struct RouteConfig {
    /// Names the route in storage keys, logs and environment variables.
    pub name: String,
    /// The registry as named in image references (`docker.io`, `ghcr.io`).
    pub registry: String,
    /// A first path component that selects this route (`/v2/<prefix>/<name>/…`).
    pub prefix: Option<String>,
    /// `Host` values that select this route.
    pub hosts: Vec<String>,
    /// Requests that name no route get this one.
    pub default: bool,
    pub tag_ttl: Duration,
    /// The time the upstreams have to answer one request (waiting for a
    /// fetch slot, connecting, retries, every mirror and the registry)
    /// before the cache answers stale or 503.
    pub upstream_timeout: Duration,
    /// Upstreams tried before the registry itself, in order.
    pub mirrors: Vec<UpstreamConfig>,
    /// Never fall back to the registry itself.
    pub mirror_only: bool,
    /// For the registry itself; `None`: the provider's own (docker's
    /// `config.json`, the cloud's credentials).
    pub credentials: Option<Credentials>,
    /// The provider for the registry (`aws`, `gcp`, `ali`); default: by host.
    pub provider: Option<String>,
    pub region: Option<String>,
    /// Provider settings by name (`endpoint_url` for `aws`, an instance id
    /// for `ali`, …); values may be secrets and are never shown.
    pub options: BTreeMap<String, String>,
    /// Where the registry's API is, when not at its own name
    /// (`https://registry.internal:5000`).
    pub endpoint: Option<String>,
    pub insecure: bool,
    /// Served to anonymous clients. `None`: public unless the proxy has
    /// `[auth]`; a route whose upstream needs credentials must say.
    pub public: Option<bool>,
}

/// A mirror a route fetches from before its registry.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// `[scheme://]host[:port][/namespace]`.
    pub url: String,
    pub credentials: Option<Credentials>,
    pub insecure: bool,
}

/// Credentials stay out of sight.
impl fmt::Debug for RouteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteConfig")
            .field("name", &self.name)
            .field("registry", &self.registry)
            .field("prefix", &self.prefix)
            .field("hosts", &self.hosts)
            .field("default", &self.default)
            .field("tag_ttl", &self.tag_ttl)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("mirrors", &self.mirrors)
            .field("mirror_only", &self.mirror_only)
            .field("credentials", &self.credentials)
            .field("provider", &self.provider)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("endpoint", &self.endpoint)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl RouteConfig {
    /// A route for `registry` with the defaults: named after it (`dockerhub`
    /// for Docker Hub), its prefix the registry itself (`/v2/ghcr.io/…`; a
    /// port is written `-port`), credentials from
    /// `MCREG_UPSTREAM_<NAME>_USERNAME`/`_PASSWORD` when set.
    pub fn for_registry(registry: &str) -> Result<RouteConfig> {
        let registry = normalize_registry(registry).map_err(Error::Invalid)?;
        let name = default_name(&registry);
        Ok(RouteConfig {
            credentials: credentials_from_env(&name)?,
            prefix: Some(registry.replace(':', "-")),
            name,
            registry,
            hosts: Vec::new(),
            default: false,
            tag_ttl: DEFAULT_TAG_TTL,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            mirrors: Vec::new(),
            mirror_only: false,
            provider: None,
            region: None,
            options: BTreeMap::new(),
            endpoint: None,
            insecure: false,
            public: None,
        })
    }
}

impl Config {
    /// `routes` with every other setting at its default (local storage in
    /// `storage`, no limits).
    pub fn with_routes(listen: SocketAddr, storage: PathBuf, routes: Vec<RouteConfig>) -> Config {
        Config {
            listen,
            storage,
            s3: None,
            max_size: None,
            max_age: None,
            replica: None,
            server: ServerConfig::default(),
            auth: None,
            vhost_suffix: None,
            routes,
        }
    }

    /// A configuration without a file: one route per registry, in order;
    /// Docker Hub's (or else the first) is the default route. Check it with
    /// [`validate`](super::validate) once it is complete.
    pub fn for_registries(listen: SocketAddr, storage: PathBuf, registries: &[String]) -> Result<Config> {
        let mut routes = registries
            .iter()
            .map(|r| RouteConfig::for_registry(r))
            .collect::<Result<Vec<_>>>()?;
        let default = routes.iter().position(|r| r.registry == DOCKER_HUB).unwrap_or(0);
        if let Some(route) = routes.get_mut(default) {
            route.default = true;
        }
        Ok(Config::with_routes(listen, storage, routes))
    }
}

/// `MCREG_UPSTREAM_<NAME>_USERNAME` and `_PASSWORD`, when both are set.
pub(super) fn credentials_from_env(name: &str) -> Result<Option<Credentials>> {
    let variable = |part: &str| format!("MCREG_UPSTREAM_{}_{part}", env_name(name));
    let get = |part: &str| std::env::var(variable(part)).ok().filter(|v| !v.is_empty());
    match (get("USERNAME"), get("PASSWORD")) {
        (Some(user), Some(password)) => Ok(Some(Credentials::basic(user, password))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::Invalid(format!(
            "{} is set but {} is not",
            variable("USERNAME"),
            variable("PASSWORD")
        ))),
        (None, Some(_)) => Err(Error::Invalid(format!(
            "{} is set but {} is not",
            variable("PASSWORD"),
            variable("USERNAME")
        ))),
    }
}

/// A route name as it appears in environment variables: `ghcr-io` → `GHCR_IO`.
pub fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn default_name(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "dockerhub".to_owned()
    } else {
        registry.replace([':', '.'], "-").to_ascii_lowercase()
    }
}

/// A registry as image references name it (`index.docker.io` is `docker.io`).
fn normalize_registry(registry: &str) -> Result<String, String> {
    let trimmed = registry.trim().trim_end_matches('/');
    let host = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let reference = ImageReference::parse(&format!("{host}/probe"))
        .map_err(|e| format!("{registry:?} is not a registry: {e}"))?;
    let hub = reference.registry() == DOCKER_HUB && reference.repository() == "library/probe";
    if reference.repository() != "probe" && !hub {
        return Err(format!("{registry:?} is not a registry host (host[:port])"));
    }
    Ok(reference.registry().to_owned())
}
