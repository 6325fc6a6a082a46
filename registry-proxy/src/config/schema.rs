//! The file as written: its TOML schema, and how each table becomes settings
//! (durations and sizes parsed, logins taken from the environment). Errors
//! are a key and a message, for the reader to place in the file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use registry_client::Credentials;
use registry_client::model::reference::DOCKER_HUB;
use serde::Deserialize;

use super::settings::{
    AuthConfig, Config, DEFAULT_LISTEN, DEFAULT_TOKEN_TTL, RouteConfig, S3Config, ServerConfig,
    UpstreamConfig, credentials_from_env,
};
use super::validation::check_name;
use crate::error::Error;

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
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
    pub(super) fn into_config(self, default_storage: PathBuf) -> Result<Config, (String, String)> {
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

/// An error's text without the variant's prefix (for a key's message).
fn plain(error: Error) -> String {
    match error {
        Error::Invalid(message) => message,
        other => other.to_string(),
    }
}
