//! The spec's error answers: an HTTP status and `{"errors": [{code, message}]}`,
//! from the cache's own failures and the upstreams'.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registry_client::error::{Resource, display_chain};
use serde_json::json;

use crate::error::Error;
use crate::log::{RequestId, Served};

/// `405 UNSUPPORTED`, with the methods this endpoint does allow.
pub(super) fn unsupported(allow: &'static str) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "this registry is a read-only pull-through cache",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// What manifests, blobs and `/v2/` allow.
pub(super) const READ: &str = "GET, HEAD";

/// An error answer: the spec's `{"errors":[{code, message, detail}]}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    /// `WWW-Authenticate`, on a `401`.
    challenge: Option<HeaderValue>,
    /// What failed inside the cache: logged (with the request's id), never
    /// sent, since it may name local paths.
    hidden: Option<Box<str>>,
}

impl ApiError {
    /// The same error with a `WWW-Authenticate` challenge (a `401`).
    pub(super) fn with_challenge(self, challenge: HeaderValue) -> Self {
        ApiError {
            challenge: Some(challenge),
            ..self
        }
    }

    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            challenge: None,
            hidden: None,
        }
    }

    /// What an error means to a client: not found stays not found; an
    /// upstream that is down, busy or refusing the cache is not the client's
    /// fault and says so. What went wrong inside the cache (its storage, a
    /// credential helper, a file) is not told: the client gets the request's
    /// id, the log has the rest.
    pub(super) fn from_error(error: &Error, what: Resource) -> ApiError {
        let message = display_chain(error);
        let Error::Upstream(upstream) = error else {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "").hiding(message);
        };
        let answer = Self::from_upstream(upstream, what, message.clone());
        if about_the_upstream_only(upstream) {
            answer
        } else {
            answer.hiding(message)
        }
    }

    /// Tells the client only that the cache failed, and the request's id.
    pub(super) fn hiding(mut self, detail: String) -> ApiError {
        self.message = match RequestId::current() {
            Some(id) => format!("the cache could not answer; its log has the details under request id {id}"),
            None => "the cache could not answer; its log has the details".to_owned(),
        };
        self.hidden = Some(detail.into());
        self
    }

    pub(super) fn from_upstream(
        upstream: &registry_client::Error,
        what: Resource,
        message: String,
    ) -> ApiError {
        let kind = upstream.underlying();
        match kind {
            registry_client::Error::NotFound { .. } => {
                let code = match what {
                    Resource::Manifest => "MANIFEST_UNKNOWN",
                    Resource::Blob => "BLOB_UNKNOWN",
                    _ => "NAME_UNKNOWN",
                };
                ApiError::new(StatusCode::NOT_FOUND, code, message)
            }
            registry_client::Error::RateLimited { retry_after, .. } => ApiError {
                retry_after: retry_after.map(|d| d.as_secs().max(1)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", message)
            },
            e if e.is_auth() => ApiError::new(StatusCode::FORBIDDEN, "DENIED", message),
            e if e.is_integrity() => ApiError::new(StatusCode::BAD_GATEWAY, "UNKNOWN", message),
            e if e.is_retryable() => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message),
            registry_client::Error::InvalidReference { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", message)
            }
            _ => ApiError::new(StatusCode::BAD_GATEWAY, "UNKNOWN", message),
        }
    }
}

/// Whether an upstream error's text tells of the upstream alone (hosts,
/// repositories, statuses, digests) and of nothing local (files, helpers).
fn about_the_upstream_only(error: &registry_client::Error) -> bool {
    use registry_client::Error as E;
    use registry_client::error::SourceOutcome;
    match error {
        E::Sources { attempts, .. } => attempts.iter().all(|attempt| match &attempt.outcome {
            SourceOutcome::Failed(error) => about_the_upstream_only(error),
            _ => true,
        }),
        E::CannotRefetch { cause, .. } => about_the_upstream_only(cause),
        E::NotFound { .. }
        | E::Unauthorized { .. }
        | E::Denied { .. }
        | E::RateLimited { .. }
        | E::Timeout { .. }
        | E::Connection { .. }
        | E::CircuitOpen { .. }
        | E::DigestMismatch { .. }
        | E::SizeMismatch { .. }
        | E::InvalidResponse { .. }
        | E::Registry { .. }
        | E::InvalidReference { .. }
        | E::UnsupportedMediaType { .. }
        | E::NoMatchingPlatform { .. } => true,
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"errors": [{"code": self.code, "message": self.message, "detail": null}]}).to_string();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(hidden) = self.hidden {
            response.extensions_mut().insert(Served {
                error: Some(hidden.into()),
                ..Served::default()
            });
        }
        response
    }
}
