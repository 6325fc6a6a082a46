//! The rules users write: a registry (or a namespace in it, or `*.domain`),
//! its mirrors in order, and whether the registry itself is used.

use std::fmt;

use crate::driver::abstract_registry::ProviderConfig;
use crate::driver::auth::credentials::Credentials;
use crate::driver::transport::circuit::CircuitBreakerConfig;
use crate::driver::transport::retry::RetryConfig;
use crate::model::reference::{check_registry, check_repository_path};

/// Which pulls and requests a mirror may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Serves {
    /// Pulls by tag and by digest (podman's `all`, containerd's `["pull", "resolve"]`).
    #[default]
    All,
    /// Only images pulled by digest (podman's `digest-only`): a pull by tag
    /// does not use the mirror at all, so a tag never resolves there.
    DigestPulls,
    /// Only images pulled by tag (podman's `tag-only`).
    TagPulls,
    /// Content by digest in any pull, never a tag (containerd's `["pull"]`):
    /// a tag is resolved elsewhere, then manifests by digest and blobs are
    /// asked of this mirror first, as containerd does.
    Content,
}

impl Serves {
    /// Whether a pull of a reference by digest (`by_digest`) or by tag may use it.
    pub(crate) fn serves_pull(self, by_digest: bool) -> bool {
        match self {
            Serves::All | Serves::Content => true,
            Serves::DigestPulls => by_digest,
            Serves::TagPulls => !by_digest,
        }
    }

    /// Why a pull does not use it (for events and errors).
    pub(crate) fn exclusion(self) -> &'static str {
        match self {
            Serves::DigestPulls => "it serves pulls by digest only",
            Serves::TagPulls => "it serves pulls by tag only",
            Serves::Content => "it serves content by digest only, not tags",
            Serves::All => "it serves everything",
        }
    }
}

/// A mirror of a registry: where it is, how to authenticate, what it may serve.
///
/// ```
/// use registry_client::{Mirror, Serves};
/// use registry_client::Credentials;
///
/// // `/v2/hub/library/alpine/…` on the mirror for `docker.io/library/alpine`.
/// let mirror = Mirror::new("https://mirror.example.com/hub")
///     .credentials(Credentials::basic("puller", "s3cret"))
///     .serves(Serves::DigestPulls);
/// ```
#[derive(Clone)]
pub struct Mirror {
    pub(crate) location: String,
    pub(crate) api_url: bool,
    pub(crate) path_prefix: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) config: ProviderConfig,
    pub(crate) insecure: bool,
    pub(crate) serves: Serves,
    pub(crate) send_namespace: bool,
    pub(crate) retry: Option<RetryConfig>,
    pub(crate) circuit_breaker: Option<CircuitBreakerConfig>,
}

