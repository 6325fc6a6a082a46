//! containerd's registry host directories: `DIR/<host>/hosts.toml`, as read
//! by `ctr images pull --hosts-dir DIR` and CRI's `config_path`
//! (`/etc/containerd/certs.d` by convention).
//!
//! Each subdirectory configures one registry: `<host>` (`docker.io`,
//! `localhost:5000`), `<host>_<port>_` (the same with the port spelled for
//! file systems that dislike `:`; it wins over `<host>:<port>`), or
//! `_default` for any registry without a directory of its own. Its
//! `hosts.toml` lists the `[host."URL"]` entries to try, in file order, and
//! then the `server` (the registry itself when absent).
//!
//! Not supported: TLS settings other than `skip_verify` (`ca`, `client`),
//! extra `header`s, and the bare certificate files containerd reads from a
//! directory without `hosts.toml`. Each is logged, never fatal.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::toml_file::{TomlFile, toml_key};
use crate::driver::sources::{ANY_REGISTRY, Mirror, RegistrySources, Serves};
use crate::error::{Error, Result};
use crate::model::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST, check_registry};

/// The file each host directory holds.
const HOSTS_FILE: &str = "hosts.toml";

/// The directory for registries without one of their own.
const DEFAULT_DIRECTORY: &str = "_default";

/// Reads every `<host>/hosts.toml` under `dir`: one rule per registry, and
/// one for `_default` (prefix `*`: any registry without a rule of its own).
pub fn load(dir: &Path) -> Result<Vec<RegistrySources>> {
    let mut by_registry: BTreeMap<String, HostDirectory> = BTreeMap::new();
    for directory in host_directories(dir)? {
        match by_registry.entry(directory.registry.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(directory);
            }
            // containerd looks for `host_port_` before `host:port`.
            Entry::Occupied(mut slot) => {
                if directory.port_spelled_out {
                    slot.insert(directory);
                }
            }
        }
    }
    by_registry.into_values().map(|d| d.read()).collect()
}

/// A registry's directory under the hosts directory.
#[derive(Debug)]
struct HostDirectory {
    /// `host[:port]`, or [`ANY_REGISTRY`] for `_default`.
    registry: String,
    path: PathBuf,
    /// Named `host_port_` rather than `host:port`.
    port_spelled_out: bool,
}

/// The subdirectories of `dir` named after a registry (or `_default`).
fn host_directories(dir: &Path) -> Result<Vec<HostDirectory>> {
    let unreadable = |e: io::Error| file_error(dir, format!("cannot read the hosts directory: {e}"));
    let mut directories = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        // `metadata` follows symlinks: a linked host directory counts.
        if !fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        match path.file_name().and_then(|n| n.to_str()).map(registry_named) {
            Some(Ok((registry, port_spelled_out))) => directories.push(HostDirectory {
                registry,
                path,
                port_spelled_out,
            }),
            Some(Err(reason)) => tracing::warn!(
                dir = %path.display(),
                "ignoring a directory that names no registry: {reason}"
            ),
            None => tracing::warn!(dir = %path.display(), "ignoring a directory whose name is not UTF-8"),
        }
    }
    Ok(directories)
}

/// The registry a directory configures, and whether its port is spelled
/// `_port_`: `localhost_5000_` and `localhost:5000` both mean `localhost:5000`.
fn registry_named(name: &str) -> Result<(String, bool), String> {
    if name == DEFAULT_DIRECTORY {
        return Ok((ANY_REGISTRY.to_owned(), false));
    }
    let spelled_out = name
        .strip_suffix('_')
        .and_then(|rest| rest.rsplit_once('_'))
        .filter(|(host, port)| {
            !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        });
    let (registry, port_spelled_out) = match spelled_out {
        Some((host, port)) => (format!("{host}:{port}"), true),
        None => (name.to_owned(), false),
    };
    check_registry(&registry)?;
    Ok((registry, port_spelled_out))
}

