//! The client side of docker's credential-helper protocol.
//!
//! `docker-credential-<name> get` reads a server URL on stdin and answers
//! `{"ServerURL":"…","Username":"…","Secret":"…"}` on stdout. A `Username` of
//! `<token>` means `Secret` is an identity (refresh) token. When it has nothing
//! for the URL it exits non-zero and says `credentials not found in native
//! keychain`.
//!
//! A helper's output holds secrets, so no error or log line here ever quotes it.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::driver::auth::credentials::Credentials;
use crate::error::{Error, Result};

/// The prefix of every helper binary: `docker-credential-<name>`.
pub const PROGRAM_PREFIX: &str = "docker-credential-";

/// The `Username` that marks `Secret` as an identity token.
pub const TOKEN_USERNAME: &str = "<token>";

/// What a helper says when it has no credentials for a server.
pub const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";

/// How long a helper may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON a helper's `get` prints (and its `store` reads).
///
/// `Debug` never shows the secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperCredentials {
    #[serde(rename = "ServerURL", default)]
    pub server_url: String,
    #[serde(rename = "Username", default)]
    pub username: String,
    #[serde(rename = "Secret", default)]
    pub secret: String,
}

impl HelperCredentials {
    /// The helper answer for `credentials`: an identity token is sent with the
    /// username `<token>`.
    pub fn from_credentials(server_url: impl Into<String>, credentials: &Credentials) -> Self {
        let username = match credentials {
            Credentials::Basic { username, .. } => username.clone(),
            _ => TOKEN_USERNAME.to_owned(),
        };
        HelperCredentials {
            server_url: server_url.into(),
            username,
            secret: credentials.secret().to_owned(),
        }
    }

    /// The credentials this answer stands for; `None` when it is empty.
    pub fn into_credentials(self) -> Option<Credentials> {
        if self.secret.is_empty() && self.username.is_empty() {
            None
        } else if self.username == TOKEN_USERNAME {
            Some(Credentials::identity_token(self.secret))
        } else {
            Some(Credentials::basic(self.username, self.secret))
        }
    }
}

impl fmt::Debug for HelperCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelperCredentials")
            .field("server_url", &self.server_url)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One credential helper, `docker-credential-<name>`, found on `PATH` or in a
/// given directory.
#[derive(Debug, Clone)]
pub struct CredentialHelper {
    name: String,
    search_path: Option<PathBuf>,
    timeout: Duration,
}

