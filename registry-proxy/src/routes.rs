//! Which route a request is for: containerd's `?ns=<registry>`, then the
//! `Host` header (a route's `hosts`, or `<registry>.<vhost_suffix>`), then a
//! path prefix (`/v2/<prefix>/<name>/…`), else the default route.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use registry_client::{ImageReference, RepositoryClient, RepositoryClientBuilder};
use registry_client::{Mirror, RegistrySources};

use crate::config::{self, Config, RouteConfig};
use crate::error::{Error, Result};

/// A route, ready: its settings and the client that fetches from its upstreams.
pub struct Route {
    pub name: String,
    pub registry: String,
    pub prefix: Option<String>,
    pub hosts: Vec<String>,
    pub tag_ttl: Duration,
    /// The time the upstreams have to answer one request.
    pub upstream_timeout: Duration,
    /// Served to anonymous clients.
    pub public: bool,
    client: RepositoryClient,
    /// Upstream fetches at once; more wait their turn (a queue, not errors).
    pub fetches: Arc<Semaphore>,
}

impl Route {
    /// The route's upstream client for one request, once a fetch may start,
    /// held to the route's `upstream_timeout` from now (the wait for a
    /// fetch slot included). The fetch counts against the limit while the
    /// returned value lives.
    pub async fn upstream(&self) -> Result<Upstream<'_>> {
        let deadline = Instant::now() + self.upstream_timeout;
        let permit = self.fetch_slot(deadline).await?;
        Ok(Upstream {
            _permit: permit,
            client: self.client.with_deadline(deadline),
        })
    }

    /// A fetch slot, by `deadline`.
    pub async fn fetch_slot(&self, deadline: Instant) -> Result<SemaphorePermit<'_>> {
        match tokio::time::timeout_at(deadline.into(), self.fetches.acquire()).await {
            Ok(permit) => Ok(permit.expect("the semaphore is never closed")),
            Err(_) => Err(Error::Upstream(registry_client::Error::Timeout {
                host: self.registry.clone(),
            })),
        }
    }

    /// The client itself, for a fill that takes its own slot.
    pub fn client(&self) -> &RepositoryClient {
        &self.client
    }
}

/// A route's upstream client with a fetch permit, for one request.
pub struct Upstream<'r> {
    _permit: SemaphorePermit<'r>,
    client: RepositoryClient,
}

impl std::ops::Deref for Upstream<'_> {
    type Target = RepositoryClient;

    fn deref(&self) -> &RepositoryClient {
        &self.client
    }
}

/// How a request chose its route, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    Namespace,
    Host,
    Prefix,
    Default,
}

impl Selector {
    pub fn as_str(self) -> &'static str {
        match self {
            Selector::Namespace => "ns",
            Selector::Host => "host",
            Selector::Prefix => "prefix",
            Selector::Default => "default",
        }
    }
}

/// Every route of a server.
pub struct Routes {
    routes: Vec<Arc<Route>>,
    default: Option<Arc<Route>>,
    vhost_suffix: Option<String>,
}

/// A request's route could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// `?ns=` names a registry this cache does not serve.
    Namespace(String),
    /// Nothing selected a route and there is no default.
    NoDefault,
}

impl Routes {
    /// Builds each route's upstream client; `customize` adds what applies to
    /// all of them (mirror config files, a docker config).
    pub fn build(
        config: &Config,
        customize: &dyn Fn(RepositoryClientBuilder) -> RepositoryClientBuilder,
    ) -> Result<Routes> {
        let routes: Vec<Arc<Route>> = config
            .routes
            .iter()
            .map(|route| {
                let client = customize(client_builder(route)?).build().map_err(|e| {
                    // Not "invalid configuration: … invalid configuration: …".
                    let reason = match &e {
                        registry_client::Error::InvalidConfig(reason) => reason.clone(),
                        other => registry_client::error::display_chain(other),
                    };
                    Error::Invalid(format!("route {:?}: {reason}", route.name))
                })?;
                Ok(Arc::new(Route {
                    name: route.name.clone(),
                    registry: route.registry.clone(),
                    prefix: route.prefix.clone(),
                    hosts: route.hosts.clone(),
                    tag_ttl: route.tag_ttl,
                    upstream_timeout: route.upstream_timeout,
                    public: config::is_public(config, route),
                    client,
                    fetches: Arc::new(Semaphore::new(config.server.upstream_fetches)),
                }))
            })
            .collect::<Result<_>>()?;
        let default = config
            .routes
            .iter()
            .position(|r| r.default)
            .map(|i| routes[i].clone());
        Ok(Routes {
            routes,
            default,
            vhost_suffix: config.vhost_suffix.clone(),
        })
    }

    pub fn all(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route for a request and the image name it asks for, with the
    /// route's prefix taken off.
    pub fn resolve<'n>(
        &self,
        namespace: Option<&str>,
        host: Option<&str>,
        name: &'n str,
    ) -> Result<(Arc<Route>, &'n str, Selector), NoRoute> {
        if let Some(ns) = namespace {
            let registry = registry_name(ns);
            let route = self
                .routes
                .iter()
                .find(|r| r.registry == registry)
                .ok_or(NoRoute::Namespace(ns.to_owned()))?;
            // containerd adds `ns=` to a prefix URL too (`override_path`):
            // the prefix is then the route's, not part of the name.
            let name = match (&route.prefix, name.split_once('/')) {
                (Some(prefix), Some((first, rest))) if first == prefix => rest,
                _ => name,
            };
            return Ok((route.clone(), name, Selector::Namespace));
        }
        if let Some(route) = host.and_then(|h| self.by_host(h)) {
            return Ok((route, name, Selector::Host));
        }
        if let Some((first, rest)) = name.split_once('/')
            && let Some(route) = self.routes.iter().find(|r| r.prefix.as_deref() == Some(first))
        {
            return Ok((route.clone(), rest, Selector::Prefix));
        }
        self.default
            .clone()
            .map(|r| (r, name, Selector::Default))
            .ok_or(NoRoute::NoDefault)
    }

