//! The sources one image may come from, in order, and how a request to one
//! of them is addressed.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Method};
use url::Url;

use super::location::Location;
use super::rules::Serves;
use super::table::{MirrorSource, RegistrySource};
use crate::client::RepositoryClient;
use crate::driver::transport::{RegistryRequest, Transport, host_port};
use crate::error::{Error, Resource, Result};
use crate::model::events::{Progress, ProgressEvent};
use crate::model::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST, ImageReference};

/// One place an image may be fetched from: a mirror, or the registry.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// Shown in events, errors and results (`mirror.example.com/hub`, `docker.io`).
    pub name: String,
    pub serves: Serves,
    transport: Arc<Transport>,
    /// Ends with `/`.
    api_root: Url,
    /// The image's repository at this source.
    repository: String,
    /// Whose credentials: the registry as named in the reference, or the mirror's host.
    auth_host: String,
    /// Sent as `?ns=` (containerd's way of telling a mirror the registry).
    namespace: Option<String>,
    /// The registry the reference names, at its own address (not a mirror,
    /// nor where a rule moved it).
    pub is_the_registry: bool,
    /// When its answers must have come by (the client's deadline).
    pub deadline: Option<Instant>,
}

impl Source {
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The image's repository at this source.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `<api root><repository>/<rest>`, with `?ns=` when the source wants it.
    pub fn url(&self, rest: &str) -> Result<Url> {
        let mut url = self
            .api_root
            .join(&format!("{}/{rest}", self.repository))
            .map_err(|e| Error::InvalidConfig(format!("cannot build a URL for {}: {e}", self.name)))?;
        self.add_namespace(&mut url);
        Ok(url)
    }

    /// Adds `?ns=` if this source sends it and `url` lacks it (a `Link` to
    /// the next page may drop it).
    pub fn add_namespace(&self, url: &mut Url) {
        if let Some(ns) = &self.namespace
            && !url.query_pairs().any(|(k, _)| k == "ns")
        {
            url.query_pairs_mut().append_pair("ns", ns);
        }
    }

    /// A pull request for `rest` of the repository. A source that is not
    /// the `last` to try moves on at once instead of retrying.
    pub fn request(
        &self,
        method: Method,
        rest: &str,
        not_found: Option<(Resource, &str)>,
        last: bool,
    ) -> Result<RegistryRequest> {
        Ok(RegistryRequest {
            registry: self.auth_host.clone(),
            method,
            url: self.url(rest)?,
            headers: HeaderMap::new(),
            scope: Some(format!("repository:{}:pull", self.repository)),
            not_found: not_found
                .map(|(what, reference)| (what, self.repository.clone(), reference.to_owned())),
            on_retry: None,
            fail_fast: !last,
            body: None,
            deadline: self.deadline,
        })
    }

    /// The origin every request of this source must stay on.
    pub fn origin(&self) -> url::Origin {
        self.api_root.origin()
    }
}

/// The sources of one image, in order, and those its configuration leaves out.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub sources: Vec<Source>,
    /// Left out for this image: (source, why).
    pub not_asked: Vec<(String, String)>,
    /// Where skip events go (the client's progress, or a write's).
    pub events: Option<Progress>,
    /// When the answer must have come by: no source is asked after it.
    pub deadline: Option<Instant>,
}

impl Route {
    /// The same sources, with events going to `progress` when given.
    pub fn with_events(&self, progress: Option<&Progress>) -> Route {
        Route {
            events: progress.cloned().or_else(|| self.events.clone()),
            ..self.clone()
        }
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.sources.iter().position(|s| s.name == name)
    }

    /// Tells the events receiver (and the log) that `source` is skipped.
    pub fn skipped(&self, source: &str, what: &str, reason: &str) {
        tracing::info!(source, what, "skipping source: {reason}");
        if let Some(events) = &self.events {
            events.emit(ProgressEvent::SourceSkipped {
                source: source.to_owned(),
                what: what.to_owned(),
                reason: reason.to_owned(),
            });
        }
    }
}

impl RepositoryClient {
    /// The sources `reference` may come from: the mirrors of the rule with
    /// the longest matching prefix that serve this kind of pull, then the
    /// registry (or where the rule moved it). Without a rule, the registry.
    pub(crate) fn route(&self, reference: &ImageReference) -> Result<Route> {
        self.route_reporting(reference, self.events().cloned())
    }

    /// [`route`](Self::route), telling `events` which sources are left out.
    pub(crate) fn route_reporting(
        &self,
        reference: &ImageReference,
        events: Option<Progress>,
    ) -> Result<Route> {
        let registry = reference.registry();
        let Some((rule, rest)) = self.source_table().matching(registry, reference.repository()) else {
            return Ok(Route {
                sources: vec![self.registry_source(reference)?],
                not_asked: Vec::new(),
                events,
                deadline: self.deadline(),
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
            deadline: self.deadline(),
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
                self.shared_transport(),
                *send_namespace,
                Serves::All,
                registry,
                rest,
            )?),
            RegistrySource::Off => {}
        }
        for source in &mut route.sources {
            source.deadline = self.deadline();
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

    /// The registry itself: the client's endpoint or the provider's, with
    /// the client's own transport.
    /// The registry itself, never a mirror (where pushes go).
    pub(crate) fn registry_source(&self, reference: &ImageReference) -> Result<Source> {
        let mut api_root = self.base_url(reference.registry())?;
        api_root.set_path(&format!("{}v2/", api_root.path()));
        Ok(Source {
            name: reference.registry().to_owned(),
            serves: Serves::All,
            transport: self.shared_transport().clone(),
            api_root,
            repository: reference.repository().to_owned(),
            auth_host: reference.registry().to_owned(),
            namespace: None,
            is_the_registry: true,
            deadline: self.deadline(),
        })
    }
}

fn mirror_source(mirror: &MirrorSource, registry: &str, rest: &str) -> Result<Source> {
    at_location(
        &mirror.location,
        &mirror.transport,
        mirror.send_namespace,
        mirror.serves,
        registry,
        rest,
    )
}

fn at_location(
    location: &Location,
    transport: &Arc<Transport>,
    send_namespace: bool,
    serves: Serves,
    registry: &str,
    rest: &str,
) -> Result<Source> {
    let repository = location.repository(rest).ok_or_else(|| {
        Error::InvalidConfig(format!(
            "{} has no namespace to put the image in (its rule names a whole repository)",
            location.name
        ))
    })?;
    Ok(Source {
        name: location.name.clone(),
        serves,
        transport: transport.clone(),
        api_root: location.api_root.clone(),
        repository,
        auth_host: location.host.clone(),
        namespace: (send_namespace && is_proxy(&host_port(&location.api_root), registry))
            .then(|| registry.to_owned()),
        is_the_registry: false,
        deadline: None,
    })
}

/// containerd's rule: a host other than the image's registry is a proxy
/// (Docker Hub's API host is Docker Hub).
fn is_proxy(host: &str, registry: &str) -> bool {
    host != registry && !(registry == DOCKER_HUB && host == DOCKER_HUB_API_HOST)
}
