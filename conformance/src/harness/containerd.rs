//! A containerd daemon of the test's own (root, state and socket in a
//! scratch directory, the CRI plugin off), and `ctr` talking to it: a real
//! containerd client for mirrors and pull-through caches. Needs root.
//!
//! Namespaces do not share content (`content_sharing_policy = "isolated"`):
//! a pull in a fresh namespace fetches every blob, even ones another
//! namespace has.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running containerd; killed on drop.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd and waits until `ctr version` answers. Panics with
    /// its log if it does not within 15 s, or with the install hint if it is
    /// not installed.
    pub fn start() -> Containerd {
        let dir = super::scratch_dir("containerd");
        let path = |name: &str| dir.path().join(name);
        let config = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {:?}\n\
             [plugins.\"io.containerd.metadata.v1.bolt\"]\n  content_sharing_policy = \"isolated\"\n",
            path("root"),
            path("state"),
            path("containerd.sock"),
        );
        std::fs::write(path("config.toml"), config).expect("write containerd config");
        let log = std::fs::File::create(path("containerd.log")).expect("create containerd log");
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(path("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let child = match super::spawn_tied_to_process(command) {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("containerd not found: run scripts/install-test-tools.sh (apt-get install containerd)")
            }
            Err(e) => panic!("cannot start containerd: {e}"),
        };
        let containerd = Containerd { child, dir };
        containerd.wait_ready();
        containerd
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let answered = Command::new("ctr")
                .arg("--address")
                .arg(self.socket())
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success());
            if answered {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "containerd did not answer within {READY_TIMEOUT:?}: {}",
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
        );
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// `ctr --address <socket>`: add the arguments (for a test that expects it to fail).
    pub fn ctr_command(&self) -> Command {
        let mut command = Command::new("ctr");
        command.arg("--address").arg(self.socket());
        command
    }

    /// Runs `ctr --address <socket> ARGS…` and returns its stdout; panics
    /// with its output when it fails.
    pub fn ctr(&self, args: &[&str]) -> String {
        super::tools::run(self.ctr_command().args(args))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