/// Credentials and option values stay out of sight ([`ProviderConfig`]'s `Debug`).
impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("location", &self.location)
            .field("api_url", &self.api_url)
            .field("path_prefix", &self.path_prefix)
            .field("provider", &self.provider)
            .field("config", &self.config)
            .field("insecure", &self.insecure)
            .field("serves", &self.serves)
            .field("send_namespace", &self.send_namespace)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// A mirror at `[scheme://]host[:port][/path]`. A path is a namespace in
    /// front of the repository, as in podman's `location`: `mirror/hub` serves
    /// `docker.io/library/alpine` at `/v2/hub/library/alpine/…`. Without a
    /// scheme, HTTPS, or plain HTTP for loopback and insecure mirrors.
    pub fn new(location: impl Into<String>) -> Self {
        Mirror {
            location: location.into(),
            api_url: false,
            path_prefix: None,
            provider: None,
            config: ProviderConfig::default(),
            insecure: false,
            serves: Serves::All,
            send_namespace: false,
            retry: None,
            circuit_breaker: None,
        }
    }

    /// A mirror whose API is at `url` rather than at `<host>/v2/`: requests
    /// go to `<url>/<repository>/manifests/…`, and the token scope names the
    /// repository alone (containerd's host URLs, e.g. with `override_path`).
    pub fn api_url(url: impl Into<String>) -> Self {
        Mirror {
            api_url: true,
            ..Mirror::new(url)
        }
    }

    /// A namespace in front of the repository on the mirror (added to any path
    /// in the location): `hub` makes `library/alpine` `hub/library/alpine`.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Credentials for this mirror alone. Without them, the mirror's provider
    /// finds its own (the `oci` provider reads docker's `config.json` for the
    /// mirror's host). The registry's credentials are never sent to a mirror.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.config.credentials = Some(credentials);
        self
    }

    /// The provider that authenticates to the mirror (`aws`, `gcp`, …);
    /// default: the one that serves the mirror's host.
    pub fn provider(mut self, id: impl Into<String>) -> Self {
        self.provider = Some(id.into());
        self
    }

    /// The cloud region, for providers that need one.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config.region = Some(region.into());
        self
    }

    /// A provider-specific setting for the mirror's provider.
    pub fn option(mut self, key: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.config.options.insert(key.as_ref().to_owned(), value.into());
        self
    }

    /// Allows plain HTTP and unverified TLS for this mirror.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// What the mirror may serve (default: everything).
    pub fn serves(mut self, serves: Serves) -> Self {
        self.serves = serves;
        self
    }

    /// Adds `?ns=<registry>` to every request, as containerd does when a
    /// mirror's host differs from the image's registry (a pull-through cache
    /// routes on it).
    pub fn send_namespace(mut self, send: bool) -> Self {
        self.send_namespace = send;
        self
    }

    /// Retries for the last source a request may use (default: the
    /// client's). A source with others after it moves on at once instead.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The mirror's own circuit breaker (default: the client's settings).
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.circuit_breaker = Some(config);
        self
    }
}

/// The sources of one registry, or of a namespace in it: mirrors in order,
/// then the registry itself (which may be moved elsewhere, or left out).
///
/// ```
/// use registry_client::{Mirror, RegistrySources};
///
/// let docker_hub = RegistrySources::new("docker.io")
///     .mirror(Mirror::new("registry.internal:5000"))
///     .mirror(Mirror::new("https://mirror.example.com/hub"));
/// let internal_only = RegistrySources::new("quay.io")
///     .mirror(Mirror::new("registry.internal:5000/quay"))
///     .mirror_only();
/// ```
#[derive(Debug, Clone)]
pub struct RegistrySources {
    pub(crate) prefix: String,
    pub(crate) mirrors: Vec<Mirror>,
    pub(crate) registry: RegistryTarget,
    pub(crate) insecure: bool,
    pub(crate) blocked: bool,
    /// Where the rule was read from (a file), for messages.
    pub(crate) origin: Option<String>,
}

/// Where the registry's own requests go after its mirrors.
#[derive(Debug, Clone)]
pub(crate) enum RegistryTarget {
    /// The registry's own endpoint, with the client's provider.
    Itself,
    /// Somewhere else (podman's `location`, containerd's `server`), with the
    /// client's provider asked about that host.
    Moved(Box<Mirror>),
    /// Nowhere: mirrors only.
    Off,
}

impl RegistrySources {
    /// Sources for images whose name starts with `prefix`: a registry
    /// (`docker.io`, `localhost:5000`), a namespace in one
    /// (`docker.io/library`), or every subdomain of a domain
    /// (`*.example.com`). The longest matching prefix wins.
    pub fn new(prefix: impl Into<String>) -> Self {
        RegistrySources {
            prefix: prefix.into(),
            mirrors: Vec::new(),
            registry: RegistryTarget::Itself,
            insecure: false,
            blocked: false,
            origin: None,
        }
    }

    /// Adds a mirror after those already added.
    pub fn mirror(mut self, mirror: Mirror) -> Self {
        self.mirrors.push(mirror);
        self
    }