impl HostDirectory {
    /// The rule its `hosts.toml` describes.
    fn read(self) -> Result<RegistrySources> {
        let file = self.path.join(HOSTS_FILE);
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(self.without_hosts_file()),
            Err(e) => return Err(file_error(&file, format!("cannot read: {e}"))),
        };
        let endpoints: Endpoints = TomlFile::new(&file, &text).deserialize()?;
        // The top level holds the server's settings beside `server` and `host`.
        let server_settings: HostSettings = TomlFile::new(&file, &text).deserialize()?;
        Ok(rule(&self.registry, &file, endpoints, &server_settings))
    }

    /// containerd still picks this directory for the registry (so neither
    /// `_default` nor a `host:port` twin applies) and reads the certificate
    /// files in it; without those, that is the registry itself.
    fn without_hosts_file(self) -> RegistrySources {
        tracing::debug!(
            dir = %self.path.display(),
            "no {HOSTS_FILE}: using the registry itself; \
             certificate files here are not read (TLS uses the system roots)"
        );
        RegistrySources::new(self.registry).with_origin(self.path.display().to_string())
    }
}

/// Where a `hosts.toml` sends requests: `[host."URL"]` entries in file
/// order, then `server`.
#[derive(Debug, Deserialize)]
struct Endpoints {
    server: Option<HostUrl>,
    #[serde(default, deserialize_with = "in_file_order")]
    host: Vec<(HostUrl, HostSettings)>,
}

/// The settings of one host (or, at the top level, of the server).
#[derive(Debug, Deserialize)]
struct HostSettings {
    capabilities: Option<Vec<Capability>>,
    skip_verify: Option<bool>,
    #[serde(default)]
    override_path: bool,
    // Only their presence matters: they are not supported.
    ca: Option<IgnoredAny>,
    client: Option<IgnoredAny>,
    header: Option<IgnoredAny>,
}

/// The `[host."URL"]` tables as written: containerd tries them in file order.
fn in_file_order<'de, D>(deserializer: D) -> Result<Vec<(HostUrl, HostSettings)>, D::Error>
where
    D: Deserializer<'de>,
{
    struct InFileOrder;

    impl<'de> Visitor<'de> for InFileOrder {
        type Value = Vec<(HostUrl, HostSettings)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of host URLs")
        }

        // `toml` with `preserve_order` hands the tables over in file order.
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut hosts = Vec::new();
            while let Some(host) = map.next_entry()? {
                hosts.push(host);
            }
            Ok(hosts)
        }
    }

    deserializer.deserialize_map(InFileOrder)
}

/// What a host may do, as containerd names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capability {
    Pull,
    Resolve,
    Push,
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CapabilityName;

        impl Visitor<'_> for CapabilityName {
            type Value = Capability;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a capability: pull, resolve or push")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Capability, E> {
                match name.to_lowercase().as_str() {
                    "pull" => Ok(Capability::Pull),
                    "resolve" => Ok(Capability::Resolve),
                    "push" => Ok(Capability::Push),
                    _ => Err(E::custom(format!(
                        "unknown capability {name:?} (expected pull, resolve or push)"
                    ))),
                }
            }
        }

        deserializer.deserialize_str(CapabilityName)
    }
}

impl HostSettings {
    /// What a pull may ask of this host: containerd resolves tags only
    /// where it may `resolve`, and fetches content only where it may `pull`.
    /// `None`: it serves no pull.
    fn serves(&self) -> Option<Serves> {
        // No list, or an empty one, allows everything.
        let allows = |wanted| match self.capabilities.as_deref() {
            None | Some([]) => true,
            Some(list) => list.contains(&wanted),
        };
        match (allows(Capability::Pull), allows(Capability::Resolve)) {
            (true, true) => Some(Serves::All),
            (true, false) => Some(Serves::Content),
            (false, _) => None,
        }
    }

    /// Whether `url` needs plain HTTP or unverified TLS: containerd uses
    /// the scheme given, while our transport refuses plain HTTP to hosts
    /// not marked insecure.
    fn insecure_for(&self, url: &HostUrl) -> bool {
        self.skip_verify == Some(true) || url.is_plain_http()
    }

