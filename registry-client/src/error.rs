//! The one public error type and the registry's JSON error body.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A boxed error from a provider or a lower layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a registry.
///
/// No variant ever carries a password or token, so `Display` and `Debug`
/// are safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image reference could not be parsed; `part` is what is wrong in it.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        input: String,
        part: ReferencePart,
        reason: String,
    },

    /// A manifest, blob, repository or tag does not exist.
    #[error("{what} not found: {name}{}", reference_suffix(reference))]
    NotFound {
        what: Resource,
        name: String,
        reference: String,
    },

    /// The registry wants credentials we do not have, or rejected the ones we sent.
    #[error("unauthorized at {host}{}", message_suffix(message))]
    Unauthorized { host: String, message: String },

    /// The credentials were accepted but do not grant access.
    #[error("access denied at {host}{}", message_suffix(message))]
    Denied { host: String, message: String },

    /// The registry asked us to slow down.
    #[error("rate limited by {host}{}{}", retry_after_suffix(*retry_after), rate_limit_suffix(limit))]
    RateLimited {
        host: String,
        retry_after: Option<Duration>,
        limit: Option<RateLimit>,
    },

    /// A connect or read timeout.
    #[error("timed out talking to {host}")]
    Timeout { host: String },

    /// The connection failed or broke.
    #[error("connection to {host} failed")]
    Connection {
        host: String,
        #[source]
        source: BoxError,
    },

    /// The host's circuit breaker is open after repeated failures.
    #[error(
        "circuit breaker open for {host} after repeated failures; not trying again for {}s",
        retry_in.as_secs_f64().ceil()
    )]
    CircuitOpen { host: String, retry_in: Duration },

    /// Content did not hash to the digest it was asked for by.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },

    /// A blob failed (its check, most often) after its first bytes had been passed on (to
    /// an upload, to a cache's clients), so no source may send it again. Its
    /// [`kind`](Error::kind) is the cause's.
    #[error("{cause}; the blob cannot be fetched again: {reason}")]
    CannotRefetch { cause: Box<Error>, reason: String },

    /// A blob's length differs from its descriptor's size.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },

    /// The registry answered something we cannot make sense of.
    #[error("invalid response from {host}: {message}")]
    InvalidResponse { host: String, message: String },

    /// A manifest or blob of a media type we do not handle.
    #[error("unsupported media type {media_type:?}")]
    UnsupportedMediaType { media_type: String },

    /// An index offers no manifest for the requested platform.
    #[error("no manifest for platform {requested}; available: {}", available.join(", "))]
    NoMatchingPlatform {
        requested: String,
        available: Vec<String>,
    },

    /// Any other error status, with the registry's own error codes.
    #[error("{host} answered {status}{}", registry_errors_suffix(errors))]
    Registry {
        host: String,
        status: u16,
        errors: Vec<RegistryError>,
    },

    /// A local I/O error, on `path` when there is one.
    #[error("I/O error{}", path_suffix(path.as_deref()))]
    Io {
        path: Option<std::path::PathBuf>,
        #[source]
        source: std::io::Error,
    },

    /// An image on disk (an OCI layout, a docker archive) is damaged or not
    /// what it claims to be: `path` is the file or directory, `message` what is wrong.
    #[error("invalid image at {}: {message}", path.display())]
    InvalidLocalImage {
        path: std::path::PathBuf,
        message: String,
    },

    /// A provider could not produce credentials or an endpoint.
    #[error("provider {provider} failed")]
    Provider {
        provider: String,
        #[source]
        source: BoxError,
    },

    /// No provider is registered under this id.
    #[error("unknown registry provider {id:?}; registered: {}", registered.join(", "))]
    UnknownProvider { id: String, registered: Vec<String> },

    /// Two providers registered the same id.
    #[error("registry provider id {id:?} is registered twice")]
    DuplicateProvider { id: String },

    /// The client was configured in a way that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A configuration file (`registries.conf`, `hosts.toml`) is malformed.
    #[error("{}: {message}", config_file_location(path, *line, key))]
    ConfigFile {
        path: std::path::PathBuf,
        /// 1-based, when the parser knows it.
        line: Option<usize>,
        /// The key at fault, as a path (`registry[1].mirror[0].location`), when known.
        key: Option<String>,
        message: String,
    },

    /// The configuration forbids pulling this image (`blocked` in `registries.conf`).
    #[error("pulling {name} is blocked by {rule}")]
    Blocked { name: String, rule: String },

    /// A mirrored image could not be had from any of its sources (mirrors and
    /// the registry, in the order tried). Predicates and [`kind`](Error::kind)
    /// look at the last source tried: not found everywhere is still
    /// [`is_not_found`](Error::is_not_found).
    #[error("{what}: no source could serve it: {}", attempts_text(attempts))]
    Sources {
        what: String,
        attempts: Vec<SourceAttempt>,
    },
}

