//! The user's docker `config.json`: `auths`, `credsStore`, `credHelpers`.
//!
//! Lookup order for a registry host follows docker:
//!
//! 1. `credHelpers[host]`: ask `docker-credential-<helper>`, whose answer is final;
//! 2. an `auths` entry: `identitytoken`, `registrytoken`, `auth` (base64 of
//!    `user:password`) or `username`/`password`; an entry with none of these
//!    (what `docker login` writes when a store holds the secret) falls through;
//! 3. `credsStore`: ask `docker-credential-<credsStore>`;
//! 4. nothing: anonymous.
//!
//! Docker Hub (`docker.io`, `index.docker.io`, `registry-1.docker.io`) is keyed
//! [`DOCKER_HUB_CONFIG_KEY`], and that URL is what its helper is asked for. Other
//! keys match a host after dropping any `http://`/`https://` and path, so
//! `https://ghcr.io/v1/` matches `ghcr.io`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::driver::auth::credential_helper::CredentialHelper;
use crate::driver::auth::credentials::Credentials;
use crate::error::{Error, Result};

/// The key docker uses for Docker Hub in `auths`, and the server URL its
/// credential helper is asked for.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// Host names that all mean Docker Hub.
const DOCKER_HUB_HOSTS: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Standard base64, with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials from docker's config file and credential helpers.
///
/// `Debug` lists which hosts have entries and which helpers are configured,
/// never a secret.
#[derive(Clone, Default)]
pub struct DockerConfig {
    /// Where the config was read from, if from a file.
    path: Option<PathBuf>,
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
    /// Where to look for `docker-credential-*` instead of `PATH`.
    helper_search_path: Option<PathBuf>,
}

/// One `auths` entry, secrets kept as secrets.
#[derive(Clone, Default)]
struct AuthEntry {
    auth: Option<SecretString>,
    username: Option<String>,
    password: Option<SecretString>,
    identity_token: Option<SecretString>,
    registry_token: Option<SecretString>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: Option<BTreeMap<String, Option<RawAuth>>>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, alias = "identityToken", alias = "IdentityToken")]
    identitytoken: Option<String>,
    #[serde(default, alias = "registryToken", alias = "RegistryToken")]
    registrytoken: Option<String>,
}

fn secret(value: Option<String>) -> Option<SecretString> {
    value.filter(|v| !v.is_empty()).map(SecretString::from)
}

impl From<RawAuth> for AuthEntry {
    fn from(raw: RawAuth) -> Self {
        AuthEntry {
            auth: secret(raw.auth.map(|a| a.trim().to_owned())),
            username: raw.username.filter(|u| !u.is_empty()),
            password: secret(raw.password),
            identity_token: secret(raw.identitytoken),
            registry_token: secret(raw.registrytoken),
        }
    }
}

impl AuthEntry {
    /// The names of the fields that are set, for `Debug`.
    fn kinds(&self) -> Vec<&'static str> {
        [
            (self.auth.is_some(), "auth"),
            (self.username.is_some(), "username"),
            (self.password.is_some(), "password"),
            (self.identity_token.is_some(), "identitytoken"),
            (self.registry_token.is_some(), "registrytoken"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }

    /// The credentials this entry holds; `None` when it holds none.
    fn credentials(&self, key: &str, path: Option<&Path>) -> Result<Option<Credentials>> {
        if let Some(token) = &self.identity_token {
            return Ok(Some(Credentials::IdentityToken(token.clone())));
        }
        if let Some(token) = &self.registry_token {
            return Ok(Some(Credentials::RegistryToken(token.clone())));
        }
        if let Some(auth) = &self.auth {
            let invalid = || {
                Error::InvalidConfig(format!(
                    "the \"auth\" of auths entry {key:?} in {} is not base64 of user:password",
                    describe(path)
                ))
            };
            let decoded = BASE64.decode(auth.expose_secret()).map_err(|_| invalid())?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (user, password) = decoded.split_once(':').ok_or_else(invalid)?;
            return Ok(Some(Credentials::basic(user, password)));
        }
        if self.username.is_some() || self.password.is_some() {
            return Ok(Some(Credentials::Basic {
                username: self.username.clone().unwrap_or_default(),
                password: self
                    .password
                    .clone()
                    .unwrap_or_else(|| SecretString::from(String::new())),
            }));
        }
        Ok(None)
    }
}

fn describe(path: Option<&Path>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "the docker config".to_owned(),
    }
}

