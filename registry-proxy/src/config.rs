//! The proxy's configuration: where it listens, where it stores, and its
//! routes, each a registry with ordered upstreams. Read from a TOML file
//! ([`Config::load`]) or built from the command line ([`Config::for_registries`]).
//!
//! ```toml
//! listen = "0.0.0.0:5000"
//! vhost_suffix = "cache.example.com"      # ghcr.io.cache.example.com → the ghcr.io route
//!
//! [storage]
//! path = "/var/cache/mcreg/proxy"
//!
//! [[route]]
//! registry = "docker.io"                  # name "dockerhub", prefix "docker.io" by default
//! default = true                          # requests without ns=, vhost or prefix
//! tag_ttl = "5m"
//! [[route.mirror]]                        # tried before the registry itself
//! url = "https://mirror.gcr.io"
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use registry_client::config::toml_file::TomlFile;
use registry_client::driver::sources::location_host;
use registry_client::model::reference::DOCKER_HUB;
use registry_client::{Credentials, ImageReference};
use serde::Deserialize;

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
    /// [`validate`](Self::validate) once it is complete.
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

    /// Checks a configuration built in code (a file's is checked as it is read).
    pub fn validate(&self) -> Result<()> {
        self.check()
            .map_err(|(key, message)| Error::Invalid(format!("{key}: {message}")))
    }

    /// Whether anonymous clients may pull from `route`.
    pub fn is_public(&self, route: &RouteConfig) -> bool {
        route.public.unwrap_or(self.auth.is_none())
    }

    /// Reads a TOML configuration file. Errors name the file, the line when
    /// known, and the key.
    pub fn load(path: &Path, default_storage: PathBuf) -> Result<Config> {
        let text = TomlFile::read(path).map_err(Error::config_file)?;
        Self::parse(path, &text, default_storage)
    }

    fn parse(path: &Path, text: &str, default_storage: PathBuf) -> Result<Config> {
        let toml = TomlFile::new(path, text);
        let file: FileConfig = toml.deserialize().map_err(Error::config_file)?;
        let error =
            |(key, message): (String, String)| Error::config_file(toml.error(None, Some(key), message));
        let config = file.into_config(default_storage).map_err(error)?;
        config.check().map_err(error)?;
        Ok(config)
    }

    /// Checks what serde cannot: unique names and prefixes, one default.
    fn check(&self) -> Result<(), (String, String)> {
        if self.routes.is_empty() {
            return Err((
                "route".into(),
                "no route: give at least one registry to cache".into(),
            ));
        }
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        let mut hosts = HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("route[{i}].{field}");
            check_name(&route.name).map_err(|m| (key("name"), m))?;
            if !names.insert(&route.name) {
                return Err((key("name"), format!("route name {:?} is used twice", route.name)));
            }
            if let Some(prefix) = &route.prefix {
                check_prefix(prefix).map_err(|m| (key("prefix"), m))?;
                if !prefixes.insert(prefix) {
                    return Err((key("prefix"), format!("prefix {prefix:?} is used by two routes")));
                }
            }
            for host in &route.hosts {
                if !hosts.insert(host.to_ascii_lowercase()) {
                    return Err((key("hosts"), format!("host {host:?} is used by two routes")));
                }
            }
            self.check_access(route).map_err(|m| (key("public"), m))?;
        }
        if self.routes.iter().filter(|r| r.default).count() > 1 {
            return Err((
                "route.default".into(),
                "more than one route is the default".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// A private route needs users; content fetched with the cache's own
    /// credentials is served to anyone only when the route says so (the
    /// complaint about Distribution's proxy: private content made public).
    fn check_access(&self, route: &RouteConfig) -> Result<(), String> {
        match (route.public, &self.auth) {
            (Some(false), None) => Err(format!(
                "route {:?} is not public: give [auth] htpasswd with its users",
                route.name
            )),
            (None, None) if private_upstream(route) => Err(format!(
                "route {:?} fetches with credentials, so without [auth] its content would be \
                 served to anyone: give [auth] htpasswd, or say public = true",
                route.name
            )),
            _ => Ok(()),
        }
    }

    /// The same rule for credentials the configuration cannot show (docker's
    /// `config.json`, say): `has_credentials(host)` tells whether a registry
    /// or mirror host has some. Without `[auth]`, a route that would fetch
    /// with them must say it is public.
    pub fn check_hidden_credentials(&self, has_credentials: impl Fn(&str) -> bool) -> Result<()> {
        if self.auth.is_some() {
            return Ok(());
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.public.is_some() {
                continue;
            }
            let registry = (!route.mirror_only).then_some(route.registry.as_str());
            let mirrors = route
                .mirrors
                .iter()
                .filter(|m| m.credentials.is_none())
                .filter_map(|m| location_host(&m.url));
            if let Some(host) = registry.into_iter().chain(mirrors).find(|h| has_credentials(h)) {
                return Err(Error::Invalid(format!(
                    "route[{i}].public: route {:?} would fetch from {host} with credentials the \
                     configuration does not show, so without [auth] its content would be served \
                     to anyone: give [auth] htpasswd, or say public = true",
                    route.name
                )));
            }
        }
        Ok(())
    }
}

/// An upstream reached with credentials: given in the configuration, or
/// the cloud's own (a cloud provider's registry).
fn private_upstream(route: &RouteConfig) -> bool {
    let cloud = match &route.provider {
        Some(id) => id != registry_client::driver::oci::ID,
        None => registry_client::driver::provider_for_host(&route.registry)
            .is_ok_and(|id| id != registry_client::driver::oci::ID),
    };
    cloud || route.credentials.is_some() || route.mirrors.iter().any(|m| m.credentials.is_some())
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    vhost_suffix: Option<String>,
    #[serde(default)]
    server: FileServer,
    auth: Option<FileAuth>,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default, rename = "route")]
    routes: Vec<FileRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileServer {
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    max_header_size: Option<String>,
    shutdown_grace: Option<String>,
    upstream_fetches: Option<usize>,
}

impl FileServer {
    fn into_config(self) -> Result<ServerConfig, (String, String)> {
        let defaults = ServerConfig::default();
        let duration = |key: &str, text: Option<String>, default: Duration| match text {
            Some(text) => humantime::parse_duration(&text).map_err(|e| {
                (
                    format!("server.{key}"),
                    format!("{text:?} is not a duration (e.g. 30s): {e}"),
                )
            }),
            None => Ok(default),
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err(("server.tls_key".into(), "tls_cert needs tls_key".into())),
            (None, Some(_)) => return Err(("server.tls_cert".into(), "tls_key needs tls_cert".into())),
        };
        let max_header_bytes = match self.max_header_size {
            Some(text) => text
                .parse::<bytesize::ByteSize>()
                .map_err(|e| {
                    (
                        "server.max_header_size".to_owned(),
                        format!("{text:?} is not a size (e.g. 64KiB): {e}"),
                    )
                })?
                .as_u64() as usize,
            None => defaults.max_header_bytes,
        };
        if self.upstream_fetches == Some(0) {
            return Err(("server.upstream_fetches".into(), "must be at least 1".into()));
        }
        if self.max_connections == Some(0) {
            return Err(("server.max_connections".into(), "must be at least 1".into()));
        }
        let idle_timeout = duration("idle_timeout", self.idle_timeout, defaults.idle_timeout)?;
        if idle_timeout.is_zero() {
            return Err(("server.idle_timeout".into(), "must be longer than 0s".into()));
        }
        Ok(ServerConfig {
            tls,
            header_timeout: duration("header_timeout", self.header_timeout, defaults.header_timeout)?,
            idle_timeout,
            max_connections: self.max_connections,
            max_header_bytes,
            shutdown_grace: duration("shutdown_grace", self.shutdown_grace, defaults.shutdown_grace)?,
            upstream_fetches: self.upstream_fetches.unwrap_or(defaults.upstream_fetches),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    htpasswd: PathBuf,
    token_ttl: Option<String>,
    realm: Option<String>,
    token_secret_env: Option<String>,
}

impl FileAuth {
    fn into_config(self) -> Result<AuthConfig, (String, String)> {
        let token_ttl = match self.token_ttl {
            Some(text) => humantime::parse_duration(&text).map_err(|e| {
                (
                    "auth.token_ttl".to_owned(),
                    format!("{text:?} is not a duration (e.g. 10m): {e}"),
                )
            })?,
            None => DEFAULT_TOKEN_TTL,
        };
        if token_ttl.is_zero() {
            return Err(("auth.token_ttl".into(), "must be longer than 0s".into()));
        }
        if let Some(realm) = &self.realm
            && !(realm.starts_with("https://") || realm.starts_with("http://"))
        {
            return Err(("auth.realm".into(), format!("{realm:?} is not an http(s) URL")));
        }
        let token_secret = match &self.token_secret_env {
            Some(variable) => {
                let secret = std::env::var(variable).map_err(|_| {
                    (
                        "auth.token_secret_env".to_owned(),
                        format!("environment variable {variable} is not set"),
                    )
                })?;
                if secret.len() < 32 {
                    return Err((
                        "auth.token_secret_env".into(),
                        format!("the secret in {variable} is shorter than 32 bytes"),
                    ));
                }
                Some(secret)
            }
            None => None,
        };
        Ok(AuthConfig {
            htpasswd: self.htpasswd,
            token_ttl,
            realm: self.realm,
            token_secret,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    path: Option<PathBuf>,
    s3: Option<FileS3>,
    max_size: Option<String>,
    max_age: Option<String>,
    replica: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileS3 {
    bucket: String,
    prefix: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key_env: Option<String>,
}

impl FileS3 {
    fn into_config(self) -> Result<S3Config, (String, String)> {
        if self.bucket.is_empty() {
            return Err(("storage.s3.bucket".into(), "the bucket name is empty".into()));
        }
        let secret_access_key = match &self.secret_access_key_env {
            Some(variable) => Some(std::env::var(variable).map_err(|_| {
                (
                    "storage.s3.secret_access_key_env".to_owned(),
                    format!("environment variable {variable} is not set"),
                )
            })?),
            None => None,
        };
        Ok(S3Config {
            bucket: self.bucket,
            prefix: self.prefix.filter(|p| !p.is_empty()),
            endpoint: self.endpoint,
            region: self.region,
            access_key_id: self.access_key_id,
            secret_access_key,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    registry: String,
    name: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    default: Option<bool>,
    tag_ttl: Option<String>,
    upstream_timeout: Option<String>,
    #[serde(default, rename = "mirror")]
    mirrors: Vec<FileUpstream>,
    #[serde(default)]
    mirror_only: bool,
    // A login, written out rather than a flattened `FileLogin`: flatten
    // would report an unknown key at the `[[route]]` line, not its own.
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    provider: Option<String>,
    region: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    endpoint: Option<String>,
    #[serde(default)]
    insecure: bool,
    public: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    url: String,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    #[serde(default)]
    insecure: bool,
}

/// A user and a password, inline or (better) from an environment variable
/// (the `username`, `password` and `password_env` keys of a route or mirror).
struct FileLogin {
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
}

impl FileConfig {
    fn into_config(self, default_storage: PathBuf) -> Result<Config, (String, String)> {
        let listen = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen.parse().map_err(|e| {
            (
                "listen".to_owned(),
                format!("{listen:?} is not an address:port: {e}"),
            )
        })?;
        // Without an explicit default, Docker Hub's route is (docker's
        // registry-mirrors send its images with no other hint), unless it
        // says `default = false`.
        let hub_default = !self.routes.iter().any(|r| r.default == Some(true));
        let routes = self
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, route)| {
                let implicit = hub_default && route.default.is_none();
                let mut route = route.into_config(i)?;
                route.default |= implicit && route.registry == DOCKER_HUB;
                Ok(route)
            })
            .collect::<Result<Vec<_>, (String, String)>>()?;
        let max_size = match &self.storage.max_size {
            Some(text) => Some(
                text.parse::<bytesize::ByteSize>()
                    .map_err(|e| {
                        (
                            "storage.max_size".to_owned(),
                            format!("{text:?} is not a size (e.g. 50GiB, 500MB): {e}"),
                        )
                    })?
                    .as_u64(),
            ),
            None => None,
        };
        let max_age = match &self.storage.max_age {
            Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
                (
                    "storage.max_age".to_owned(),
                    format!("{text:?} is not a duration (e.g. 30d, 12h): {e}"),
                )
            })?),
            None => None,
        };
        if let Some(replica) = &self.storage.replica {
            check_name(replica).map_err(|m| ("storage.replica".to_owned(), m))?;
        }
        let s3 = self.storage.s3.map(FileS3::into_config).transpose()?;
        Ok(Config {
            listen,
            s3,
            server: self.server.into_config()?,
            auth: self.auth.map(FileAuth::into_config).transpose()?,
            max_size,
            max_age,
            replica: self.storage.replica,
            storage: self.storage.path.unwrap_or(default_storage),
            vhost_suffix: self
                .vhost_suffix
                .map(|s| s.trim_start_matches('.').to_ascii_lowercase()),
            routes,
        })
    }
}

impl FileRoute {
    fn into_config(self, index: usize) -> Result<RouteConfig, (String, String)> {
        let key = |field: &str| format!("route[{index}].{field}");
        let mut route = RouteConfig::for_registry(&self.registry).map_err(|e| (key("registry"), plain(e)))?;
        if let Some(name) = self.name {
            route.credentials = credentials_from_env(&name).map_err(|e| (key("name"), plain(e)))?;
            route.name = name;
        }
        let login = FileLogin {
            username: self.username,
            password: self.password,
            password_env: self.password_env,
        };
        if let Some(login) = login.credentials(&key).transpose() {
            route.credentials = Some(login?);
        }
        if self.prefix.is_some() {
            route.prefix = self.prefix.filter(|p| !p.is_empty());
        }
        route.hosts = self.hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        route.default = self.default.unwrap_or(false);
        if let Some(ttl) = self.tag_ttl {
            route.tag_ttl = humantime::parse_duration(&ttl).map_err(|e| {
                (
                    key("tag_ttl"),
                    format!("{ttl:?} is not a duration (e.g. 5m, 30s): {e}"),
                )
            })?;
        }
        if let Some(timeout) = self.upstream_timeout {
            route.upstream_timeout = humantime::parse_duration(&timeout).map_err(|e| {
                (
                    key("upstream_timeout"),
                    format!("{timeout:?} is not a duration (e.g. 10s, 1m): {e}"),
                )
            })?;
            if route.upstream_timeout.is_zero() {
                return Err((key("upstream_timeout"), "must be longer than 0s".into()));
            }
        }
        route.mirrors = self
            .mirrors
            .into_iter()
            .enumerate()
            .map(|(m, mirror)| {
                let key = |field: &str| format!("route[{index}].mirror[{m}].{field}");
                Ok(UpstreamConfig {
                    credentials: FileLogin {
                        username: mirror.username,
                        password: mirror.password,
                        password_env: mirror.password_env,
                    }
                    .credentials(&key)?,
                    url: mirror.url,
                    insecure: mirror.insecure,
                })
            })
            .collect::<Result<_, (String, String)>>()?;
        route.mirror_only = self.mirror_only;
        if route.mirror_only && route.mirrors.is_empty() {
            return Err((
                key("mirror_only"),
                "a mirror-only route needs at least one [[route.mirror]]".into(),
            ));
        }
        route.provider = self.provider;
        route.region = self.region;
        route.options = self.options;
        route.endpoint = self.endpoint;
        route.insecure = self.insecure;
        route.public = self.public;
        Ok(route)
    }
}

impl FileLogin {
    fn credentials(&self, key: &dyn Fn(&str) -> String) -> Result<Option<Credentials>, (String, String)> {
        let password = match (&self.password, &self.password_env) {
            (Some(_), Some(_)) => {
                return Err((
                    key("password_env"),
                    "give password or password_env, not both".into(),
                ));
            }
            (Some(password), None) => Some(password.clone()),
            (None, Some(variable)) => Some(std::env::var(variable).map_err(|_| {
                (
                    key("password_env"),
                    format!("environment variable {variable} is not set"),
                )
            })?),
            (None, None) => None,
        };
        match (&self.username, password) {
            (Some(user), Some(password)) => Ok(Some(Credentials::basic(user.as_str(), password))),
            (None, None) => Ok(None),
            (Some(_), None) => Err((
                key("username"),
                "a username needs password or password_env".into(),
            )),
            (None, Some(_)) => Err((key("password"), "a password needs a username".into())),
        }
    }
}

/// `MCREG_UPSTREAM_<NAME>_USERNAME` and `_PASSWORD`, when both are set.
fn credentials_from_env(name: &str) -> Result<Option<Credentials>> {
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

fn check_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "route name {name:?}: use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"
        ))
    }
}

/// A prefix is one repository path component (`ghcr`, `ghcr.io`).
fn check_prefix(prefix: &str) -> Result<(), String> {
    match ImageReference::parse(&format!("example.com/{prefix}/x")) {
        Ok(_) if !prefix.contains('/') => Ok(()),
        _ => Err(format!(
            "prefix {prefix:?}: one path component of lowercase letters, digits and separators"
        )),
    }
}

/// An error's text without the variant's prefix (for a key's message).
fn plain(error: Error) -> String {
    match error {
        Error::Invalid(message) => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("proxy.toml"), text, PathBuf::from("/cache"))
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_from_the_registry() {
        let config =
            parse("[[route]]\nregistry = \"docker.io\"\n[[route]]\nregistry = \"localhost:5000\"\n").unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.storage, PathBuf::from("/cache"));
        let hub = &config.routes[0];
        assert_eq!(
            (hub.name.as_str(), hub.prefix.as_deref(), hub.default),
            ("dockerhub", Some("docker.io"), true)
        );
        // Five minutes, as the docs promise.
        assert_eq!(hub.tag_ttl, Duration::from_secs(5 * 60));
        let local = &config.routes[1];
        assert_eq!(
            (local.name.as_str(), local.prefix.as_deref(), local.default),
            ("localhost-5000", Some("localhost-5000"), false)
        );
    }

    #[test]
    fn a_full_route() {
        let config = parse(
            r#"
listen = "0.0.0.0:5001"
vhost_suffix = ".Cache.Example.com"
[storage]
path = "/srv/cache"
[[route]]
registry = "ghcr.io"
name = "ghcr"
prefix = "ghcr"
hosts = ["GHCR.cache.example.com"]
default = true
tag_ttl = "90s"
username = "bot"
password = "s3cret"
endpoint = "https://ghcr.internal:5000"
public = true
[route.options]
access_key_secret = "k3y-s3cret"
[[route.mirror]]
url = "https://mirror.example.com/ghcr"
insecure = true
"#,
        )
        .unwrap();
        assert_eq!(config.vhost_suffix.as_deref(), Some("cache.example.com"));
        let route = &config.routes[0];
        assert_eq!(route.tag_ttl, Duration::from_secs(90));
        assert_eq!(route.hosts, ["ghcr.cache.example.com"]);
        assert!(route.credentials.is_some() && route.mirrors[0].insecure);
        assert_eq!(route.endpoint.as_deref(), Some("https://ghcr.internal:5000"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("k3y"), "{shown}");
        assert!(
            shown.contains("access_key_secret"),
            "option names are shown: {shown}"
        );
    }

    #[test]
    fn a_mirror_password_is_not_in_debug() {
        let config = parse(
            r#"
[[route]]
registry = "ghcr.io"
public = true
[[route.mirror]]
url = "https://mirror.example.com/ghcr"
username = "puller"
password = "m1rr0r-pa55"
"#,
        )
        .unwrap();
        assert!(config.routes[0].mirrors[0].credentials.is_some());
        let shown = format!("{config:?}");
        assert!(!shown.contains("m1rr0r-pa55"), "{shown}");
    }

    #[test]
    fn the_s3_secret_key_is_not_in_debug() {
        let mut config = parse("[[route]]\nregistry = \"docker.io\"\n").unwrap();
        config.s3 = Some(S3Config {
            bucket: "registry-cache".into(),
            access_key_id: Some("AKIAEXAMPLEKEYID".into()),
            secret_access_key: Some("wJalrXUtnFEMI-s3-secret".into()),
            ..S3Config::default()
        });
        for shown in [format!("{config:?}"), format!("{:?}", config.s3)] {
            assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
            // The rest is shown (the key id names the key, like a user).
            assert!(
                shown.contains("registry-cache") && shown.contains("AKIAEXAMPLEKEYID"),
                "{shown}"
            );
        }
    }

    #[test]
    fn the_token_secret_is_not_in_debug() {
        let mut config = parse("[[route]]\nregistry = \"docker.io\"\n").unwrap();
        let secret = "a-token-signing-secret-of-32-bytes-or-more";
        config.auth = Some(AuthConfig {
            htpasswd: PathBuf::from("/etc/mcreg/htpasswd"),
            token_ttl: DEFAULT_TOKEN_TTL,
            realm: None,
            token_secret: Some(secret.into()),
        });
        for shown in [format!("{config:?}"), format!("{:?}", config.auth)] {
            assert!(!shown.contains(secret), "{shown}");
            // The rest is shown: the htpasswd file is a path, not the hashes.
            assert!(shown.contains("/etc/mcreg/htpasswd"), "{shown}");
        }
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let m = message("[[route]]\nregistry = \"docker.io\"\ntag_ttl = 5\n");
        assert!(m.starts_with("proxy.toml, line 3, route[0].tag_ttl:"), "{m}");
        let m = message("[[route]]\nregistry = \"docker.io\"\ntag_ttl = \"soon\"\n");
        assert!(m.starts_with("proxy.toml, route[0].tag_ttl:"), "{m}");
        let m = message("[[route]]\nregistry = \"docker.io\"\nfrobnicate = true\n");
        assert!(m.contains("frobnicate"), "{m}");
        // An unknown key is reported at its own line, not at its table's.
        let m = message("[[route]]\nregistry = \"docker.io\"\n\nfrobnicate = true\n");
        assert!(
            m.starts_with("proxy.toml, line 4, route[0]") && m.contains("frobnicate"),
            "{m}"
        );
        let m = message(
            "[[route]]\nregistry = \"docker.io\"\n[[route.mirror]]\nurl = \"m.io\"\n\nfrobnicate = true\n",
        );
        assert!(
            m.starts_with("proxy.toml, line 6, route[0].mirror[0]") && m.contains("frobnicate"),
            "{m}"
        );
        let m = message("[server]\n\nfrobnicate = true\n[[route]]\nregistry = \"docker.io\"\n");
        assert!(
            m.starts_with("proxy.toml, line 3, server") && m.contains("frobnicate"),
            "{m}"
        );
        // The login keys keep their names and checks without flatten.
        let m = message("[[route]]\nregistry = \"a.io\"\npassword = \"p\"\n");
        assert!(m.starts_with("proxy.toml, route[0].password:"), "{m}");
        let m = message("[[route]]\nregistry = \"a.io\"\nusername = 5\n");
        assert!(m.starts_with("proxy.toml, line 3, route[0].username:"), "{m}");
        let m = message(
            "[[route]]\nregistry = \"a.io\"\n[[route.mirror]]\nurl = \"m\"\nusername = \"u\"\npassword = \"p\"\npassword_env = \"V\"\n",
        );
        assert!(
            m.starts_with("proxy.toml, route[0].mirror[0].password_env:"),
            "{m}"
        );
        let m = message("listen = \"nowhere\"\n[[route]]\nregistry = \"docker.io\"\n");
        assert!(m.starts_with("proxy.toml, listen:"), "{m}");
        let m = message("[[route]]\nregistry = \"Not A Host\"\n");
        assert!(m.starts_with("proxy.toml, route[0].registry:"), "{m}");
        let m =
            message("[[route]]\nregistry = \"a.io\"\n[[route]]\nregistry = \"b.io\"\nprefix = \"a.io\"\n");
        assert!(m.contains("route[1].prefix") && m.contains("two routes"), "{m}");
        let m = message("[[route]]\nregistry = \"a.io\"\nusername = \"u\"\n");
        assert!(m.contains("route[0].username"), "{m}");
        let m = message(
            "[[route]]\nregistry = \"a.io\"\n[[route.mirror]]\nurl = \"m\"\nusername = \"u\"\npassword_env = \"MCREG_TEST_SURELY_UNSET\"\n",
        );
        assert!(
            m.contains("route[0].mirror[0].password_env") && m.contains("MCREG_TEST_SURELY_UNSET"),
            "{m}"
        );
        assert!(message("").contains("no route"));
        let m = message("[[route]]\nregistry = \"a.io\"\nname = \"Bad Name\"\n");
        assert!(m.contains("route[0].name"), "{m}");
    }

    #[test]
    fn connection_and_upstream_limits() {
        let hub = "[[route]]\nregistry = \"docker.io\"\n";
        // Defaults: two minutes idle, connections from the open-file limit
        // (the server's choice), ten seconds for the upstreams.
        let config = parse(hub).unwrap();
        assert_eq!(config.server.idle_timeout, Duration::from_secs(120));
        assert_eq!(config.server.max_connections, None);
        assert_eq!(config.routes[0].upstream_timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(DEFAULT_UPSTREAM_TIMEOUT, Duration::from_secs(10));
        let server = ServerConfig::default();
        assert_eq!(
            (server.idle_timeout, server.max_connections),
            (Duration::from_secs(120), None)
        );

        let config = parse(&format!(
            "[server]\nheader_timeout = \"10s\"\nidle_timeout = \"2m 30s\"\nmax_connections = 4096\n\
             {hub}upstream_timeout = \"30s\"\n[[route]]\nregistry = \"ghcr.io\"\n"
        ))
        .unwrap();
        assert_eq!(config.server.header_timeout, Duration::from_secs(10));
        assert_eq!(config.server.idle_timeout, Duration::from_secs(150));
        assert_eq!(config.server.max_connections, Some(4096));
        assert_eq!(config.routes[0].upstream_timeout, Duration::from_secs(30));
        assert_eq!(config.routes[1].upstream_timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert!(format!("{:?}", config.routes[0]).contains("upstream_timeout: 30s"));

        for (text, start) in [
            (
                "[server]\nidle_timeout = \"0s\"\n",
                "proxy.toml, server.idle_timeout: must be",
            ),
            (
                "[server]\nidle_timeout = \"soon\"\n",
                "proxy.toml, server.idle_timeout:",
            ),
            (
                "[server]\nidle_timeout = 120\n",
                "proxy.toml, line 2, server.idle_timeout:",
            ),
            (
                "[server]\nmax_connections = 0\n",
                "proxy.toml, server.max_connections: must be at least 1",
            ),
            (
                "[server]\nmax_connections = -1\n",
                "proxy.toml, line 2, server.max_connections:",
            ),
            (
                "[server]\n\nmax_connections = \"many\"\n",
                "proxy.toml, line 3, server.max_connections:",
            ),
        ] {
            let m = message(&format!("{text}{hub}"));
            assert!(m.starts_with(start), "{text:?}: {m}");
        }
        for (route, start) in [
            (
                "upstream_timeout = \"0s\"\n",
                "proxy.toml, route[0].upstream_timeout: must be",
            ),
            (
                "upstream_timeout = \"soon\"\n",
                "proxy.toml, route[0].upstream_timeout:",
            ),
            (
                "upstream_timeout = 10\n",
                "proxy.toml, line 3, route[0].upstream_timeout:",
            ),
        ] {
            let m = message(&format!("{hub}{route}"));
            assert!(m.starts_with(start), "{route:?}: {m}");
        }
        let m = message(&format!(
            "{hub}[[route]]\nregistry = \"ghcr.io\"\nupstream_timeout = \"0s\"\n"
        ));
        assert!(m.starts_with("proxy.toml, route[1].upstream_timeout:"), "{m}");
    }

    #[test]
    fn docker_hub_is_the_default_unless_it_says_no() {
        let hub = "[[route]]\nregistry = \"docker.io\"\n";
        assert!(parse(hub).unwrap().routes[0].default);
        let config = parse(&format!("{hub}default = false\n")).unwrap();
        assert!(!config.routes[0].default);
        let config = parse(&format!(
            "{hub}[[route]]\nregistry = \"ghcr.io\"\ndefault = true\n"
        ))
        .unwrap();
        assert!(!config.routes[0].default && config.routes[1].default);
    }

    #[test]
    fn private_upstreams_are_public_only_when_the_route_says_so() {
        let login = "[[route]]\nregistry = \"a.io\"\nusername = \"u\"\npassword = \"p\"\n";
        let m = message(login);
        assert!(
            m.starts_with("proxy.toml, route[0].public:") && m.contains("[auth]"),
            "{m}"
        );
        let config = parse(&format!("{login}public = true\n")).unwrap();
        assert!(config.is_public(&config.routes[0]));
        let m = message("[[route]]\nregistry = \"a.io\"\npublic = false\n");
        assert!(m.contains("route[0].public") && m.contains("htpasswd"), "{m}");
        let mirror = "[[route]]\nregistry = \"a.io\"\n[[route.mirror]]\nurl = \"m.io\"\nusername = \"u\"\npassword = \"p\"\n";
        assert!(message(mirror).contains("route[0].public"));

        // With [auth], routes are private unless they say public.
        let config = parse(&format!(
            "[auth]\nhtpasswd = \"/etc/htpasswd\"\n{login}[[route]]\nregistry = \"b.io\"\npublic = true\n"
        ))
        .unwrap();
        assert!(!config.is_public(&config.routes[0]) && config.is_public(&config.routes[1]));
        let auth = config.auth.expect("auth");
        assert_eq!(auth.token_ttl, DEFAULT_TOKEN_TTL);
        let m = message("[auth]\nhtpasswd = \"h\"\ntoken_ttl = \"0s\"\n[[route]]\nregistry = \"a.io\"\n");
        assert!(m.starts_with("proxy.toml, auth.token_ttl:"), "{m}");
        let m = message("[auth]\nhtpasswd = \"h\"\nrealm = \"token\"\n[[route]]\nregistry = \"a.io\"\n");
        assert!(m.starts_with("proxy.toml, auth.realm:"), "{m}");
    }

    #[test]
    fn credentials_the_file_does_not_show_need_the_route_to_say_public() {
        let with = |host: &str| host == "a.io" || host == "m.io";
        let config = |text: &str| parse(text).unwrap();
        let m = config("[[route]]\nregistry = \"a.io\"\n")
            .check_hidden_credentials(with)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("route[0].public") && m.contains("a.io") && m.contains("[auth]"),
            "{m}"
        );
        // A mirror without credentials of its own is asked with the hidden ones.
        let m = config("[[route]]\nregistry = \"b.io\"\n[[route.mirror]]\nurl = \"https://m.io/hub\"\n")
            .check_hidden_credentials(with)
            .unwrap_err()
            .to_string();
        assert!(m.contains("m.io"), "{m}");
        for fine in [
            // Said public, or private behind [auth].
            "[[route]]\nregistry = \"a.io\"\npublic = true\n",
            "[auth]\nhtpasswd = \"h\"\n[[route]]\nregistry = \"a.io\"\n",
            // Nothing for its hosts; a mirror with its own; a registry never asked.
            "[[route]]\nregistry = \"b.io\"\n",
            "[[route]]\nregistry = \"b.io\"\npublic = true\n[[route.mirror]]\nurl = \"m.io\"\nusername = \"u\"\npassword = \"p\"\n",
            "[[route]]\nregistry = \"a.io\"\nmirror_only = true\n[[route.mirror]]\nurl = \"c.io\"\n",
        ] {
            config(fine).check_hidden_credentials(with).unwrap();
        }
    }

    #[test]
    fn command_line_routes() {
        let config = Config::for_registries(
            DEFAULT_LISTEN.parse().unwrap(),
            PathBuf::from("/c"),
            &["ghcr.io".into(), "index.docker.io".into()],
        )
        .unwrap();
        assert_eq!(config.routes[1].registry, "docker.io");
        assert!(config.routes[1].default && !config.routes[0].default);
        assert_eq!(config.routes[0].upstream_timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(config.server.idle_timeout, Duration::from_secs(120));
        assert_eq!(env_name("ghcr-io"), "GHCR_IO");
    }
}
