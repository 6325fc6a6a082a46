//! Test infrastructure: a real CNCF Distribution registry (`docker-registry`) in three auth
//! modes, an in-process Docker token server, and deterministic fixture images.
//!
//! ```no_run
//! # async fn demo() {
//! use conformance::harness::{AuthMode, TestRegistry};
//! let registry = TestRegistry::start(AuthMode::Token).await;
//! let image = &registry.fixtures().single_oci;
//! println!("{} has manifest {}", image.reference(&registry.host()), image.digest);
//! # }
//! ```
//!
//! Everything here is plain reqwest/axum/tokio and does not use `registry-client`, so the
//! harness can test that crate without trusting it.
//!
//! Nothing here depends on the caller's tokio runtime staying alive: the registry is a
//! `std::process::Child`, the token server runs on its own thread, and the one-time fixture
//! seeding runs on a thread of its own. A `TestRegistry` can therefore be used from
//! `#[tokio::test]` (current-thread) while the test also runs blocking tools like skopeo.

pub mod cloud;
pub mod containerd;
pub mod fault_proxy;
pub mod fixtures;
pub mod hung;
pub mod logs;
pub mod moto;
pub mod own_process;
pub mod registry;
pub mod server;
pub mod token_server;
pub mod tools;

pub use containerd::Containerd;
pub use fixtures::{
    FileKind, FixtureFile, Fixtures, ImageFixture, IndexFixture, LayerFixture, Platform, Pusher, TagsFixture,
    fixtures,
};
pub use hung::HungServer;
pub use moto::moto_url;
pub use own_process::alone_in_process;
pub use registry::{
    AuthMode, CaSignedTlsFiles, TestRegistry, TlsFiles, write_ca_signed_tls_files, write_tls_files,
};
pub use server::BackgroundServer;
pub use token_server::{Access, TokenRequest, TokenServer};

use sha2::{Digest as _, Sha256};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock, mpsc};

/// User that `Basic` and `Token` registries accept, with pull access.
pub const USER: &str = "mcreg-user";
/// User with pull, push and delete access (token mode; any valid user can push with Basic).
pub const ADMIN: &str = "mcreg-admin";
/// Repositories under this prefix take pushes from the pull user too (in token mode, where
/// the token server decides; Basic and no auth let anyone push anywhere): a team's own
/// namespace, so that every provider's own credentials can run the push cases.
pub const PUSH_NAMESPACE: &str = "pushed/";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Prefix of every scratch directory this process creates under the system temp dir. The pid
/// in it lets a later run remove what a crashed run left behind ([`remove_stale_dirs`]).
fn scratch_prefix() -> String {
    format!("mcreg-conformance-{}-", std::process::id())
}

/// A fresh temporary directory that is removed on drop.
pub(crate) fn scratch_dir(kind: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{}{kind}-", scratch_prefix()))
        .tempdir()
        .expect("create temp dir")
}

/// Removes `mcreg-conformance-<pid>-*` directories whose process is gone (Linux: `/proc`).
pub(crate) fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("mcreg-conformance-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1 (nothing listens there:
/// connections to it are refused). Racy by nature; callers retry on bind errors.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Recursively copies `from` into the new directory `to` (plain copies, not hard links:
/// Distribution rewrites some files in place, which would leak into a shared inode).
pub(crate) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest: PathBuf = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// A random alphanumeric string (passwords, token ids).
pub(crate) fn random_string(len: usize) -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Runs one of the real tools the tests check against (skopeo, podman, umoci…) and returns
/// its stdout, panicking with its stderr on failure, or with a pointer to
/// `scripts/install-test-tools.sh` when it is not installed.
pub fn run_tool(program: &str, args: &[&str]) -> String {
    tools::run(Command::new(program).args(args))
}

/// Spawns a server process (a registry, containerd) that dies with the test
/// process, even if the test crashes before its `Drop` runs.
pub(crate) fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    spawn_from_long_lived_thread(cmd)
}

/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process.
/// Forking from one thread that lives as long as the process makes the registry's lifetime
/// independent of which test thread (or tokio worker) happened to start it.
fn spawn_from_long_lived_thread(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("mcreg-registry-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn spawner thread");
        Mutex::new(tx)
    });
    let (reply, result) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply))
        .expect("spawner thread alive");
    result.recv().expect("spawner thread answered")
}

/// `len` bytes of xorshift noise: content that does not compress, and no two seeds give
/// the same bytes (blobs for tests that need them distinct or large).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    data
}
