//! The sources one image may come from, in order, how a request to one of
//! them is addressed, and trying them in order: the first success wins; a
//! failure that another source might not have moves on to the next.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Method};
use url::Url;

use super::location::Location;
use super::rules::Serves;
use super::table::MirrorSource;
use crate::driver::transport::{RegistryRequest, Transport, host_port};
use crate::error::{Error, Resource, Result, SourceAttempt, SourceOutcome, display_chain};
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
    /// The registry `reference` names, at `api_root` (its `/v2/` URL).
    pub fn registry(
        reference: &ImageReference,
        api_root: Url,
        transport: Arc<Transport>,
        deadline: Option<Instant>,
    ) -> Source {
        Source {
            name: reference.registry().to_owned(),
            serves: Serves::All,
            transport,
            api_root,
            repository: reference.repository().to_owned(),
            auth_host: reference.registry().to_owned(),
            namespace: None,
            is_the_registry: true,
            deadline,
        }
    }

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

pub(crate) fn mirror_source(mirror: &MirrorSource, registry: &str, rest: &str) -> Result<Source> {
    at_location(
        &mirror.location,
        &mirror.transport,
        mirror.send_namespace,
        mirror.serves,
        registry,
        rest,
    )
}

pub(crate) fn at_location(
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

/// What a request asks for: a tag is resolved only where tags may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// A tag (a manifest by tag, a tag list).
    Tag,
    /// Content by digest (a manifest by digest, a blob).
    Digest,
}

impl Source {
    fn answers(&self, need: Need) -> bool {
        need == Need::Digest || self.serves != Serves::Content
    }
}

/// Whether another source might succeed where this one failed. Local
/// failures (disk, configuration, what the image is) would fail anywhere.
fn next_may_help(error: &Error) -> bool {
    !matches!(error, Error::CannotRefetch { .. })
        && !matches!(
            error.underlying(),
            Error::Io { .. }
                | Error::InvalidLocalImage { .. }
                | Error::InvalidConfig(_)
                | Error::InvalidReference { .. }
                | Error::NoMatchingPlatform { .. }
                | Error::UnsupportedMediaType { .. }
                | Error::UnknownProvider { .. }
                | Error::Blocked { .. }
        )
}

/// The order in which to ask for content of an image whose manifest came
/// from `served_by`: content-only mirrors configured before it (containerd
/// asks them first), then `served_by`, then the others in order.
pub(crate) fn preferring(route: &Route, served_by: Option<&str>) -> Vec<usize> {
    let all = 0..route.sources.len();
    let Some(first) = served_by.and_then(|name| route.position(name)) else {
        return all.collect();
    };
    let content_first = all
        .clone()
        .filter(|&i| i < first && route.sources[i].serves == Serves::Content);
    let rest = all.filter(|&i| i != first && !(i < first && route.sources[i].serves == Serves::Content));
    content_first.chain([first]).chain(rest).collect()
}

impl Route {
    /// Runs `attempt` on the sources in `order` that may answer `need`,
    /// until one succeeds. `attempt` is told whether its source is the last
    /// one (only the last retries transient failures). Each source that
    /// fails and leaves the work to the next is reported as skipped. When
    /// all fail, the error is the only source's, or [`Error::Sources`].
    pub async fn first_success<'r, T, F, Fut>(
        &'r self,
        order: &[usize],
        need: Need,
        what: &str,
        mut attempt: F,
    ) -> Result<(T, &'r Source)>
    where
        F: FnMut(&'r Source, bool) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let candidates: Vec<&Source> = order
            .iter()
            .map(|&i| &self.sources[i])
            .filter(|s| s.answers(need))
            .collect();
        let mut attempts: Vec<SourceAttempt> = self
            .not_asked
            .iter()
            .map(|(source, reason)| SourceAttempt {
                source: source.clone(),
                outcome: SourceOutcome::NotAsked(reason.clone()),
            })
            .collect();
        attempts.extend(
            order
                .iter()
                .map(|&i| &self.sources[i])
                .filter(|s| !s.answers(need))
                .map(|s| SourceAttempt {
                    source: s.name.clone(),
                    outcome: SourceOutcome::NotAsked(s.serves.exclusion().to_owned()),
                }),
        );
        for (n, source) in candidates.iter().enumerate() {
            let last = n + 1 == candidates.len();
            if n > 0 && self.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                // The sources before took all the time there was.
                attempts.extend(candidates[n..].iter().map(|s| SourceAttempt {
                    source: s.name.clone(),
                    outcome: SourceOutcome::NotAsked("the request's deadline had passed".into()),
                }));
                return Err(Error::Sources {
                    what: what.to_owned(),
                    attempts,
                });
            }
            match attempt(source, last).await {
                Ok(value) => return Ok((value, source)),
                Err(error) if !last && next_may_help(&error) => {
                    self.skipped(&source.name, what, &display_chain(&error));
                    attempts.push(SourceAttempt {
                        source: source.name.clone(),
                        outcome: SourceOutcome::Failed(error),
                    });
                }
                Err(error) => return Err(all_failed(what, attempts, source, error)),
            }
        }
        Err(Error::InvalidConfig(format!(
            "no source may serve {what}: {}",
            attempts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )))
    }
}

/// The error when `last` failed with `error` after `attempts`: the error
/// itself when the registry alone was in play (or it is local), else all of
/// them (a lone mirror is named: the reference does not say it was asked).
fn all_failed(what: &str, mut attempts: Vec<SourceAttempt>, last: &Source, error: Error) -> Error {
    if (attempts.is_empty() && last.is_the_registry) || !next_may_help(&error) {
        return error;
    }
    attempts.push(SourceAttempt {
        source: last.name.clone(),
        outcome: SourceOutcome::Failed(error),
    });
    Error::Sources {
        what: what.to_owned(),
        attempts,
    }
}
