//! What went wrong, as an exit code and one line of text.

use std::error::Error as StdError;
use std::fmt;

use registry_client::Error;
use registry_client::error::display_chain;

/// Exit codes, as documented in `docs/cli.md`.
pub mod code {
    pub const OK: u8 = 0;
    /// Anything not listed below (local I/O, configuration, unusable answers).
    pub const OTHER: u8 = 1;
    /// Bad command line: clap's own errors, a malformed reference or platform, an unknown provider.
    pub const USAGE: u8 = 2;
    /// The manifest, blob, repository or platform does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// Unauthorized or denied, or a provider could not produce credentials.
    pub const AUTH: u8 = 4;
    /// Connection failure, timeout, rate limit, open circuit breaker, 5xx after retries.
    pub const NETWORK: u8 = 5;
    /// Content did not match its digest or size.
    pub const INTEGRITY: u8 = 6;
}

/// A command's failure.
#[derive(Debug)]
pub enum Failure {
    /// The command line cannot work as given.
    Usage(String),
    /// The SDK failed; `context` says what the CLI was doing when it matters (e.g. writing a file).
    Client {
        context: Option<String>,
        error: Box<Error>,
    },
    /// A local I/O error outside the SDK.
    Io { context: String, source: std::io::Error },
    /// Anything else, as a sentence.
    Other(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Client {
            context: None,
            error: Box::new(error),
        }
    }
}

impl Failure {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Failure::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => code::USAGE,
            Failure::Client { error, .. } => client_code(error),
            Failure::Io { .. } | Failure::Other(_) => code::OTHER,
        }
    }

    /// One line: the sentence, then each cause after `: `. Never a debug dump.
    pub fn message(&self) -> String {
        match self {
            Failure::Usage(message) | Failure::Other(message) => one_line(message),
            Failure::Client { context, error } => {
                let chain = chain(error);
                match context {
                    Some(context) => one_line(&format!("{context}: {chain}")),
                    None => chain,
                }
            }
            Failure::Io { context, source } => one_line(&format!("{context}: {}", chain(source))),
        }
    }

    /// [`message`](Self::message) with every occurrence of each secret replaced by `***`.
    pub fn redacted_message(&self, secrets: &[&str]) -> String {
        redact(self.message(), secrets)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// The exit code for an SDK error (a mirrored image's: its last source's error).
pub fn client_code(error: &Error) -> u8 {
    match error.underlying() {
        Error::InvalidReference { .. } | Error::UnknownProvider { .. } => code::USAGE,
        Error::NotFound { .. } | Error::NoMatchingPlatform { .. } => code::NOT_FOUND,
        e if e.is_auth() => code::AUTH,
        e if e.is_integrity() => code::INTEGRITY,
        e if e.is_retryable() => code::NETWORK,
        Error::Provider { source, .. } => {
            // A provider wrapping one of our own errors (its cloud API timed out, say) is
            // classified by that error; otherwise it could not mint credentials.
            let mut cause: Option<&(dyn StdError + 'static)> = Some(source.as_ref());
            while let Some(e) = cause {
                if let Some(inner) = e.downcast_ref::<Error>() {
                    return match client_code(inner) {
                        code::OTHER => code::AUTH,
                        other => other,
                    };
                }
                cause = e.source();
            }
            code::AUTH
        }
        _ => code::OTHER,
    }
}

/// `error: cause: cause` on one line (see [`display_chain`]).
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    one_line(&display_chain(error))
}

fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces each non-empty secret in `text` with `***` (defence in depth: the SDK never puts
/// secrets in errors, and this makes sure the CLI never prints one either).
pub fn redact(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret) {
            text = text.replace(secret, "***");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use registry_client::error::Resource;

    use super::*;

    #[derive(Debug)]
    struct Wrapped(Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("token request failed")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn codes_follow_the_documented_table() {
        let cases: Vec<(Error, u8)> = vec![
            (
                Error::InvalidReference {
                    input: "A".into(),
                    part: registry_client::ReferencePart::Name,
                    reason: "upper case".into(),
                },
                2,
            ),
            (
                Error::NotFound {
                    what: Resource::Manifest,
                    name: "x".into(),
                    reference: "v1".into(),
                },
                3,
            ),
            (
                Error::NoMatchingPlatform {
                    requested: "linux/s390x".into(),
                    available: vec![],
                },
                3,
            ),
            (
                Error::Unauthorized {
                    host: "h".into(),
                    message: String::new(),
                },
                4,
            ),
            (
                Error::Denied {
                    host: "h".into(),
                    message: String::new(),
                },
                4,
            ),
            (Error::Timeout { host: "h".into() }, 5),
            (
                Error::CircuitOpen {
                    host: "h".into(),
                    retry_in: Duration::from_secs(1),
                },
                5,
            ),
            (
                Error::RateLimited {
                    host: "h".into(),
                    retry_after: None,
                    limit: None,
                },
                5,
            ),
            (
                Error::Registry {
                    host: "h".into(),
                    status: 503,
                    errors: vec![],
                },
                5,
            ),
            (
                Error::Registry {
                    host: "h".into(),
                    status: 400,
                    errors: vec![],
                },
                1,
            ),
            (
                Error::DigestMismatch {
                    expected: "a".into(),
                    actual: "b".into(),
                },
                6,
            ),
            (
                Error::SizeMismatch {
                    digest: "a".into(),
                    expected: 1,
                    actual: 2,
                },
                6,
            ),
            (Error::InvalidConfig("x".into()), 1),
            (Error::provider("aws", "no credentials in the environment"), 4),
            (
                Error::provider("aws", Wrapped(Error::Timeout { host: "api".into() })),
                5,
            ),
        ];
        for (error, want) in cases {
            assert_eq!(client_code(&error), want, "{error}");
        }
    }

    #[test]
    fn messages_chain_causes_on_one_line() {
        let failure = Failure::from(Error::provider(
            "aws",
            Wrapped(Error::Timeout { host: "api".into() }),
        ));
        assert_eq!(
            failure.message(),
            "provider aws failed: token request failed: timed out talking to api"
        );
        let failure = Failure::io(
            "cannot read x",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone\nreally"),
        );
        assert_eq!(failure.message(), "cannot read x: gone really");
    }

    #[test]
    fn secrets_are_redacted() {
        let failure = Failure::Other("bad password hunter2 for hunter2".into());
        assert_eq!(
            failure.redacted_message(&["hunter2", ""]),
            "bad password *** for ***"
        );
    }
}
