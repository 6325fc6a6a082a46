//! Trying an image's sources in order: the first success wins; a failure
//! that another source might not have moves on to the next.

use std::future::Future;

use super::route::{Route, Source};
use super::rules::Serves;
use crate::error::{Error, Result, SourceAttempt, SourceOutcome, display_chain};

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
            error.kind(),
            Error::Io(_)
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
