//! docker's credential-helper protocol, answered with cloud credentials.
//!
//! `docker-credential-mcreg get` (or `mcreg credential-helper get`) reads a server URL on
//! stdin and prints `{"ServerURL":…,"Username":…,"Secret":…}`. The credentials come from the
//! cloud provider that serves the host (ECR, Artifact Registry/gcr.io, ACR), asked the way the
//! transport asks it when a registry sends a Basic challenge. Hosts no cloud provider serves
//! get docker's "not found" answer: this helper never reads docker's `config.json` (it may be
//! named there as `credsStore`, and would then ask itself).
//!
//! Cloud credentials are minted on demand, not stored: `store` and `erase` read their input
//! and succeed without storing anything, and `list` prints `{}`.

use std::io::{Read, Write};

use registry_client::driver::auth::credential_helper::{HelperCredentials, NOT_FOUND_MESSAGE};
use registry_client::driver::{self, oci};
use registry_client::{AuthRequest, Challenge, Credentials, ProviderConfig};

use crate::cli::{HELPER_PROGRAM, HelperAction};
use crate::exit::chain;

/// What the helper prints on stdout, and its exit code (0, or 1 for any failure).
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub stdout: Vec<u8>,
    pub code: u8,
}

impl Answer {
    fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        Answer {
            stdout: stdout.into(),
            code: 0,
        }
    }

    /// docker's helpers print the error on stdout and exit 1.
    fn fail(message: &str) -> Self {
        Answer {
            stdout: format!("{message}\n").into_bytes(),
            code: 1,
        }
    }
}

/// Runs `action` on the process's stdin and stdout; returns the exit code.
pub async fn run(action: HelperAction, region: Option<String>) -> u8 {
    let mut input = Vec::new();
    if matches!(
        action,
        HelperAction::Get | HelperAction::Store | HelperAction::Erase
    ) && let Err(e) = std::io::stdin().read_to_end(&mut input)
    {
        let answer = Answer::fail(&format!("cannot read stdin: {e}"));
        let _ = std::io::stdout().write_all(&answer.stdout);
        return answer.code;
    }
    let answer = answer(action, &input, region).await;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(&answer.stdout)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return 1;
    }
    answer.code
}

/// The protocol itself: `input` is what docker wrote on stdin.
pub async fn answer(action: HelperAction, input: &[u8], region: Option<String>) -> Answer {
    match action {
        HelperAction::Get => get(input, region).await,
        HelperAction::Store => {
            // The input holds a secret: it is neither kept nor shown.
            tracing::debug!("store: cloud credentials are minted on demand; nothing is stored");
            Answer::ok("")
        }
        HelperAction::Erase => {
            tracing::debug!("erase: nothing is stored, so nothing is erased");
            Answer::ok("")
        }
        HelperAction::List => Answer::ok("{}\n"),
        HelperAction::Version => Answer::ok(format!(
            "{HELPER_PROGRAM} (mcreg) {}\n",
            env!("CARGO_PKG_VERSION")
        )),
    }
}

async fn get(input: &[u8], region: Option<String>) -> Answer {
    let server_url = String::from_utf8_lossy(input).trim().to_owned();
    if server_url.is_empty() {
        return Answer::fail("no credentials server URL");
    }
    let Some(host) = host_of(&server_url) else {
        return Answer::fail(&format!("invalid server URL {server_url:?}"));
    };
    match credentials(&host, region).await {
        Ok(Some(Credentials::RegistryToken(_))) => Answer::fail(&format!(
            "the provider for {host} gave a registry token, which docker's credential-helper protocol cannot carry"
        )),
        Ok(Some(credentials)) => {
            let answer = HelperCredentials::from_credentials(server_url, &credentials);
            match serde_json::to_string(&answer) {
                Ok(json) => Answer::ok(format!("{json}\n")),
                Err(e) => Answer::fail(&format!("cannot encode the credentials: {e}")),
            }
        }
        Ok(None) => Answer::fail(NOT_FOUND_MESSAGE),
        Err(e) => Answer::fail(&chain(&e)),
    }
}

/// Asks the cloud provider serving `host`, as if the registry had sent a Basic challenge.
/// `None` when no cloud provider serves the host, or it has nothing for it.
async fn credentials(host: &str, region: Option<String>) -> registry_client::Result<Option<Credentials>> {
    let id = driver::provider_for_host(host)?;
    if id == oci::ID {
        tracing::debug!(host, "no cloud provider serves this host");
        return Ok(None);
    }
    tracing::debug!(host, provider = id, "asking the provider for credentials");
    let record = driver::provider(id)?;
    let mut config = ProviderConfig::default();
    config.region = region;
    let provider = record.build(&config)?;
    let challenge = Challenge::parse_all(&format!("Basic realm=\"https://{host}/v2/\""))
        .into_iter()
        .next()
        .expect("a well-formed Basic challenge");
    let request = AuthRequest {
        host,
        challenge: &challenge,
        scope: None,
    };
    provider.credentials(&request).await
}

/// The registry host of a server URL as docker sends it: `https://host/v1/`, `host`, `host:port`.
fn host_of(server_url: &str) -> Option<String> {
    let rest = server_url.split_once("://").map_or(server_url, |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next()?;
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    valid.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_server_urls() {
        assert_eq!(host_of("https://index.docker.io/v1/").unwrap(), "index.docker.io");
        assert_eq!(
            host_of("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(host_of("Europe-Docker.pkg.dev").unwrap(), "europe-docker.pkg.dev");
        assert_eq!(host_of("localhost:5000").unwrap(), "localhost:5000");
        assert!(host_of("https://").is_none());
        assert!(host_of("a\"b").is_none());
    }

    #[tokio::test]
    async fn other_hosts_are_not_found() {
        let answer = answer(HelperAction::Get, b"https://index.docker.io/v1/\n", None).await;
        assert_eq!(answer, Answer::fail(NOT_FOUND_MESSAGE));
        assert_eq!(answer.stdout, b"credentials not found in native keychain\n");
    }

    #[tokio::test]
    async fn store_erase_and_list() {
        let stored = br#"{"ServerURL":"x","Username":"u","Secret":"s"}"#;
        assert_eq!(answer(HelperAction::Store, stored, None).await, Answer::ok(""));
        assert_eq!(answer(HelperAction::Erase, b"x", None).await, Answer::ok(""));
        assert_eq!(answer(HelperAction::List, b"", None).await, Answer::ok("{}\n"));
        assert_eq!(answer(HelperAction::Get, b"  \n", None).await.code, 1);
    }
}
