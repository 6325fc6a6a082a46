//! Logs: what the proxy records, one [`RecordedRequest`] per request received (by the proxy or
//! by the redirect target) and one [`FiredFault`] per application of a fault.

use std::time::Instant;

use axum::http::Method;

use super::matcher::{is_blob_path, is_manifest_path, is_token_path};
use super::rules::{FaultKind, RuleId};

/// One request received by the proxy (or by the redirect target).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Unique (per proxy) and increasing in arrival order.
    pub id: u64,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// Status answered to the client; `None` while the answer is still pending (e.g. during a
    /// `Delay`) or if the request was abandoned before one was produced.
    pub status: Option<u16>,
    /// Whether the *client* sent an `Authorization` header (even if a `DropAuthorization`
    /// fault then removed it before forwarding).
    pub had_authorization: bool,
    /// The client's `Authorization` header value, if any.
    pub authorization: Option<String>,
    /// The client's `Range` header value, if any.
    pub range: Option<String>,
    /// The fault applied to this request, if any.
    pub fault: Option<FaultKind>,
    /// Whether the request was sent to the upstream (false for `Status` and `RedirectBlobs`
    /// faults; for the redirect target, true when it fetched from the upstream rather than
    /// from the blob directory).
    pub forwarded: bool,
    /// When the request arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// GET of a blob (`/blobs/sha256:` in the path).
    pub fn is_blob_get(&self) -> bool {
        self.method == Method::GET && is_blob_path(&self.path)
    }
    /// Any blob request.
    pub fn is_blob(&self) -> bool {
        is_blob_path(&self.path)
    }
    /// Any manifest request.
    pub fn is_manifest(&self) -> bool {
        is_manifest_path(&self.path)
    }
    /// A token request (see [`is_token_path`]).
    pub fn is_token(&self) -> bool {
        is_token_path(&self.path)
    }
}

/// One application of a fault.
#[derive(Debug, Clone)]
pub struct FiredFault {
    pub rule: RuleId,
    pub kind: FaultKind,
    pub method: Method,
    pub path: String,
    pub at: Instant,
}