/// `https://ghcr.io/v1/` → `ghcr.io`: no scheme, no path, lowercase.
fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let lower = key.to_ascii_lowercase();
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
        .unwrap_or(&lower);
    rest.split('/').next().unwrap_or_default().to_owned()
}

fn is_docker_hub(normalized: &str) -> bool {
    DOCKER_HUB_HOSTS.contains(&normalized)
}

/// The registry being looked up.
struct Target {
    /// Normalised host, e.g. `ghcr.io`.
    host: String,
    hub: bool,
    /// The exact config key and the server URL given to helpers.
    server_url: String,
}

impl Target {
    fn new(host: &str) -> Self {
        let normalized = normalize_host(host);
        let hub = is_docker_hub(&normalized);
        let server_url = if hub {
            DOCKER_HUB_CONFIG_KEY.to_owned()
        } else {
            normalized.clone()
        };
        Target {
            host: normalized,
            hub,
            server_url,
        }
    }

    fn matches(&self, key: &str) -> bool {
        let key = normalize_host(key);
        if self.hub {
            is_docker_hub(&key)
        } else {
            key == self.host
        }
    }

    /// The entry for this target: an exact key first, then a normalised match.
    fn find<'a, V>(&self, map: &'a BTreeMap<String, V>) -> Option<(&'a str, &'a V)> {
        map.get_key_value(self.server_url.as_str())
            .or_else(|| map.iter().find(|(k, _)| self.matches(k)))
            .map(|(k, v)| (k.as_str(), v))
    }
}

impl DockerConfig {
    /// Loads `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    /// A missing file (or no home) is an empty config.
    pub fn load() -> Result<Self> {
        match Self::default_path() {
            Some(path) => Self::from_path(&path),
            None => Ok(Self::default()),
        }
    }

