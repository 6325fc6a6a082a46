//! Running the built `mcreg` binary, isolated from the user's configuration, and a tiny
//! HTTP fake for cloud token APIs.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use conformance::harness::{AuthMode, TestRegistry};
use serde_json::Value;

/// The binary under test.
pub const MCREG: &str = env!("CARGO_BIN_EXE_mcreg");

/// A password that must never appear in any output.
pub const SECRET_MARK: &str = "hunter2";

/// Environment variables of the test process that must not reach the child.
const SCRUBBED: &[&str] = &[
    "RUST_LOG",
    "MCREG_PROVIDER",
    "MCREG_ENDPOINT",
    "MCREG_REGION",
    "MCREG_CACHE_DIR",
    "MCREG_REGISTRIES_CONF",
    "MCREG_HOSTS_DIR",
    "CONTAINERS_REGISTRIES_CONF",
    "DOCKER_CONFIG",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABA_CLOUD_CR_ENDPOINT",
];

/// What a run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("code", &self.code)
            .field("stdout", &self.stdout_text())
            .field("stderr", &self.stderr)
            .finish()
    }
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stdout parsed as JSON; panics with the whole run when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Panics unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            code,
            "exit code; stdout: {}\nstderr: {}",
            self.stdout_text(),
            self.stderr
        );
        self
    }

    pub fn ok(self) -> Self {
        self.expect_code(0)
    }
}

/// A sandbox: an empty `DOCKER_CONFIG` and `HOME`, so the user's docker, AWS, gcloud and
/// other configuration is never read.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("mcreg-cli-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        for sub in ["docker", "home"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        let mut env = BTreeMap::new();
        env.insert("DOCKER_CONFIG".to_owned(), path_str(&dir.path().join("docker")));
        env.insert("HOME".to_owned(), path_str(&dir.path().join("home")));
        // No cloud metadata service is ever asked.
        env.insert("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned());
        env.insert("GCE_METADATA_HOST".to_owned(), "127.0.0.1:1".to_owned());
        Sandbox { dir, env }
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.insert(name.to_owned(), value.into());
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `program` with `args`, `stdin` (closed when `None`), output captured.
    pub fn run_program(&self, program: impl AsRef<OsStr>, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let mut command = Command::new(program);
        for name in SCRUBBED {
            command.env_remove(name);
        }
        command
            .args(args)
            .envs(&self.env)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("run mcreg");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input).expect("write stdin");
        }
        let output = child.wait_with_output().expect("wait for mcreg");
        Run {
            code: output.status.code().expect("exited, not killed"),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `mcreg args…`.
    pub fn mcreg(&self, args: &[&str]) -> Run {
        self.run_program(MCREG, args, None)
    }

    /// Runs `mcreg args…` with `stdin`.
    pub fn mcreg_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.run_program(MCREG, args, Some(stdin))
    }

    /// Runs `mcreg args…` with the registry's pull credentials, if it has any
    /// (`--username USER --password-stdin`, the password on stdin).
    pub fn mcreg_as_user(&self, registry: &TestRegistry, args: &[&str]) -> Run {
        match registry.credentials() {
            Some((user, password)) => {
                let mut all = vec!["--username", user.as_str(), "--password-stdin"];
                all.extend_from_slice(args);
                self.run_program(MCREG, &all, Some(format!("{password}\n").as_bytes()))
            }
            None => self.mcreg(args),
        }
    }

    /// A symlink named `docker-credential-mcreg` to the binary.
    pub fn helper(&self) -> PathBuf {
        let dir = self.path("helper-bin");
        let link = dir.join("docker-credential-mcreg");
        if !link.exists() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::os::unix::fs::symlink(MCREG, &link).expect("symlink");
        }
        link
    }
}

pub fn path_str(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

pub const MODES: [AuthMode; 3] = [AuthMode::None, AuthMode::Basic, AuthMode::Token];

/// One request a [`FakeHttp`] received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
}

type Handler = dyn Fn(&Request) -> (u16, String) + Send + Sync;

/// A minimal HTTP/1.1 server on loopback, on its own thread: every request gets what
/// `handler` answers (status, JSON body). Enough for a cloud token API.
pub struct FakeHttp {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeHttp {
    pub fn start(handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        FakeHttp { addr, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request { method, path };
        let (status, answer) = handler(&request);
        log.lock().unwrap().push(request);
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