/// One source of a mirrored registry, and why it did not serve a request.
#[derive(Debug)]
#[non_exhaustive]
pub struct SourceAttempt {
    /// The mirror or registry, as shown in events (`mirror.example.com/hub`).
    pub source: String,
    pub outcome: SourceOutcome,
}

/// Why a source did not serve a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceOutcome {
    /// It was asked and failed.
    Failed(Error),
    /// It was not asked: its configuration excludes this request (a
    /// digest-only mirror and a tag, say).
    NotAsked(String),
}

impl fmt::Display for SourceAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            SourceOutcome::Failed(error) => write!(f, "{}: {}", self.source, display_chain(error)),
            SourceOutcome::NotAsked(reason) => write!(f, "{}: not asked ({reason})", self.source),
        }
    }
}

/// What kind of failure an [`Error`] is ([`Error::kind`]), whatever wraps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    InvalidReference,
    NotFound,
    /// No credentials, or refused ones.
    Unauthorized,
    /// Credentials accepted, access not granted.
    Denied,
    RateLimited,
    Timeout,
    Connection,
    CircuitOpen,
    DigestMismatch,
    SizeMismatch,
    /// A registry's answer that cannot be made sense of.
    InvalidResponse,
    UnsupportedMediaType,
    NoMatchingPlatform,
    /// Any other error status of a registry.
    Registry,
    Io,
    /// A provider failed, is unknown, or is registered twice.
    Provider,
    /// The caller's configuration (builder settings or a config file).
    InvalidConfig,
    /// An image on disk that is damaged or not what it claims to be.
    InvalidLocalImage,
    Blocked,
    /// A mirrored image none of whose sources was asked.
    Sources,
}

/// The part of an image reference that is wrong ([`Error::InvalidReference`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferencePart {
    /// The registry or the repository path (or the reference as a whole).
    Name,
    Tag,
    Digest,
}

/// What was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resource {
    Manifest,
    Blob,
    Repository,
    Registry,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Manifest => "manifest",
            Resource::Blob => "blob",
            Resource::Repository => "repository",
            Resource::Registry => "registry",
        })
    }
}

/// Docker Hub style rate limit headers (`ratelimit-limit`, `ratelimit-remaining`,
/// `docker-ratelimit-source`), kept as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    pub limit: Option<String>,
    pub remaining: Option<String>,
    pub source: Option<String>,
}

impl RateLimit {
    /// Reads the rate limit headers, `None` when none was sent.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let limit = RateLimit {
            limit: get("ratelimit-limit"),
            remaining: get("ratelimit-remaining"),
            source: get("docker-ratelimit-source"),
        };
        (limit != RateLimit::default()).then_some(limit)
    }
}