    /// Never falls back to the registry itself.
    pub fn mirror_only(mut self) -> Self {
        self.registry = RegistryTarget::Off;
        self
    }

    /// Sends the registry's own requests to `location` instead
    /// (`host[:port][/namespace]`, like podman's `location`).
    pub fn location(mut self, location: Mirror) -> Self {
        self.registry = RegistryTarget::Moved(Box::new(location));
        self
    }

    /// Allows plain HTTP and unverified TLS for the registry itself.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Refuses every pull of a matching image.
    pub fn blocked(mut self, blocked: bool) -> Self {
        self.blocked = blocked;
        self
    }

    /// The prefix this rule matches.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The mirrors, in order.
    pub fn mirrors(&self) -> &[Mirror] {
        &self.mirrors
    }

    /// Whether the registry itself is tried after the mirrors.
    pub fn uses_registry(&self) -> bool {
        !matches!(self.registry, RegistryTarget::Off)
    }

    /// Whether pulls of matching images are refused.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    pub(crate) fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }
}

impl Mirror {
    /// Where the mirror is, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// What the mirror may serve.
    pub fn serving(&self) -> Serves {
        self.serves
    }

    /// Whether plain HTTP and unverified TLS are allowed.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }
}

/// What a rule's prefix matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// A registry, or a namespace in it (`docker.io/library`).
    Name { registry: String, path: Option<String> },
    /// Every subdomain of a domain (`*.example.com`; stored as `.example.com`).
    Subdomains(String),
    /// Any registry without a rule of its own (containerd's `_default`).
    Any,
}

/// The prefix that [`RegistrySources::new`] takes for containerd's `_default`.
pub(crate) const ANY_REGISTRY: &str = "*";

impl Prefix {
    pub(crate) fn parse(prefix: &str) -> Result<Prefix, String> {
        if prefix == ANY_REGISTRY {
            return Ok(Prefix::Any);
        }
        if let Some(domain) = prefix.strip_prefix("*.") {
            check_registry(domain)?;
            if domain.contains([':', '/']) {
                return Err(format!(
                    "prefix {prefix:?}: a wildcard prefix is a domain only (no port, no path)"
                ));
            }
            return Ok(Prefix::Subdomains(format!(".{domain}")));
        }
        if prefix.contains(['@', '*']) || prefix.split('/').skip(1).any(|c| c.contains(':')) {
            return Err(format!(
                "prefix {prefix:?}: a tag, digest or wildcard is not supported here \
                 (expected host[:port][/namespace…] or *.domain)"
            ));
        }
        let (registry, path) = match prefix.split_once('/') {
            Some((registry, path)) => (registry, Some(path)),
            None => (prefix, None),
        };
        check_registry(registry).map_err(|e| format!("prefix {prefix:?}: {e}"))?;
        if let Some(path) = path {
            check_repository_path(path).map_err(|e| format!("prefix {prefix:?}: {e}"))?;
        }
        Ok(Prefix::Name {
            registry: registry.to_owned(),
            path: path.map(str::to_owned),
        })
    }

    /// How much of `registry/repository` this prefix matches (longer wins),
    /// and the part of the repository after it; `None` if it does not match.
    pub(crate) fn matches<'r>(&self, registry: &str, repository: &'r str) -> Option<(usize, &'r str)> {
        match self {
            Prefix::Any => Some((0, repository)),
            Prefix::Subdomains(domain) => {
                let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
                host.ends_with(domain.as_str())
                    .then_some((host.len(), repository))
            }
            Prefix::Name { registry: r, path } if r == registry => match path {
                None => Some((r.len(), repository)),
                Some(p) if repository == p => Some((r.len() + 1 + p.len(), "")),
                Some(p) => repository
                    .strip_prefix(p.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(|rest| (r.len() + 1 + p.len(), rest)),
            },
            Prefix::Name { .. } => None,
        }
    }
}