    /// Where [`DockerConfig::load`] reads from, if anywhere.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
    }

    /// Reads a config file; a missing file is an empty config.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no docker config file");
                return Ok(DockerConfig {
                    path: Some(path.to_owned()),
                    ..Self::default()
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        Self::parse(&bytes, Some(path))
    }

    /// Parses a config file's contents.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        Self::parse(json, None)
    }

    fn parse(json: &[u8], path: Option<&Path>) -> Result<Self> {
        let mut config = DockerConfig {
            path: path.map(Path::to_owned),
            ..Self::default()
        };
        // Docker accepts an empty file.
        if json.iter().all(u8::is_ascii_whitespace) {
            return Ok(config);
        }
        let raw: RawConfig = serde_json::from_slice(json).map_err(|e| {
            // serde_json's message can quote the content; give only the position.
            let what = match e.classify() {
                serde_json::error::Category::Data => "has an unexpected structure",
                _ => "is not valid JSON",
            };
            Error::InvalidConfig(format!(
                "docker config {} {what} (line {}, column {})",
                describe(path),
                e.line(),
                e.column()
            ))
        })?;
        config.auths = raw
            .auths
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.map(AuthEntry::from).unwrap_or_default()))
            .collect();
        config.creds_store = raw.creds_store.filter(|s| !s.is_empty());
        config.cred_helpers = raw
            .cred_helpers
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, helper)| !helper.is_empty())
            .collect();
        Ok(config)
    }

    /// Looks credential helpers up in `dir` instead of on `PATH`.
    pub fn with_helper_search_path(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_search_path = Some(dir.into());
        self
    }

    /// The file this config was read from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The `credsStore` helper name.
    pub fn creds_store(&self) -> Option<&str> {
        self.creds_store.as_deref()
    }

    /// The `credHelpers` helper name that serves `host`, if any.
    pub fn cred_helper(&self, host: &str) -> Option<&str> {
        Target::new(host)
            .find(&self.cred_helpers)
            .map(|(_, helper)| helper.as_str())
    }

    /// Whether the config holds no `auths`, `credsStore` or `credHelpers`.
    pub fn is_empty(&self) -> bool {
        self.auths.is_empty() && self.creds_store.is_none() && self.cred_helpers.is_empty()
    }

    /// Whether the file itself gives credentials for `host`: a `credHelpers`
    /// entry, or an `auths` entry that holds some. No helper is run, so what a
    /// `credsStore` holds is not counted.
    pub fn names_credentials_for(&self, host: &str) -> bool {
        let target = Target::new(host);
        target.find(&self.cred_helpers).is_some()
            || target
                .find(&self.auths)
                .is_some_and(|(key, entry)| !matches!(entry.credentials(key, self.path()), Ok(None)))
    }

    /// The credentials for a registry host as written in an image reference
    /// (`docker.io`, `ghcr.io`, `localhost:5000`); `None` for anonymous access.
    pub async fn credentials_for(&self, host: &str) -> Result<Option<Credentials>> {
        let target = Target::new(host);
        if let Some((_, helper)) = target.find(&self.cred_helpers) {
            return self.helper(helper).get(&target.server_url).await;
        }
        if let Some((key, entry)) = target.find(&self.auths)
            && let Some(credentials) = entry.credentials(key, self.path())?
        {
            return Ok(Some(credentials));
        }
        if let Some(store) = &self.creds_store {
            return self.helper(store).get(&target.server_url).await;
        }
        Ok(None)
    }

    fn helper(&self, name: &str) -> CredentialHelper {
        let helper = CredentialHelper::new(name);
        match &self.helper_search_path {
            Some(dir) => helper.with_search_path(dir.clone()),
            None => helper,
        }
    }
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Auths<'a>(&'a BTreeMap<String, AuthEntry>);
        impl fmt::Debug for Auths<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, v)| (k, v.kinds())))
                    .finish()
            }
        }
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("auths", &Auths(&self.auths))
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .field("helper_search_path", &self.helper_search_path)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::auth::credential_helper::tests::{answering_helper, write_helper};
    use crate::driver::auth::credential_helper::{NOT_FOUND_MESSAGE, TOKEN_USERNAME};

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn config(json: &str) -> DockerConfig {
        DockerConfig::from_json(json.as_bytes()).unwrap()
    }

    async fn basic(config: &DockerConfig, host: &str) -> Option<(String, String)> {
        config.credentials_for(host).await.unwrap().map(|c| match c {
            Credentials::Basic { username, password } => (username, password.expose_secret().to_owned()),
            other => panic!("not basic: {other:?}"),
        })
    }

    fn pair(u: &str, p: &str) -> Option<(String, String)> {
        Some((u.to_owned(), p.to_owned()))
    }

    #[test]
    fn names_credentials_only_where_the_file_gives_some() {
        let c = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}},"https://index.docker.io/v1/":{{}}}},
                "credHelpers":{{"quay.io":"quay"}},"credsStore":"desktop"}}"#,
            b64("alice:pw")
        ));
        assert!(c.names_credentials_for("ghcr.io"));
        assert!(c.names_credentials_for("quay.io"));
        // An empty entry (what a credsStore leaves) and a host only the store might know.
        assert!(!c.names_credentials_for("docker.io"));
        assert!(!c.names_credentials_for("localhost:5000"));
    }

    #[tokio::test]
    async fn auths_base64_auth() {
        let c = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}},"quay.io":{{"auth":"{}"}}}}}}"#,
            b64("alice:pa:ss"),
            b64("bob:")
        ));
        assert_eq!(basic(&c, "ghcr.io").await, pair("alice", "pa:ss"));
        assert_eq!(basic(&c, "quay.io").await, pair("bob", ""));
        assert_eq!(basic(&c, "GHCR.io").await, pair("alice", "pa:ss"));
        assert_eq!(basic(&c, "docker.io").await, None);
        assert_eq!(basic(&c, "ghcr.io.evil.example").await, None);
    }

    #[tokio::test]
    async fn auths_unpadded_base64_and_username_password_fields() {
        let unpadded = b64("carol:pw1").trim_end_matches('=').to_owned();
        let c = config(&format!(
            r#"{{"auths":{{
                "a.example":{{"auth":"{unpadded}"}},
                "b.example":{{"username":"dave","password":"pw2"}}
            }}}}"#
        ));
        assert_eq!(basic(&c, "a.example").await, pair("carol", "pw1"));
        assert_eq!(basic(&c, "b.example").await, pair("dave", "pw2"));
    }

    #[tokio::test]
    async fn identity_and_registry_tokens() {
        let c = config(&format!(
            r#"{{"auths":{{
                "myregistry.azurecr.io":{{"auth":"{}","identitytoken":"refresh-tok"}},
                "r.example":{{"registrytoken":"bearer-tok"}}
            }}}}"#,
            b64("00000000-0000-0000-0000-000000000000:")
        ));
        let id = c.credentials_for("myregistry.azurecr.io").await.unwrap();
        assert!(
            matches!(&id, Some(Credentials::IdentityToken(t)) if t.expose_secret() == "refresh-tok"),
            "{id:?}"
        );
        let reg = c.credentials_for("r.example").await.unwrap();
        assert!(
            matches!(&reg, Some(Credentials::RegistryToken(t)) if t.expose_secret() == "bearer-tok"),
            "{reg:?}"
        );
    }

    #[tokio::test]
    async fn docker_hub_key_variants() {
        for key in [
            "https://index.docker.io/v1/",
            "https://index.docker.io/v1",
            "index.docker.io",
            "docker.io",
            "https://docker.io",
            "registry-1.docker.io",
        ] {
            let c = config(&format!(
                r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#,
                b64("hub:pw")
            ));
            for host in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
                assert_eq!(basic(&c, host).await, pair("hub", "pw"), "key {key}, host {host}");
            }
            assert_eq!(basic(&c, "ghcr.io").await, None, "key {key}");
        }
    }

    #[tokio::test]
    async fn url_form_keys_and_exact_key_wins() {
        let c = config(&format!(
            r#"{{"auths":{{
                "https://ghcr.io/v1/":{{"auth":"{}"}},
                "http://localhost:5000":{{"auth":"{}"}},
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "docker.io":{{"auth":"{}"}},
                "https://quay.io":{{"auth":"{}"}},
                "quay.io":{{"auth":"{}"}}
            }}}}"#,
            b64("g:1"),
            b64("l:2"),
            b64("hub-exact:3"),
            b64("hub-alias:4"),
            b64("q-url:5"),
            b64("q-exact:6"),
        ));
        assert_eq!(basic(&c, "ghcr.io").await, pair("g", "1"));
        assert_eq!(basic(&c, "localhost:5000").await, pair("l", "2"));
        assert_eq!(basic(&c, "localhost:5001").await, None);
        assert_eq!(basic(&c, "localhost").await, None);
        assert_eq!(basic(&c, "docker.io").await, pair("hub-exact", "3"));
        assert_eq!(basic(&c, "quay.io").await, pair("q-exact", "6"));
    }

    #[tokio::test]
    async fn cred_helpers_use_a_helper_and_win_over_auths() {
        let dir = tempfile::tempdir().unwrap();
        answering_helper(dir.path(), "fake", "ghcr.io", "helper-user", "helper-pw");
        answering_helper(dir.path(), "hub", DOCKER_HUB_CONFIG_KEY, "hub-user", "hub-pw");
        let c = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}},
                "credHelpers":{{"ghcr.io":"fake","docker.io":"hub"}}}}"#,
            b64("file-user:file-pw")
        ))
        .with_helper_search_path(dir.path());
        assert_eq!(c.cred_helper("ghcr.io"), Some("fake"));
        assert_eq!(c.cred_helper("index.docker.io"), Some("hub"));
        assert_eq!(basic(&c, "ghcr.io").await, pair("helper-user", "helper-pw"));
        // Docker Hub's helper is asked for the index URL, whatever the key.
        assert_eq!(basic(&c, "docker.io").await, pair("hub-user", "hub-pw"));
        assert_eq!(basic(&c, "quay.io").await, None);
    }

    #[tokio::test]
    async fn helper_answering_token_gives_identity_token() {
        let dir = tempfile::tempdir().unwrap();
        answering_helper(
            dir.path(),
            "tok",
            "quay.io",
            TOKEN_USERNAME,
            "refresh-from-helper",
        );
        let c = config(r#"{"credHelpers":{"https://quay.io":"tok"}}"#).with_helper_search_path(dir.path());
        let got = c.credentials_for("quay.io").await.unwrap();
        assert!(
            matches!(&got, Some(Credentials::IdentityToken(t)) if t.expose_secret() == "refresh-from-helper"),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn helper_without_credentials_is_none() {
        let dir = tempfile::tempdir().unwrap();
        write_helper(
            dir.path(),
            "empty",
            &format!("cat >/dev/null; echo '{NOT_FOUND_MESSAGE}'; exit 1"),
        );
        // As in docker, a configured helper's answer is final: no fallback to auths.
        let c = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}},"credHelpers":{{"ghcr.io":"empty"}},
                "credsStore":"empty"}}"#,
            b64("file-user:file-pw")
        ))
        .with_helper_search_path(dir.path());
        assert_eq!(basic(&c, "ghcr.io").await, None);
        assert_eq!(basic(&c, "quay.io").await, None);
    }

    #[tokio::test]
    async fn missing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(r#"{"credsStore":"desktop"}"#).with_helper_search_path(dir.path());
        let err = c.credentials_for("ghcr.io").await.unwrap_err().to_string();
        assert!(err.contains("docker-credential-desktop was not found"), "{err}");
    }

    #[tokio::test]
    async fn creds_store_fallback() {
        let dir = tempfile::tempdir().unwrap();
        answering_helper(dir.path(), "store", "ghcr.io", "store-user", "store-pw");
        answering_helper(dir.path(), "other", "nope", "x", "y");
        let c = config(&format!(
            r#"{{"auths":{{"ghcr.io":{{}},"quay.io":{{"auth":"{}"}},"https://index.docker.io/v1/":null}},
                "credsStore":"store","credHelpers":{{"other.example":""}}}}"#,
            b64("file-user:file-pw")
        ))
        .with_helper_search_path(dir.path());
        // An empty auths entry (written by `docker login` with a store) falls through.
        assert_eq!(basic(&c, "ghcr.io").await, pair("store-user", "store-pw"));
        // A real auths entry is used before the store.
        assert_eq!(basic(&c, "quay.io").await, pair("file-user", "file-pw"));
        // The store has nothing for these.
        assert_eq!(basic(&c, "docker.io").await, None);
        assert_eq!(basic(&c, "other.example").await, None);
        assert_eq!(c.creds_store(), Some("store"));
    }

    #[tokio::test]
    async fn empty_and_missing_configs() {
        assert!(config("").is_empty());
        assert!(config("  \n").is_empty());
        assert!(config("{}").is_empty());
        let c = config(r#"{"auths":null,"credsStore":"","credHelpers":null,"proxies":{}}"#);
        assert!(c.is_empty());
        assert_eq!(c.credentials_for("docker.io").await.unwrap().map(|_| ()), None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let c = DockerConfig::from_path(&path).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.path(), Some(path.as_path()));
    }

    #[tokio::test]
    async fn from_path_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#, b64("u:p")),
        )
        .unwrap();
        let c = DockerConfig::from_path(&path).unwrap();
        assert_eq!(basic(&c, "ghcr.io").await, pair("u", "p"));
    }

    #[test]
    fn malformed_json_names_the_path_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        for content in [
            format!(
                r#"{{"auths":{{"ghcr.io":{{"auth":"{}""#,
                b64("leak-user:hunter2-pw")
            ),
            r#"{"auths":"hunter2-pw"}"#.to_owned(),
            r#"{"auths":{"ghcr.io":{"auth":["hunter2-pw"]}}}"#.to_owned(),
            r#"{"auths":{"ghcr.io":{"password":hunter2-pw}}}"#.to_owned(),
        ] {
            std::fs::write(&path, &content).unwrap();
            let err = DockerConfig::from_path(&path).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(matches!(err, Error::InvalidConfig(_)), "{shown}");
            assert!(shown.contains(&path.display().to_string()), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains(&b64("leak-user:hunter2-pw")), "{shown}");
        }
        let err = DockerConfig::from_json(b"{nope").unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[tokio::test]
    async fn bad_auth_field_errors_without_secret() {
        for auth in ["not base64 hunter2!!", &b64("no-colon-hunter2")] {
            let c = config(&format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{auth}"}}}}}}"#));
            let err = c.credentials_for("ghcr.io").await.unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("ghcr.io"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains(auth), "{shown}");
        }
    }

    #[test]
    fn debug_shows_hosts_not_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = b64("alice:hunter2-pw");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"ghcr.io":{{"auth":"{auth}"}},
                    "https://index.docker.io/v1/":{{"username":"bob","password":"hunter2-pw2"}},
                    "acr.example":{{"identitytoken":"hunter2-tok"}}}},
                    "credsStore":"desktop","credHelpers":{{"gcr.io":"gcloud"}}}}"#
            ),
        )
        .unwrap();
        let c = DockerConfig::from_path(&path).unwrap();
        let shown = format!("{c:?} {c:#?}");
        for expected in [
            "ghcr.io",
            "https://index.docker.io/v1/",
            "acr.example",
            "identitytoken",
            "desktop",
            "gcr.io",
            "gcloud",
        ] {
            assert!(shown.contains(expected), "{expected} missing: {shown}");
        }
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(&auth), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("https://ghcr.io/v1/"), "ghcr.io");
        assert_eq!(normalize_host("HTTP://LocalHost:5000/x"), "localhost:5000");
        assert_eq!(normalize_host(" quay.io "), "quay.io");
        assert_eq!(normalize_host(""), "");
        assert!(Target::new("index.docker.io").hub);
        assert_eq!(Target::new("docker.io").server_url, DOCKER_HUB_CONFIG_KEY);
        assert_eq!(Target::new("localhost:5000").server_url, "localhost:5000");
    }
}