    /// The host at `url` with these settings, serving `serves`.
    fn endpoint(&self, url: &HostUrl, serves: Serves) -> Mirror {
        Mirror::api_url(url.api_url(self.override_path))
            .serves(serves)
            // containerd adds `?ns=` for any host other than the image's registry.
            .send_namespace(true)
            .insecure(self.insecure_for(url))
    }

    /// Logs the settings this client ignores. `table` is the key of the
    /// table they are in (`host."…"`), `None` at the top level.
    fn warn_unsupported(&self, file: &Path, table: Option<&str>) {
        let key = |name: &str| match table {
            Some(table) => format!("{table}.{name}"),
            None => name.to_owned(),
        };
        let ignored = [
            (
                self.ca.is_some(),
                "ca",
                "custom CA certificates are not supported; TLS uses the system roots",
            ),
            (
                self.client.is_some(),
                "client",
                "TLS client certificates are not supported; none is sent (TLS uses the system roots)",
            ),
            (
                self.header.is_some(),
                "header",
                "extra headers are not supported; the header is not sent",
            ),
        ];
        for (present, name, consequence) in ignored {
            if present {
                tracing::warn!(file = %file.display(), key = %key(name), "{consequence}");
            }
        }
    }
}

/// A host's URL as written in `hosts.toml`, checked and cleaned.
#[derive(Debug, Clone)]
struct HostUrl {
    written: String,
    /// `http` or `https`.
    scheme: String,
    /// `host[:port]`.
    authority: String,
    /// Cleaned: empty, or `/a/b` without a trailing `/`.
    path: String,
}

impl HostUrl {
    fn parse(written: &str) -> Result<HostUrl, String> {
        // containerd prepends `https://` when the URL does not start with
        // `http`; asking for a scheme separator instead keeps a host named
        // `http…` (say `httpbin.org`) working.
        let with_scheme = if written.contains("://") {
            written.to_owned()
        } else {
            format!("https://{written}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| format!("invalid host URL {written:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("host URL {written:?}: the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("host URL {written:?} names no host"));
        }
        // As containerd, only the scheme, host, port and path are used.
        let authority = url[url::Position::BeforeHost..url::Position::AfterPort].to_owned();
        Ok(HostUrl {
            written: written.to_owned(),
            scheme: url.scheme().to_owned(),
            authority,
            path: clean_path(url.path()),
        })
    }

    /// The URL the registry API answers at: the path as written with
    /// `override_path`, else the path with `/v2` added unless it ends so.
    fn api_url(&self, override_path: bool) -> String {
        let path = if override_path || self.path.ends_with("/v2") {
            self.path.clone()
        } else {
            format!("{}/v2", self.path)
        };
        format!("{}://{}{path}", self.scheme, self.authority)
    }

    fn is_plain_http(&self) -> bool {
        self.scheme == "http"
    }

    /// The key of its `[host."…"]` table, for messages.
    fn table_key(&self) -> String {
        format!("host.{}", toml_key(&self.written))
    }
}

impl<'de> Deserialize<'de> for HostUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HostUrlText;

        impl Visitor<'_> for HostUrlText {
            type Value = HostUrl;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a host URL")
            }

            fn visit_str<E: de::Error>(self, written: &str) -> Result<HostUrl, E> {
                HostUrl::parse(written).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(HostUrlText)
    }
}

/// `path.Clean` for a URL path whose dot segments are already resolved:
/// no empty segments, no trailing `/`. A bare `/` is no path at all (where
/// containerd would make it `//v2`).
fn clean_path(path: &str) -> String {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| format!("/{segment}"))
        .collect()
}

/// The rule for `registry` that a parsed `hosts.toml` describes.
fn rule(
    registry: &str,
    file: &Path,
    endpoints: Endpoints,
    server_settings: &HostSettings,
) -> RegistrySources {
    let mut rule = RegistrySources::new(registry);
    for (url, settings) in &endpoints.host {
        let key = url.table_key();
        settings.warn_unsupported(file, Some(&key));
        match settings.serves() {
            Some(serves) => rule = rule.mirror(settings.endpoint(url, serves)),
            None => tracing::debug!(
                file = %file.display(),
                key,
                "leaving out a host without the pull capability: it serves no pulls"
            ),
        }
    }
    server_settings.warn_unsupported(file, None);
    let rule = match &endpoints.server {
        Some(server) => with_server(rule, registry, server, server_settings, file),
        None => with_registry_itself(rule, server_settings, file),
    };
    rule.with_origin(file.display().to_string())
}

