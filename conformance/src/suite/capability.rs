//! What an endpoint under test can do, what each case needs of it, and how a
//! case's outcome is recorded: run, skipped for a capability the endpoint
//! lacks (said, never silent), passed or failed.

use std::fmt;
use std::io::Write;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use futures::future::{BoxFuture, LocalBoxFuture};
use registry_client::RepositoryClient;

use super::env::SuiteEnv;
use crate::harness::AuthMode;

/// Something an endpoint under test supports. A case runs only where the
/// endpoint has everything it needs; elsewhere it is reported skipped, naming
/// what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Capability {
    /// Manifests, configs, blobs and tag lists read.
    Pull,
    /// Blobs uploaded and manifests put.
    Push,
    /// A blob mounted from another repository of the registry.
    Mount,
    /// An upload in several `PATCH` chunks, resumed from the registry's offset.
    ChunkedUpload,
    /// `/v2/_catalog`, followed page by page.
    Catalog,
    /// Tag lists a page at a time (`n=`, `last=`, `Link`).
    TagPagination,
    /// Manifests and blobs deleted.
    Delete,
    /// The referrers API (`/v2/<name>/referrers/<digest>`).
    Referrers,
    /// The client's requests reach the registry as it made them, and faults
    /// injected there reach the client: nothing answers in between (a cache
    /// does). Cases that count requests or inject faults need it.
    Transparent,
    /// The endpoint asks for credentials (Basic or token auth). Given by the mode.
    Credentials,
    /// The endpoint hands out bearer tokens from a token service. Given by the mode.
    Tokens,
}

/// What an endpoint in front of the harness's Distribution registry (behind
/// the fault proxy) supports, whatever provider's client talks to it. Not
/// [`Capability::TagPagination`]: Distribution 2.8 ignores `n` on tag lists
/// and answers every tag at once (it does page the catalog).
pub const DISTRIBUTION: &[Capability] = &[
    Capability::Pull,
    Capability::Push,
    Capability::Mount,
    Capability::ChunkedUpload,
    Capability::Catalog,
    Capability::Transparent,
];

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An endpoint under test: a provider against its emulator, the generic
/// provider against Distribution, the cache, a mirror.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// How the conformance matrix names it.
    pub name: &'static str,
    /// What it supports in every auth mode ([`Capability::Credentials`] and
    /// [`Capability::Tokens`] come from the mode).
    pub capabilities: &'static [Capability],
}

impl Endpoint {
    /// What it supports when its registry runs in `mode`.
    pub fn capabilities_in(&self, mode: AuthMode) -> Vec<Capability> {
        let mut all = self.capabilities.to_vec();
        match mode {
            AuthMode::None => {}
            AuthMode::Basic => all.push(Capability::Credentials),
            AuthMode::Token => all.extend([Capability::Credentials, Capability::Tokens]),
        }
        all
    }
}

/// Starts an endpoint's environment in an auth mode.
pub type StartEnv = fn(AuthMode) -> BoxFuture<'static, SuiteEnv>;
/// One case of the suite.
pub type CaseFn = for<'a> fn(&'a RepositoryClient, &'a SuiteEnv) -> LocalBoxFuture<'a, ()>;

/// What became of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// Not run: the endpoint lacks these.
    Skipped(Vec<Capability>),
    Failed,
}

/// Runs `case` against `endpoint` in `mode` when the endpoint has what it
/// `needs`, else says why not; either way the outcome is recorded (see
/// [`REPORT_VARIABLE`]). A failing case still fails its test.
pub async fn run_case(
    endpoint: &Endpoint,
    mode: AuthMode,
    name: &str,
    needs: &[Capability],
    start: StartEnv,
    case: CaseFn,
) {
    let have = endpoint.capabilities_in(mode);
    let missing: Vec<Capability> = needs.iter().copied().filter(|n| !have.contains(n)).collect();
    if !missing.is_empty() {
        eprintln!(
            "conformance: {} {mode:?} {name}: skipped, the endpoint lacks {}",
            endpoint.name,
            list(&missing)
        );
        record(endpoint, mode, name, &Outcome::Skipped(missing));
        return;
    }
    let env = start(mode).await;
    let client = env.client();
    let ran = AssertUnwindSafe(case(&client, &env)).catch_unwind().await;
    let outcome = match ran {
        Ok(()) => Outcome::Passed,
        Err(_) => Outcome::Failed,
    };
    record(endpoint, mode, name, &outcome);
    if let Err(panic) = ran {
        std::panic::resume_unwind(panic);
    }
}

/// When set, each case appends its outcome to the file it names, one line of
/// `endpoint<TAB>mode<TAB>case<TAB>outcome` (what `scripts/conformance-matrix.sh`
/// reads).
pub const REPORT_VARIABLE: &str = "CONFORMANCE_REPORT";

fn record(endpoint: &Endpoint, mode: AuthMode, name: &str, outcome: &Outcome) {
    let Some(path) = std::env::var_os(REPORT_VARIABLE) else {
        return;
    };
    let outcome = match outcome {
        Outcome::Passed => "passed".to_owned(),
        Outcome::Failed => "failed".to_owned(),
        Outcome::Skipped(missing) => format!("skipped: needs {}", list(missing)),
    };
    let line = format!("{}\t{mode:?}\t{name}\t{outcome}\n", endpoint.name);
    // One write of one short line to a file opened for appending: lines of
    // tests running at once do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        panic!("cannot record to {}: {error}", path.to_string_lossy());
    }
}

fn list(capabilities: &[Capability]) -> String {
    capabilities
        .iter()
        .map(Capability::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