impl CredentialHelper {
    /// The helper called `name` (e.g. `desktop`, `pass`, `ecr-login`), looked up on `PATH`.
    pub fn new(name: impl Into<String>) -> Self {
        CredentialHelper {
            name: name.into(),
            search_path: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Looks the binary up in `dir` instead of on `PATH`.
    pub fn with_search_path(mut self, dir: impl Into<PathBuf>) -> Self {
        self.search_path = Some(dir.into());
        self
    }

    /// How long the helper may run (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The helper's name as configured, e.g. `desktop`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The binary's file name, `docker-credential-<name>`.
    pub fn program(&self) -> String {
        format!("{PROGRAM_PREFIX}{}", self.name)
    }

    /// Asks the helper for the credentials of `server_url`; `None` when it has none.
    pub async fn get(&self, server_url: &str) -> Result<Option<Credentials>> {
        let program = self.program();
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err(Error::InvalidConfig(format!(
                "invalid credential helper name {:?}",
                self.name
            )));
        }
        let path = match &self.search_path {
            Some(dir) => dir.join(&program),
            None => PathBuf::from(&program),
        };
        tracing::debug!(helper = %program, server_url, "asking credential helper");
        let run = run_get(&path, server_url);
        let output = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::InvalidConfig(match &self.search_path {
                    Some(dir) => format!("{program} was not found in {}", dir.display()),
                    None => format!("{program} was not found on PATH"),
                }));
            }
            Ok(Err(e)) if e.kind() == ErrorKind::PermissionDenied => {
                return Err(Error::InvalidConfig(format!(
                    "{program} could not be run: permission denied"
                )));
            }
            Ok(Err(e)) => return Err(Error::io(&path, e)),
            Err(_) => {
                return Err(Error::InvalidConfig(format!(
                    "credential helper {program} timed out after {}s",
                    self.timeout.as_secs_f64()
                )));
            }
        };

        if !output.status.success() {
            if mentions_not_found(&output.stdout) || mentions_not_found(&output.stderr) {
                tracing::debug!(helper = %program, server_url, "credential helper has no credentials");
                return Ok(None);
            }
            return Err(Error::InvalidConfig(format!(
                "credential helper {program} failed for {server_url} ({})",
                output.status
            )));
        }

        let answer: HelperCredentials = serde_json::from_slice(&output.stdout).map_err(|e| {
            // serde_json's message can quote the input; give only the position.
            Error::InvalidConfig(format!(
                "credential helper {program} printed invalid credentials JSON for {server_url} \
                 (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        Ok(answer.into_credentials())
    }
}

/// Runs `docker-credential-<name> get` for the helper called `helper`, looked up on `PATH`.
pub async fn get(helper: &str, server_url: &str) -> Result<Option<Credentials>> {
    CredentialHelper::new(helper).get(server_url).await
}

/// Like [`get`], looking the binary up in `search_path` when given, else on `PATH`.
pub async fn get_in(
    helper: &str,
    server_url: &str,
    search_path: Option<&Path>,
) -> Result<Option<Credentials>> {
    let mut h = CredentialHelper::new(helper);
    if let Some(dir) = search_path {
        h = h.with_search_path(dir);
    }
    h.get(server_url).await
}

fn mentions_not_found(output: &[u8]) -> bool {
    String::from_utf8_lossy(output)
        .to_ascii_lowercase()
        .contains("credentials not found")
}

async fn run_get(path: &Path, server_url: &str) -> std::io::Result<std::process::Output> {
    let mut child = spawn(path).await?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading its input; that is its business.
        match stdin.write_all(server_url.as_bytes()).await {
            Err(e) if e.kind() != ErrorKind::BrokenPipe => return Err(e),
            _ => {}
        }
        drop(stdin);
    }
    child.wait_with_output().await
}

async fn spawn(path: &Path) -> std::io::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        let spawned = Command::new(path)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        match spawned {
            // A binary that was just written (tests, or an install in progress)
            // can be briefly busy while another thread forks.
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes an executable `docker-credential-<name>` shell script into `dir`.
    pub(crate) fn write_helper(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("{PROGRAM_PREFIX}{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A helper that answers only `get` for `url`, with `username`/`secret`.
    pub(crate) fn answering_helper(dir: &Path, name: &str, url: &str, username: &str, secret: &str) {
        write_helper(
            dir,
            name,
            &format!(
                r#"[ "$1" = get ] || {{ echo "unexpected args: $*" >&2; exit 2; }}
url=$(cat)
if [ "$url" != '{url}' ]; then echo "{NOT_FOUND_MESSAGE}"; exit 1; fi
printf '{{"ServerURL":"%s","Username":"{username}","Secret":"{secret}"}}\n' "$url""#
            ),
        );
    }

    #[tokio::test]
    async fn basic_credentials() {
        let dir = tempfile::tempdir().unwrap();
        answering_helper(dir.path(), "fake", "ghcr.io", "alice", "s3cret-pw");
        let c = get_in("fake", "ghcr.io", Some(dir.path()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.username(), Some("alice"));
        assert_eq!(c.secret(), "s3cret-pw");
        assert!(matches!(c, Credentials::Basic { .. }));
    }

    #[tokio::test]
    async fn token_username_means_identity_token() {
        let dir = tempfile::tempdir().unwrap();
        answering_helper(dir.path(), "tok", "quay.io", TOKEN_USERNAME, "refresh-tok");
        let c = CredentialHelper::new("tok")
            .with_search_path(dir.path())
            .get("quay.io")
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(c, Credentials::IdentityToken(_)), "{c:?}");
        assert_eq!(c.secret(), "refresh-tok");
    }

    #[tokio::test]
    async fn not_found_is_none() {
        let dir = tempfile::tempdir().unwrap();
        answering_helper(dir.path(), "fake", "ghcr.io", "alice", "pw");
        let c = get_in("fake", "quay.io", Some(dir.path())).await.unwrap();
        assert!(c.is_none());

        // Also when said on stderr, in other words.
        write_helper(
            dir.path(),
            "stderr",
            "echo 'error: Credentials not found' >&2; exit 1",
        );
        assert!(get_in("stderr", "x", Some(dir.path())).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn failure_names_helper_and_status_but_not_output() {
        let dir = tempfile::tempdir().unwrap();
        write_helper(
            dir.path(),
            "broken",
            "echo 'leaked-secret-xyz'; echo 'leaked-secret-xyz' >&2; exit 3",
        );
        let err = get_in("broken", "ghcr.io", Some(dir.path())).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(matches!(err, Error::InvalidConfig(_)), "{shown}");
        assert!(shown.contains("docker-credential-broken"), "{shown}");
        assert!(shown.contains("exit status: 3"), "{shown}");
        assert!(!shown.contains("leaked"), "{shown}");
    }

    #[tokio::test]
    async fn bad_json_does_not_quote_output() {
        let dir = tempfile::tempdir().unwrap();
        write_helper(
            dir.path(),
            "garbled",
            r#"echo '{"Secret": 12, "x": "leaked-secret-xyz"'"#,
        );
        let err = get_in("garbled", "ghcr.io", Some(dir.path())).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("docker-credential-garbled"), "{shown}");
        assert!(!shown.contains("leaked"), "{shown}");

        write_helper(dir.path(), "typed", r#"echo '{"Secret": ["leaked-secret-xyz"]}'"#);
        let err = get_in("typed", "ghcr.io", Some(dir.path())).await.unwrap_err();
        assert!(!format!("{err} {err:?}").contains("leaked"));
    }

    #[tokio::test]
    async fn empty_answer_is_none() {
        let dir = tempfile::tempdir().unwrap();
        write_helper(
            dir.path(),
            "empty",
            r#"cat >/dev/null; echo '{"ServerURL":"","Username":"","Secret":""}'"#,
        );
        assert!(
            get_in("empty", "ghcr.io", Some(dir.path()))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn missing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = get_in("nope", "ghcr.io", Some(dir.path()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("docker-credential-nope was not found in"), "{err}");

        let err = get("surely-not-installed-4f1c", "ghcr.io")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-surely-not-installed-4f1c was not found on PATH"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn rejects_path_like_names() {
        let err = get("../../bin/sh", "ghcr.io").await.unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    }

    #[tokio::test]
    async fn hung_helper_times_out() {
        let dir = tempfile::tempdir().unwrap();
        write_helper(dir.path(), "slow", "exec sleep 30");
        let started = std::time::Instant::now();
        let err = CredentialHelper::new("slow")
            .with_search_path(dir.path())
            .with_timeout(Duration::from_millis(300))
            .get("ghcr.io")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn helper_credentials_json_and_debug() {
        let parsed: HelperCredentials = serde_json::from_str(
            r#"{"ServerURL":"https://index.docker.io/v1/","Username":"bob","Secret":"hunter2-pw"}"#,
        )
        .unwrap();
        assert_eq!(parsed.server_url, "https://index.docker.io/v1/");
        assert_eq!(parsed.username, "bob");
        assert_eq!(parsed.secret, "hunter2-pw");
        let shown = format!("{parsed:?} {parsed:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("bob"), "{shown}");

        let back = serde_json::to_value(&parsed).unwrap();
        assert_eq!(back["ServerURL"], "https://index.docker.io/v1/");
        assert_eq!(back["Secret"], "hunter2-pw");

        let tok = HelperCredentials::from_credentials("r", &Credentials::identity_token("t"));
        assert_eq!(tok.username, TOKEN_USERNAME);
        assert!(matches!(
            tok.into_credentials(),
            Some(Credentials::IdentityToken(_))
        ));
    }
}