/// No `server`: the registry itself comes last. containerd gives it every
/// capability then, whatever the top-level `capabilities` say.
fn with_registry_itself(rule: RegistrySources, settings: &HostSettings, file: &Path) -> RegistrySources {
    if settings.capabilities.is_some() {
        tracing::warn!(
            file = %file.display(),
            key = "capabilities",
            "ignored without `server`: the registry itself serves everything, as in containerd"
        );
    }
    rule.insecure(settings.skip_verify == Some(true))
}

/// A `server`: the registry itself if it is containerd's default for the
/// registry, else where the registry's requests go.
fn with_server(
    rule: RegistrySources,
    registry: &str,
    server: &HostUrl,
    settings: &HostSettings,
    file: &Path,
) -> RegistrySources {
    match settings.serves() {
        None => {
            tracing::debug!(
                file = %file.display(),
                key = "server",
                "the server lacks the pull capability: only the hosts are used"
            );
            rule.mirror_only()
        }
        Some(Serves::All) if is_default_server(server, settings.override_path, registry) => {
            rule.insecure(settings.skip_verify == Some(true))
        }
        Some(Serves::All) => rule.location(settings.endpoint(server, Serves::All)),
        // A server that may not resolve tags serves content only: a
        // content-only source, and the registry nowhere else.
        Some(serves) => rule.mirror(settings.endpoint(server, serves)).mirror_only(),
    }
}

/// Whether `server` is where containerd sends `registry`'s requests without
/// one: `https://registry-1.docker.io/v2` for Docker Hub, else
/// `https://<registry>/v2`. Unknown for `_default`, whose registry varies.
fn is_default_server(server: &HostUrl, override_path: bool, registry: &str) -> bool {
    if registry == ANY_REGISTRY {
        return false;
    }
    let default_host = if registry == DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        registry
    };
    HostUrl::parse(default_host).is_ok_and(|default| default.api_url(false) == server.api_url(override_path))
}

