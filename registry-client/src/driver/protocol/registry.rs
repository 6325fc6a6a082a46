//! One registry as the protocol sees it: the provider, the transport, the
//! source rules (mirrors), the response cache and the settings every request
//! shares; and the route a request for a reference takes.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use url::Url;

use super::cache::ResponseCache;
use crate::driver::abstract_registry::AbstractRegistry;
use crate::driver::sources::{
    RegistrySource, Route, Serves, Source, SourceTable, at_location, mirror_source,
};
use crate::driver::transport::{Transport, host_port, is_loopback};
use crate::error::{Error, Result};
use crate::formats::layer_cache::LayerCache;
use crate::model::events::Progress;
use crate::model::platform::Platform;
use crate::model::reference::ImageReference;

/// A registry to speak the distribution protocol with. Cheap to clone; clones
/// share connections, tokens, breakers and the cache.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
    /// When this handle's requests must be answered by.
    deadline: Option<Instant>,
}

/// What every clone of a [`Registry`] shares; filled by the client builder.
pub(crate) struct Shared {
    pub provider: Arc<dyn AbstractRegistry>,
    pub transport: Arc<Transport>,
    pub cache: ResponseCache,
    pub endpoint: Option<Url>,
    pub platform: Platform,
    pub page_size: Option<u32>,
    pub layer_cache: Option<LayerCache>,
    pub sources: SourceTable,
    pub events: Option<Progress>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("provider", &self.shared.provider)
            .field("endpoint", &self.shared.endpoint.as_ref().map(Url::as_str))
            .field("platform", &self.shared.platform.to_string())
            .field(
                "layer_cache",
                &self.shared.layer_cache.as_ref().map(LayerCache::root),
            )
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn new(shared: Shared) -> Registry {
        Registry {
            shared: Arc::new(shared),
            deadline: None,
        }
    }

    /// The same registry, whose requests must be answered by `deadline`.
    pub(crate) fn with_deadline(&self, deadline: Instant) -> Registry {
        Registry {
            shared: self.shared.clone(),
            deadline: Some(deadline),
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub(crate) fn provider_id(&self) -> &'static str {
        self.shared.provider.id()
    }

    pub(crate) fn platform(&self) -> &Platform {
        &self.shared.platform
    }

    pub(crate) fn layer_cache(&self) -> Option<&LayerCache> {
        self.shared.layer_cache.as_ref()
    }

    pub(crate) fn page_size(&self) -> Option<u32> {
        self.shared.page_size
    }

    pub(crate) fn transport(&self) -> &Arc<Transport> {
        &self.shared.transport
    }

    pub(crate) fn cache(&self) -> &ResponseCache {
        &self.shared.cache
    }

    /// The base URL for a registry: the endpoint override, else the
    /// provider's endpoint, in plain HTTP for loopback and insecure hosts.
    pub(crate) fn base_url(&self, registry: &str) -> Result<Url> {
        let mut url = match &self.shared.endpoint {
            Some(url) => return Ok(url.clone()),
            None => self.shared.provider.endpoint(registry)?,
        };
        if url.scheme() == "https" && (is_loopback(&url) || self.shared.transport.is_insecure(&url)) {
            url.set_scheme("http").map_err(|()| {
                Error::InvalidConfig(format!("cannot use plain HTTP for {}", host_port(&url)))
            })?;
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(url)
    }

    /// The sources `reference` may come from: the mirrors of the rule with
    /// the longest matching prefix that serve this kind of pull, then the
    /// registry (or where the rule moved it). Without a rule, the registry.
    pub(crate) fn route(&self, reference: &ImageReference) -> Result<Route> {
        self.route_reporting(reference, self.shared.events.clone())
    }

    /// [`route`](Self::route), telling `events` which sources are left out.
    pub(crate) fn route_reporting(
        &self,
        reference: &ImageReference,
        events: Option<Progress>,
    ) -> Result<Route> {
        let registry = reference.registry();
        let Some((rule, rest)) = self.shared.sources.matching(registry, reference.repository()) else {
            return Ok(Route {
                sources: vec![self.registry_source(reference)?],
                not_asked: Vec::new(),
                events,
                deadline: self.deadline,
            });
        };
        if rule.blocked {
            return Err(Error::Blocked {
                name: reference.to_string(),
                rule: rule.description.clone(),
            });
        }
        let by_digest = reference.digest().is_some();
        let mut route = Route {
            sources: Vec::new(),
            not_asked: Vec::new(),
            events,
            deadline: self.deadline,
        };
        for mirror in &rule.mirrors {
            if mirror.serves.serves_pull(by_digest) {
                route.sources.push(mirror_source(mirror, registry, rest)?);
            } else {
                route
                    .not_asked
                    .push((mirror.location.name.clone(), mirror.serves.exclusion().to_owned()));
            }
        }
        match &rule.registry {
            RegistrySource::Itself => route.sources.push(self.registry_source(reference)?),
            RegistrySource::Moved {
                location,
                send_namespace,
            } => route.sources.push(at_location(
                location,
                &self.shared.transport,
                *send_namespace,
                Serves::All,
                registry,
                rest,
            )?),
            RegistrySource::Off => {}
        }
        for source in &mut route.sources {
            source.deadline = self.deadline;
        }
        let what = reference.to_string();
        for (source, reason) in &route.not_asked {
            route.skipped(source, &what, reason);
        }
        if route.sources.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "no source may serve {what} under {}: {}",
                rule.description,
                route
                    .not_asked
                    .iter()
                    .map(|(s, r)| format!("{s}: {r}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        Ok(route)
    }

    /// The registry itself, never a mirror (where pushes go): the client's
    /// endpoint or the provider's, with the client's own transport.
    pub(crate) fn registry_source(&self, reference: &ImageReference) -> Result<Source> {
        let mut api_root = self.base_url(reference.registry())?;
        api_root.set_path(&format!("{}v2/", api_root.path()));
        Ok(Source::registry(
            reference,
            api_root,
            self.shared.transport.clone(),
            self.deadline,
        ))
    }
}
