//! Request classification: which requests a rule selects. The path tests (`is_blob_path`,
//! `is_manifest_path`, `is_token_path`, and the digest of a blob path), the [`RequestInfo`] a
//! predicate sees and the [`Matcher`] built from them.

use std::fmt;
use std::sync::Arc;

use axum::http::{HeaderMap, Method};

/// `true` if `path` addresses a blob by digest (`…/blobs/sha256:…`).
pub fn is_blob_path(path: &str) -> bool {
    path.contains("/blobs/sha256:")
}

/// `true` if `path` addresses a manifest (`…/manifests/<tag or digest>`).
pub fn is_manifest_path(path: &str) -> bool {
    path.contains("/manifests/")
}

/// `true` if `path` looks like a token endpoint: its last segment is `token` or `auth`
/// (the harness token server and Docker Hub / GHCR `/token`, Quay `/v2/auth`). Token requests
/// only pass through a proxy placed in front of the token server (see
/// [`FaultProxyBuilder::rewrite`](super::FaultProxyBuilder::rewrite)).
pub fn is_token_path(path: &str) -> bool {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    last == "token" || last == "auth"
}

/// `sha256:<64 hex>` from a path containing `/blobs/sha256:<64 hex>`.
pub(super) fn blob_digest(path: &str) -> Option<String> {
    let start = path.find("/blobs/sha256:")? + "/blobs/".len();
    let digest = path[start..].split(['/', '?']).next()?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digest.to_owned())
}

/// The request as seen by a [`Matcher`] predicate.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

type Predicate = Arc<dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync>;

#[derive(Clone)]
enum Target {
    Any,
    PathContains(String),
    Blobs,
    Manifests,
    Tokens,
    Predicate(Predicate),
}

/// Which requests a [`Rule`](super::Rule) applies to: an optional method plus a path condition.
#[derive(Clone)]
pub struct Matcher {
    method: Option<Method>,
    target: Target,
}

impl Matcher {
    /// Every request.
    pub fn any() -> Self {
        Self {
            method: None,
            target: Target::Any,
        }
    }

    /// Requests whose path contains `needle` (the query is not searched).
    pub fn path_contains(needle: impl Into<String>) -> Self {
        Self {
            method: None,
            target: Target::PathContains(needle.into()),
        }
    }

    /// Blob requests of any method (path contains `/blobs/sha256:`).
    pub fn blobs() -> Self {
        Self {
            method: None,
            target: Target::Blobs,
        }
    }

    /// Blob GETs (path contains `/blobs/sha256:`, method GET).
    pub fn blob_gets() -> Self {
        Self::blobs().method(Method::GET)
    }

    /// Manifest requests of any method (path contains `/manifests/`); add `.method(..)` to
    /// restrict to GET or HEAD.
    pub fn manifests() -> Self {
        Self {
            method: None,
            target: Target::Manifests,
        }
    }

    /// Token requests (see [`is_token_path`]).
    pub fn token_requests() -> Self {
        Self {
            method: None,
            target: Target::Tokens,
        }
    }

    /// Requests for which `f` returns `true`.
    pub fn predicate(f: impl Fn(&RequestInfo<'_>) -> bool + Send + Sync + 'static) -> Self {
        Self {
            method: None,
            target: Target::Predicate(Arc::new(f)),
        }
    }

    /// Additionally require this method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Does this matcher select `info`?
    pub fn matches(&self, info: &RequestInfo<'_>) -> bool {
        if let Some(m) = &self.method
            && m != info.method
        {
            return false;
        }
        match &self.target {
            Target::Any => true,
            Target::PathContains(needle) => info.path.contains(needle.as_str()),
            Target::Blobs => is_blob_path(info.path),
            Target::Manifests => is_manifest_path(info.path),
            Target::Tokens => is_token_path(info.path),
            Target::Predicate(f) => f(info),
        }
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Any => "any".to_owned(),
            Target::PathContains(n) => format!("path contains {n:?}"),
            Target::Blobs => "blobs".to_owned(),
            Target::Manifests => "manifests".to_owned(),
            Target::Tokens => "token requests".to_owned(),
            Target::Predicate(_) => "predicate".to_owned(),
        };
        f.debug_struct("Matcher")
            .field("method", &self.method)
            .field("target", &target)
            .finish()
    }
}