    fn by_host(&self, host: &str) -> Option<Arc<Route>> {
        let host = strip_port(host).to_ascii_lowercase();
        if let Some(route) = self.routes.iter().find(|r| r.hosts.contains(&host)) {
            return Some(route.clone());
        }
        let registry = host
            .strip_suffix(self.vhost_suffix.as_deref()?)?
            .strip_suffix('.')?;
        let registry = registry_name(registry);
        self.routes.iter().find(|r| r.registry == registry).cloned()
    }
}

/// The client for a route's upstreams: its mirrors, then its registry
/// (unless mirror-only), without the SDK's response cache (the proxy keeps
/// its own, with stale answers).
fn client_builder(route: &RouteConfig) -> Result<RepositoryClientBuilder> {
    let mut builder = match &route.provider {
        Some(id) => RepositoryClient::builder(id.as_str()),
        None => {
            let probe = ImageReference::parse(&format!("{}/probe", route.registry))
                .map_err(|e| Error::Invalid(format!("route {:?}: {e}", route.name)))?;
            RepositoryClient::builder_for(&probe)
        }
    }
    .no_cache()
    .user_agent(concat!("mcreg-proxy/", env!("CARGO_PKG_VERSION")));
    if let Some(credentials) = &route.credentials {
        builder = builder.credentials(credentials.clone());
    }
    if let Some(region) = &route.region {
        builder = builder.region(region.as_str());
    }
    for (name, value) in &route.options {
        builder = builder.option(name.as_str(), value.as_str());
    }
    if let Some(endpoint) = &route.endpoint {
        builder = builder.endpoint(endpoint.as_str());
    }
    if route.insecure {
        builder = builder.insecure_registry(route.registry.as_str());
    }
    if !route.mirrors.is_empty() || route.mirror_only {
        let mut rule = RegistrySources::new(route.registry.as_str());
        for upstream in &route.mirrors {
            let mut mirror = Mirror::new(upstream.url.as_str()).insecure(upstream.insecure);
            if let Some(credentials) = &upstream.credentials {
                mirror = mirror.credentials(credentials.clone());
            }
            rule = rule.mirror(mirror);
        }
        if route.mirror_only {
            rule = rule.mirror_only();
        }
        builder = builder.sources(rule);
    }
    Ok(builder)
}

/// A registry as references name it: Docker Hub's hosts are `docker.io`.
fn registry_name(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "index.docker.io" | "registry-1.docker.io" => {
            registry_client::model::reference::DOCKER_HUB.to_owned()
        }
        other => other.to_owned(),
    }
}

/// `host` of `host:port` (`[::1]` of `[::1]:5000`).
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.strip_prefix('[').and_then(|h| h.find(']')) {
        return &host[..end + 2];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let mut config = Config::for_registries(
            "127.0.0.1:5000".parse().unwrap(),
            "/unused".into(),
            &["docker.io".into(), "ghcr.io".into()],
        )
        .unwrap();
        config.routes[1].prefix = Some("ghcr".into());
        config.routes[1].hosts = vec!["gh.cache.lan".into()];
        config.vhost_suffix = Some("cache.example.com".into());
        Routes::build(&config, &|b| b).unwrap()
    }

    #[test]
    fn ns_then_host_then_prefix_then_default() {
        let routes = routes();
        let pick = |ns, host, name| {
            let (route, name, via) = routes.resolve(ns, host, name).unwrap();
            (route.registry.clone(), name.to_owned(), via)
        };
        let hub = |name: &str, via| ("docker.io".to_owned(), name.to_owned(), via);
        let gh = |name: &str, via| ("ghcr.io".to_owned(), name.to_owned(), via);
        assert_eq!(pick(Some("ghcr.io"), None, "o/i"), gh("o/i", Selector::Namespace));
        // containerd keeps a prefix URL's path and adds ns= too.
        assert_eq!(
            pick(Some("ghcr.io"), None, "ghcr/o/i"),
            gh("o/i", Selector::Namespace)
        );
        assert_eq!(
            pick(Some("index.docker.io"), None, "ghcr/o"),
            hub("ghcr/o", Selector::Namespace)
        );
        assert_eq!(
            pick(None, Some("GH.cache.lan:5000"), "o/i"),
            gh("o/i", Selector::Host)
        );
        assert_eq!(
            pick(None, Some("ghcr.io.cache.example.com"), "o/i"),
            gh("o/i", Selector::Host)
        );
        assert_eq!(
            pick(None, Some("other.lan"), "ghcr/o/i"),
            gh("o/i", Selector::Prefix)
        );
        assert_eq!(
            pick(None, None, "docker.io/library/a"),
            hub("library/a", Selector::Prefix)
        );
        assert_eq!(pick(None, None, "library/a"), hub("library/a", Selector::Default));
        assert_eq!(
            routes.resolve(Some("quay.io"), None, "o/i").err(),
            Some(NoRoute::Namespace("quay.io".into()))
        );
    }

    #[test]
    fn ports_come_off_hosts() {
        assert_eq!(strip_port("cache.example.com:5000"), "cache.example.com");
        assert_eq!(strip_port("cache.example.com"), "cache.example.com");
        assert_eq!(strip_port("[::1]:5000"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