/// One entry of a registry's `{"errors":[…]}` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RegistryError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl RegistryError {
    /// Parses an error body; empty when it is not the registry's error JSON.
    pub fn parse_body(body: &[u8]) -> Vec<RegistryError> {
        #[derive(Deserialize)]
        struct Body {
            errors: Vec<RegistryError>,
        }
        serde_json::from_slice::<Body>(body)
            .map(|b| b.errors)
            .unwrap_or_default()
    }
}

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Error::Io { path: None, source }
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: Some(path.into()),
            source,
        }
    }

    /// What kind of failure this is, looking through the errors that wrap
    /// another (a provider's tag, a blob that cannot be fetched again, a
    /// mirrored image's last source): what to `match` on.
    pub fn kind(&self) -> ErrorKind {
        match self.underlying() {
            Error::InvalidReference { .. } => ErrorKind::InvalidReference,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Unauthorized { .. } => ErrorKind::Unauthorized,
            Error::Denied { .. } => ErrorKind::Denied,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Connection { .. } => ErrorKind::Connection,
            Error::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            Error::DigestMismatch { .. } => ErrorKind::DigestMismatch,
            Error::SizeMismatch { .. } => ErrorKind::SizeMismatch,
            Error::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            Error::UnsupportedMediaType { .. } => ErrorKind::UnsupportedMediaType,
            Error::NoMatchingPlatform { .. } => ErrorKind::NoMatchingPlatform,
            Error::Registry { .. } => ErrorKind::Registry,
            Error::Io { .. } => ErrorKind::Io,
            Error::InvalidLocalImage { .. } => ErrorKind::InvalidLocalImage,
            Error::Provider { .. } => ErrorKind::Provider,
            Error::UnknownProvider { .. } | Error::DuplicateProvider { .. } => ErrorKind::Provider,
            Error::InvalidConfig(_) | Error::ConfigFile { .. } => ErrorKind::InvalidConfig,
            Error::Blocked { .. } => ErrorKind::Blocked,
            // Never reached (`underlying()` unwraps it); its cause is what it is.
            Error::CannotRefetch { cause, .. } => cause.kind(),
            // Only when no source was asked at all.
            Error::Sources { .. } => ErrorKind::Sources,
        }
    }

    /// The error a wrapper holds (a provider's tag around one of the core's
    /// errors, a blob that cannot be fetched again, a mirrored image's last
    /// source), or this one: where the fields of [`kind`](Self::kind)'s
    /// variant are (`host`, `retry_after`, …).
    pub fn underlying(&self) -> &Error {
        match self {
            Error::Provider { source, .. } => source.downcast_ref::<Error>().map_or(self, Error::underlying),
            Error::CannotRefetch { cause, .. } => cause.underlying(),
            Error::Sources { attempts, .. } => attempts
                .iter()
                .rev()
                .find_map(|a| match &a.outcome {
                    SourceOutcome::Failed(error) => Some(error.underlying()),
                    SourceOutcome::NotAsked(_) => None,
                })
                .unwrap_or(self),
            other => other,
        }
    }

    /// Whether trying the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self.underlying() {
            Error::RateLimited { .. }
            | Error::Timeout { .. }
            | Error::Connection { .. }
            | Error::CircuitOpen { .. } => true,
            Error::Registry { status, .. } => matches!(status, 408 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// Unauthorized or denied.
    pub fn is_auth(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unauthorized | ErrorKind::Denied)
    }

    pub fn is_rate_limited(&self) -> bool {
        self.kind() == ErrorKind::RateLimited
    }

    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    pub fn is_circuit_open(&self) -> bool {
        self.kind() == ErrorKind::CircuitOpen
    }

    /// Content failed verification (digest or size).
    pub fn is_integrity(&self) -> bool {
        matches!(self.kind(), ErrorKind::DigestMismatch | ErrorKind::SizeMismatch)
    }

    /// The id of the provider that reported this error, if one did.
    pub fn provider_id(&self) -> Option<&str> {
        match self {
            Error::Provider { provider, .. } => Some(provider),
            _ => None,
        }
    }

    /// Wraps a provider's own error, tagged with the provider id.
    pub fn provider(provider: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Provider {
            provider: provider.into(),
            source: source.into(),
        }
    }

    pub(crate) fn invalid_response(host: &str, message: impl Into<String>) -> Self {
        Error::InvalidResponse {
            host: host.to_owned(),
            message: message.into(),
        }
    }
}

fn config_file_location(path: &std::path::Path, line: Option<usize>, key: &Option<String>) -> String {
    let mut location = path.display().to_string();
    if let Some(line) = line {
        location.push_str(&format!(", line {line}"));
    }
    if let Some(key) = key {
        location.push_str(&format!(", {key}"));
    }
    location
}

