//! The proxy's own errors (storage, configuration); upstream errors are the
//! SDK's [`registry_client::Error`].

use std::path::PathBuf;

/// A boxed cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the cache's storage failed.
    #[error("{context}")]
    Storage {
        context: String,
        #[source]
        source: BoxError,
    },

    /// A digest that is not `sha256:<64 hex>` or `sha512:<128 hex>`.
    #[error("invalid digest {0:?}")]
    DigestInvalid(String),

    /// The configuration file is malformed or asks for something impossible.
    #[error("{}: {message}", location(path, *line, key))]
    Config {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },

    /// A setting given on the command line (no file) cannot work.
    #[error("invalid configuration: {0}")]
    Invalid(String),

    /// An upstream request failed (every upstream of the route, when it has several).
    #[error(transparent)]
    Upstream(#[from] registry_client::Error),
}

impl Error {
    /// The configuration file's error, from the SDK's TOML reader.
    pub(crate) fn config_file(error: registry_client::Error) -> Error {
        match error {
            registry_client::Error::ConfigFile {
                path,
                line,
                key,
                message,
            } => Error::Config {
                path,
                line,
                key,
                message,
            },
            other => Error::Upstream(other),
        }
    }

    /// The upstream said what was asked for is not there: an answer, not a failure.
    pub(crate) fn is_not_found_upstream(&self) -> bool {
        matches!(self, Error::Upstream(e) if e.is_not_found())
    }

    pub(crate) fn storage(context: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Storage {
            context: context.into(),
            source: source.into(),
        }
    }
}

fn location(path: &std::path::Path, line: Option<usize>, key: &Option<String>) -> String {
    let mut location = path.display().to_string();
    if let Some(line) = line {
        location.push_str(&format!(", line {line}"));
    }
    if let Some(key) = key {
        location.push_str(&format!(", {key}"));
    }
    location
}
