//! Faults and rules: the [`Fault`]s the proxy can inject, their [`FaultKind`], the [`Rule`]
//! that pairs a fault with a [`Matcher`], the [`RuleId`] that names an injected rule, and the
//! queued rule with its remaining budget.

use std::time::Duration;

use super::matcher::Matcher;

/// A fault and how many matching requests it applies to (`times`; then it is used up).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer `status` without contacting the upstream. `retry_after` becomes a `Retry-After`
    /// header (`"1"` or an HTTP date); `headers` are added as given (a `Content-Length` in
    /// them is ignored). `body: None` sends a registry JSON error
    /// (`{"errors":[{"code":…,"message":…}]}`, code from the status: 429 `TOOMANYREQUESTS`,
    /// 401 `UNAUTHORIZED`, 403 `DENIED`, 503 `UNAVAILABLE`, else `UNKNOWN`) with
    /// `Content-Type: application/json`; `Some(s)` sends `s` verbatim (no content type unless
    /// given in `headers`). `Docker-Distribution-API-Version: registry/2.0` is added unless
    /// `headers` set it.
    Status {
        status: u16,
        times: usize,
        retry_after: Option<String>,
        headers: Vec<(String, String)>,
        body: Option<String>,
    },
    /// Forward, send the upstream's status and headers (with its real `Content-Length`) and
    /// the first `bytes` bytes of the body, then abort the connection. If the body is shorter
    /// than `bytes` it is passed through unchanged.
    ResetAfter { bytes: u64, times: usize },
    /// Wait `duration` before forwarding.
    Delay { duration: Duration, times: usize },
    /// Forward, but send the body at about `bytes_per_second` (a slow upstream: a download
    /// still under way seconds after its first bytes arrived).
    Throttle { bytes_per_second: u64, times: usize },
    /// Forward only the first `bytes` of the *request* body, then break it off (an upload
    /// cut mid-way): the upstream gets a truncated request, the client a `502`.
    CutRequestBody { bytes: u64, times: usize },
    /// Forward, but flip (XOR `0xFF`) the body byte at `offset`; length unchanged. Nothing
    /// changes if the body is shorter.
    CorruptByte { offset: u64, times: usize },
    /// Forward without the `Authorization` header.
    DropAuthorization { times: usize },
    /// Forward without the `Range` header, so the upstream answers `200` with the whole
    /// body where the client asked for `206` and a part (servers and CDNs that ignore ranges).
    IgnoreRange { times: usize },
    /// Answer a blob GET with `307 Location: http://127.0.0.2:<port>/blobs/<digest>?…`
    /// (see [`FaultProxy::redirect_url`](super::FaultProxy::redirect_url)). Only applies to
    /// requests whose path contains `/blobs/sha256:<hex>`; other requests skip this rule.
    RedirectBlobs { times: usize },
}

/// The kind of a [`Fault`], without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Status,
    ResetAfter,
    Delay,
    Throttle,
    CutRequestBody,
    CorruptByte,
    DropAuthorization,
    IgnoreRange,
    RedirectBlobs,
}

impl Fault {
    /// `status` answered `times` times, no `Retry-After`, no extra headers, registry JSON error
    /// body.
    pub fn status(status: u16, times: usize) -> Self {
        Fault::Status {
            status,
            times,
            retry_after: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// A Docker Hub style `429 Too Many Requests`, `times` times: `Retry-After: <retry_after>`,
    /// `ratelimit-limit: 100;w=21600`, `ratelimit-remaining: 0;w=21600`,
    /// `docker-ratelimit-source: 127.0.0.1` and body
    /// `{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. …"}]}`.
    pub fn rate_limited(times: usize, retry_after: impl Into<String>) -> Self {
        Fault::Status {
            status: 429,
            times,
            retry_after: Some(retry_after.into()),
            headers: vec![
                ("ratelimit-limit".into(), "100;w=21600".into()),
                ("ratelimit-remaining".into(), "0;w=21600".into()),
                ("docker-ratelimit-source".into(), "127.0.0.1".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: Some(
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}"#
                    .into(),
            ),
        }
    }

    /// This fault's kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Status { .. } => FaultKind::Status,
            Fault::ResetAfter { .. } => FaultKind::ResetAfter,
            Fault::Delay { .. } => FaultKind::Delay,
            Fault::Throttle { .. } => FaultKind::Throttle,
            Fault::CutRequestBody { .. } => FaultKind::CutRequestBody,
            Fault::CorruptByte { .. } => FaultKind::CorruptByte,
            Fault::DropAuthorization { .. } => FaultKind::DropAuthorization,
            Fault::IgnoreRange { .. } => FaultKind::IgnoreRange,
            Fault::RedirectBlobs { .. } => FaultKind::RedirectBlobs,
        }
    }

    /// How many matching requests this fault applies to.
    pub fn times(&self) -> usize {
        match self {
            Fault::Status { times, .. }
            | Fault::ResetAfter { times, .. }
            | Fault::Delay { times, .. }
            | Fault::Throttle { times, .. }
            | Fault::CutRequestBody { times, .. }
            | Fault::CorruptByte { times, .. }
            | Fault::DropAuthorization { times }
            | Fault::IgnoreRange { times }
            | Fault::RedirectBlobs { times } => *times,
        }
    }
}

/// A queued fault: applies `fault` to the next `fault.times()` requests selected by `matcher`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: Matcher,
    pub fault: Fault,
}

impl Rule {
    pub fn new(matcher: Matcher, fault: Fault) -> Self {
        Self { matcher, fault }
    }
}

/// Identifies an injected rule (returned by [`FaultProxy::inject`](super::FaultProxy::inject)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u64);

pub(super) struct ActiveRule {
    pub(super) id: RuleId,
    pub(super) matcher: Matcher,
    pub(super) fault: Fault,
    pub(super) remaining: usize,
}