/// A problem with `path` as a whole.
fn file_error(path: &Path, message: String) -> Error {
    Error::ConfigFile {
        path: path.to_owned(),
        line: None,
        key: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use super::*;
    use crate::model::reference::ImageReference;
    use crate::portable::client::RepositoryClient;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A hosts directory with `hosts.toml` files (`Some`) or empty
    /// subdirectories (`None`).
    fn hosts_dir(directories: &[(&str, Option<&str>)]) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, hosts_toml) in directories {
            let host = dir.path().join(name);
            fs::create_dir(&host).unwrap();
            if let Some(text) = hosts_toml {
                fs::write(host.join(HOSTS_FILE), text).unwrap();
            }
        }
        dir
    }

    fn client(dir: &TempDir) -> RepositoryClient {
        RepositoryClient::builder("oci")
            .hosts_dir(dir.path())
            .build()
            .unwrap()
    }

    fn sources(dir: &TempDir, reference: &str) -> Vec<String> {
        client(dir)
            .sources_for(&ImageReference::parse(reference).unwrap())
            .unwrap()
    }

    /// The only rule `load` reads from a directory holding `registry/hosts.toml`.
    fn only_rule(registry: &str, hosts_toml: &str) -> RegistrySources {
        let dir = hosts_dir(&[(registry, Some(hosts_toml))]);
        let mut rules = load(dir.path()).unwrap();
        assert_eq!(rules.len(), 1);
        rules.remove(0)
    }

    /// The message `load` fails with for `docker.io/hosts.toml`.
    fn load_error(hosts_toml: &str) -> String {
        let dir = hosts_dir(&[("docker.io", Some(hosts_toml))]);
        load(dir.path()).unwrap_err().to_string()
    }

    fn serving(rule: &RegistrySources) -> Vec<Serves> {
        rule.mirrors().iter().map(Mirror::serving).collect()
    }

    #[test]
    fn docker_hub_example_tries_hosts_in_file_order_then_the_registry() {
        // containerd's docs/hosts.md example for docker.io.
        let example = r#"
server = "https://registry-1.docker.io"    # Exclude this to not use upstream

[host."https://public-mirror.example.com"]
  capabilities = ["pull"]                  # Requires less trust, won't resolve tag to digest from this host
[host."https://docker-mirror.internal"]
  capabilities = ["pull", "resolve"]
  ca = "docker-mirror.crt"
"#;
        let dir = hosts_dir(&[("docker.io", Some(example))]);
        let expected = ["public-mirror.example.com", "docker-mirror.internal", "docker.io"];
        assert_eq!(sources(&dir, "alpine:3.20"), expected);
        assert_eq!(sources(&dir, &format!("library/alpine@{DIGEST}")), expected);

        let rule = only_rule("docker.io", example);
        assert_eq!(rule.prefix(), "docker.io");
        assert_eq!(serving(&rule), [Serves::Content, Serves::All]);
        assert!(rule.uses_registry());
        assert!(
            rule.mirrors()
                .iter()
                .all(|m| m.send_namespace && !m.is_insecure())
        );
        let origin = rule.origin.as_deref().unwrap();
        assert!(origin.ends_with("docker.io/hosts.toml"), "{origin}");
    }

    #[test]
    fn many_hosts_keep_file_order() {
        let names = ["zeta", "alpha", "mike", "bravo", "yankee"];
        let text: String = names
            .iter()
            .map(|n| format!("[host.\"https://{n}.example.com\"]\n"))
            .collect();
        let expected: Vec<String> = names
            .iter()
            .map(|n| format!("{n}.example.com"))
            .chain(["ghcr.io".to_owned()])
            .collect();
        let dir = hosts_dir(&[("ghcr.io", Some(&text))]);
        assert_eq!(sources(&dir, "ghcr.io/org/app:1"), expected);
    }

    #[test]
    fn port_directories_spelled_with_underscores_win() {
        let spelled = r#"[host."http://127.0.0.1:5001"]"#;
        let colon = r#"[host."http://127.0.0.1:5002"]"#;
        let both = hosts_dir(&[
            ("localhost_5000_", Some(spelled)),
            ("localhost:5000", Some(colon)),
        ]);
        let rules = load(both.path()).unwrap();
        assert_eq!(rules.len(), 1, "one rule per registry");
        assert_eq!(rules[0].prefix(), "localhost:5000");
        assert_eq!(
            sources(&both, "localhost:5000/app:1"),
            ["127.0.0.1:5001", "localhost:5000"]
        );

        let colon_only = hosts_dir(&[("localhost:5000", Some(colon))]);
        assert_eq!(
            sources(&colon_only, "localhost:5000/app:1"),
            ["127.0.0.1:5002", "localhost:5000"]
        );
        let spelled_only = hosts_dir(&[("localhost_5000_", Some(spelled))]);
        assert_eq!(
            sources(&spelled_only, "localhost:5000/app:1"),
            ["127.0.0.1:5001", "localhost:5000"]
        );
        // The directory is for that port only.
        assert_eq!(sources(&spelled_only, "localhost/app:1"), ["localhost"]);
    }

    #[test]
    fn default_directory_serves_registries_without_their_own() {
        let dir = hosts_dir(&[
            ("_default", Some(r#"[host."https://cache.example.com"]"#)),
            ("ghcr.io", Some(r#"[host."https://ghcr-mirror.example.com"]"#)),
            // containerd picks this directory for gcr.io (its certificate
            // files), so `_default` does not apply there either.
            ("gcr.io", None),
        ]);
        assert_eq!(
            sources(&dir, "quay.io/org/app:1"),
            ["cache.example.com", "quay.io"]
        );
        assert_eq!(
            sources(&dir, "ghcr.io/org/app:1"),
            ["ghcr-mirror.example.com", "ghcr.io"]
        );
        assert_eq!(sources(&dir, "gcr.io/org/app:1"), ["gcr.io"]);
        let prefixes: Vec<String> = load(dir.path())
            .unwrap()
            .iter()
            .map(|r| r.prefix().to_owned())
            .collect();
        assert_eq!(prefixes, [ANY_REGISTRY, "gcr.io", "ghcr.io"]);
    }

    #[test]
    fn v2_is_appended_unless_the_path_is_overridden() {
        let text = r#"
[host."https://a.example.com/v2/hub"]
  override_path = true
[host."https://b.example.com/hub"]
[host."c.example.com:5000"]
[host."https://d.example.com/v2/"]
[host."https://e.example.com"]
  override_path = true
[host."https://f.example.com//cache/./x/../y/"]
"#;
        let rule = only_rule("ghcr.io", text);
        let api_urls: Vec<&str> = rule.mirrors().iter().map(Mirror::location).collect();
        assert_eq!(
            api_urls,
            [
                "https://a.example.com/v2/hub",
                "https://b.example.com/hub/v2",
                "https://c.example.com:5000/v2",
                "https://d.example.com/v2",
                "https://e.example.com",
                "https://f.example.com/cache/y/v2",
            ]
        );
        assert!(rule.mirrors().iter().all(|m| m.api_url));
        let dir = hosts_dir(&[("ghcr.io", Some(text))]);
        assert_eq!(
            sources(&dir, "ghcr.io/org/app:1"),
            [
                "a.example.com/v2/hub",
                "b.example.com/hub",
                "c.example.com:5000",
                "d.example.com",
                "e.example.com",
                "f.example.com/cache/y",
                "ghcr.io"
            ]
        );
    }

    #[test]
    fn capabilities_decide_what_a_host_serves() {
        let text = r#"
[host."https://content.example.com"]
  capabilities = ["pull"]
[host."https://resolve-only.example.com"]
  capabilities = ["resolve"]
[host."https://push-only.example.com"]
  capabilities = ["push"]
[host."https://shouting.example.com"]
  capabilities = ["PULL", "Resolve"]
[host."https://empty.example.com"]
  capabilities = []
"#;
        let rule = only_rule("docker.io", text);
        assert_eq!(serving(&rule), [Serves::Content, Serves::All, Serves::All]);
        let dir = hosts_dir(&[("docker.io", Some(text))]);
        let expected = [
            "content.example.com",
            "shouting.example.com",
            "empty.example.com",
            "docker.io",
        ];
        // Content-only hosts are listed for both; requests for a tag skip them.
        assert_eq!(sources(&dir, "alpine:3.20"), expected);
        assert_eq!(sources(&dir, &format!("alpine@{DIGEST}")), expected);
    }

    #[test]
    fn a_server_other_than_the_default_is_where_the_registry_moved() {
        let moved = r#"server = "https://internal.example.com:5000""#;
        let dir = hosts_dir(&[("ghcr.io", Some(moved))]);
        assert_eq!(sources(&dir, "ghcr.io/org/app:1"), ["internal.example.com:5000"]);

        // Spelled differently, still the default: the registry itself.
        for server in ["ghcr.io", "https://ghcr.io/v2/", "ghcr.io:443"] {
            let dir = hosts_dir(&[("ghcr.io", Some(&format!("server = {server:?}")))]);
            assert_eq!(sources(&dir, "ghcr.io/org/app:1"), ["ghcr.io"], "{server}");
        }

        let no_pull = r#"
server = "https://internal.example.com"
capabilities = ["resolve"]
[host."https://cache.example.com"]
"#;
        let rule = only_rule("ghcr.io", no_pull);
        assert!(!rule.uses_registry());
        let dir = hosts_dir(&[("ghcr.io", Some(no_pull))]);
        assert_eq!(sources(&dir, "ghcr.io/org/app:1"), ["cache.example.com"]);

        let content_only = "server = \"https://internal.example.com\"\ncapabilities = [\"pull\"]";
        let rule = only_rule("ghcr.io", content_only);
        assert!(!rule.uses_registry());
        assert_eq!(serving(&rule), [Serves::Content]);

        // Without `server`, containerd gives the registry every capability.
        let rule = only_rule("ghcr.io", r#"capabilities = ["resolve"]"#);
        assert!(rule.uses_registry() && rule.mirrors().is_empty());
    }

    #[test]
    fn plain_http_and_skip_verify_allow_insecure_hosts() {
        let text = r#"
server = "http://registry.lan:5000"
[host."http://mirror.lan:5000"]
[host."https://self-signed.lan"]
  skip_verify = true
[host."https://verified.lan"]
  skip_verify = false
"#;
        let rule = only_rule("docker.io", text);
        let insecure: Vec<bool> = rule.mirrors().iter().map(Mirror::is_insecure).collect();
        assert_eq!(insecure, [true, true, false]);
        assert!(
            matches!(&rule.registry, crate::driver::sources::RegistryTarget::Moved(m) if m.is_insecure()),
            "the moved registry may use plain HTTP"
        );
        let dir = hosts_dir(&[("docker.io", Some(text))]);
        assert_eq!(
            sources(&dir, "alpine:3.20"),
            [
                "mirror.lan:5000",
                "self-signed.lan",
                "verified.lan",
                "registry.lan:5000"
            ]
        );

        let rule = only_rule("registry.lan", "skip_verify = true");
        assert!(rule.insecure && rule.mirrors().is_empty());
    }

    #[test]
    fn unsupported_and_unknown_keys_are_not_fatal() {
        let text = r#"
ca = "/etc/ssl/registry.pem"
dial_timeout = "5s"
something_new = 1
[host."https://mirror.example.com"]
  ca = ["a.crt", "b.crt"]
  client = [["client.cert", "client.key"]]
  [host."https://mirror.example.com".header]
    x-custom = "1"
"#;
        let rule = only_rule("docker.io", text);
        assert_eq!(rule.mirrors().len(), 1);
        assert!(rule.uses_registry());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let message = load_error("\n[host.\"https://m.example.com\"]\ncapabilities = [\"pull\"\n");
        assert!(message.contains("docker.io/hosts.toml, line 3: "), "{message}");
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        let message = load_error("[host.\"https://m.example.com\"]\n  capabilities = \"pull\"\n");
        assert!(
            message
                .contains(r#"hosts.toml, line 2, host."https://m.example.com".capabilities: invalid type"#),
            "{message}"
        );
        let message = load_error("\n\nskip_verify = \"yes\"\n");
        assert!(
            message.contains("hosts.toml, line 3, skip_verify: invalid type"),
            "{message}"
        );
        let message = load_error("server = 5000\n");
        assert!(message.contains("line 1, server: invalid type"), "{message}");
    }

    #[test]
    fn unknown_capabilities_are_errors() {
        let message = load_error("[host.\"https://m.example.com\"]\ncapabilities = [\"pull\", \"fetch\"]\n");
        assert!(
            message.contains(
                r#"line 2, host."https://m.example.com".capabilities[1]: unknown capability "fetch""#
            ),
            "{message}"
        );
    }

    #[test]
    fn bad_urls_are_errors() {
        let message = load_error("\n[host.\"ftp://m.example.com\"]\n");
        assert!(
            message.contains(r#"line 2, host."ftp://m.example.com": "#)
                && message.contains("the scheme must be http or https"),
            "{message}"
        );
        let message = load_error("server = \"https://\"\n");
        assert!(message.contains("line 1, server: "), "{message}");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("certs.d");
        let message = load(&missing).unwrap_err().to_string();
        assert!(message.starts_with(&missing.display().to_string()), "{message}");
        assert!(message.contains("cannot read the hosts directory"), "{message}");
    }

    #[test]
    fn stray_files_and_directories_are_ignored() {
        let dir = hosts_dir(&[("Not A Host!", Some("server = \"https://x.example.com\""))]);
        fs::write(dir.path().join("README"), "notes").unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
    }
}