fn attempts_text(attempts: &[SourceAttempt]) -> String {
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn reference_suffix(reference: &str) -> String {
    match reference {
        "" => String::new(),
        r if r.contains(':') => format!("@{r}"),
        r => format!(":{r}"),
    }
}

fn path_suffix(path: Option<&std::path::Path>) -> String {
    path.map(|p| format!(" on {}", p.display())).unwrap_or_default()
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn retry_after_suffix(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!("; retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

fn rate_limit_suffix(limit: &Option<RateLimit>) -> String {
    let Some(limit) = limit else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(l) = &limit.limit {
        parts.push(format!("limit {l}"));
    }
    if let Some(r) = &limit.remaining {
        parts.push(format!("remaining {r}"));
    }
    if let Some(s) = &limit.source {
        parts.push(format!("source {s}"));
    }
    format!(" ({})", parts.join(", "))
}

fn registry_errors_suffix(errors: &[RegistryError]) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let described: Vec<String> = errors
        .iter()
        .map(|e| format!("{} {}", e.code, e.message).trim_end().to_owned())
        .collect();
    format!(": {}", described.join("; "))
}

/// `error: cause: cause`: an error followed by each of its sources, skipping a
/// cause whose text the message already ends with (some errors repeat their
/// source in their own message).
pub fn display_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_causes_once() {
        /// Says `.0`, caused by `.1`.
        #[derive(Debug)]
        struct Outer(&'static str, std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.1)
            }
        }
        let cause = || std::io::Error::other("disk full");
        assert_eq!(
            display_chain(&Outer("writing x", cause())),
            "writing x: disk full"
        );
        assert_eq!(
            display_chain(&Outer("writing x: disk full", cause())),
            "writing x: disk full",
            "a cause the message already ends with is not repeated"
        );
    }

    #[test]
    fn parses_registry_error_body() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let errors = RegistryError::parse_body(body);
        assert_eq!(
            errors,
            vec![RegistryError {
                code: "MANIFEST_UNKNOWN".into(),
                message: "manifest unknown".into()
            }]
        );
        assert!(RegistryError::parse_body(b"<html>bad gateway</html>").is_empty());
    }

    #[test]
    fn displays_read_as_sentences() {
        let e = Error::NotFound {
            what: Resource::Manifest,
            name: "library/alpine".into(),
            reference: "3.20".into(),
        };
        assert_eq!(e.to_string(), "manifest not found: library/alpine:3.20");
        let e = Error::Registry {
            host: "r.example".into(),
            status: 400,
            errors: vec![RegistryError {
                code: "NAME_INVALID".into(),
                message: "bad name".into(),
            }],
        };
        assert_eq!(e.to_string(), "r.example answered 400: NAME_INVALID bad name");
        let e = Error::RateLimited {
            host: "registry-1.docker.io".into(),
            retry_after: Some(Duration::from_secs(30)),
            limit: Some(RateLimit {
                limit: Some("100;w=21600".into()),
                remaining: Some("0;w=21600".into()),
                source: None,
            }),
        };
        assert_eq!(
            e.to_string(),
            "rate limited by registry-1.docker.io; retry after 30s (limit 100;w=21600, remaining 0;w=21600)"
        );
    }

    #[test]
    fn predicates_see_through_a_provider_tag() {
        let throttled = Error::provider(
            "ali",
            Error::RateLimited {
                host: "cr.cn-hangzhou.aliyuncs.com".into(),
                retry_after: None,
                limit: None,
            },
        );
        assert!(throttled.is_rate_limited() && throttled.is_retryable());
        assert_eq!(throttled.provider_id(), Some("ali"));
        let denied = Error::provider(
            "aws",
            Error::Denied {
                host: "ecr".into(),
                message: String::new(),
            },
        );
        assert!(denied.is_auth() && !denied.is_retryable());
        let other = Error::provider("gcp", std::io::Error::other("no ADC"));
        assert!(!other.is_auth() && !other.is_retryable());
    }

    #[test]
    fn predicates() {
        assert!(Error::Timeout { host: "h".into() }.is_retryable());
        assert!(
            !Error::Unauthorized {
                host: "h".into(),
                message: String::new()
            }
            .is_retryable()
        );
        assert!(
            Error::NotFound {
                what: Resource::Blob,
                name: "n".into(),
                reference: "sha256:00".into()
            }
            .is_not_found()
        );
    }

    #[test]
    fn kind_looks_through_wrappers_and_underlying_keeps_the_fields() {
        let throttled = Error::provider(
            "ali",
            Error::RateLimited {
                host: "cr.example".into(),
                retry_after: Some(std::time::Duration::from_secs(3)),
                limit: None,
            },
        );
        assert_eq!(throttled.kind(), ErrorKind::RateLimited);
        assert!(matches!(
            throttled.underlying(),
            Error::RateLimited { host, retry_after: Some(_), .. } if host == "cr.example"
        ));
        let own = Error::provider("gcp", std::io::Error::other("no ADC"));
        assert_eq!(own.kind(), ErrorKind::Provider);
        let refetch = Error::CannotRefetch {
            cause: Box::new(Error::DigestMismatch {
                expected: "sha256:aa".into(),
                actual: "sha256:bb".into(),
            }),
            reason: "bytes already sent".into(),
        };
        assert_eq!(refetch.kind(), ErrorKind::DigestMismatch);
        let mirrored = Error::Sources {
            what: "docker.io/library/alpine:3".into(),
            attempts: vec![
                SourceAttempt {
                    source: "mirror".into(),
                    outcome: SourceOutcome::Failed(Error::Timeout {
                        host: "mirror".into(),
                    }),
                },
                SourceAttempt {
                    source: "docker.io".into(),
                    outcome: SourceOutcome::Failed(Error::NotFound {
                        what: Resource::Manifest,
                        name: "library/alpine".into(),
                        reference: "3".into(),
                    }),
                },
            ],
        };
        assert_eq!(mirrored.kind(), ErrorKind::NotFound);
        let none_asked = Error::Sources {
            what: "x".into(),
            attempts: vec![SourceAttempt {
                source: "mirror".into(),
                outcome: SourceOutcome::NotAsked("digest pulls only".into()),
            }],
        };
        assert_eq!(none_asked.kind(), ErrorKind::Sources);
        assert_eq!(Error::InvalidConfig("x".into()).kind(), ErrorKind::InvalidConfig);
    }
}
