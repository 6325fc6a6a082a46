//! `mcreg serve` as a real service: it starts with one command, pulls go
//! through it, it logs one line per request (with the upstream, the bytes
//! and the time), reads upstream credentials from the environment or
//! docker's `config.json` without ever printing them, keeps its cache in
//! the default directory when given none, refuses a bad config file with
//! the file and key, and stops cleanly on SIGTERM.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{MCREG, Sandbox, path_str};
use conformance::harness::fault_proxy::{Fault, FaultProxy, Matcher};
use conformance::harness::tools::{layout_digest, skopeo};
use conformance::harness::{AuthMode, Pusher, TestRegistry, free_port};
use serde_json::Value;

/// A running `mcreg serve`; killed if the test did not stop it.
/// `mcreg serve` running as a child process (the referrers tests use it too).
pub(crate) struct Server {
    child: Child,
    port: u16,
    /// Reads stderr as it comes (a full pipe would block the server).
    log: Option<JoinHandle<String>>,
}

impl Server {
    /// `mcreg serve --listen 127.0.0.1:<free port> --cache-dir <sandbox>/cache ARGS`.
    pub(crate) fn start(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Server {
        let cache = path_str(&sandbox.path("cache"));
        let mut all = vec!["--cache-dir", cache.as_str()];
        all.extend_from_slice(args);
        Server::start_without_cache_dir(sandbox, &all, env)
    }

    /// `mcreg serve --listen 127.0.0.1:<free port> ARGS`, with `HOME` and
    /// `DOCKER_CONFIG` in the sandbox and none of the variables that choose
    /// a cache directory or a configuration, unless `env` sets them.
    fn start_without_cache_dir(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(sandbox, &[], args, env)
    }

    /// [`start_without_cache_dir`](Self::start_without_cache_dir) through
    /// `launcher` (`prlimit --nofile=256:256 --`, say), which must exec
    /// `mcreg` so that the child's pid is the server's.
    fn launch(sandbox: &Sandbox, launcher: &[&str], args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = match launcher.split_first() {
            Some((program, launcher_args)) => {
                let mut command = Command::new(program);
                command.args(launcher_args).arg(MCREG);
                command
            }
            None => Command::new(MCREG),
        };
        command
            .args(["serve", "--listen", &listen])
            .args(args)
            .env("HOME", sandbox.path("home"))
            .env("DOCKER_CONFIG", sandbox.path("docker"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for name in [
            "RUST_LOG",
            "XDG_CACHE_HOME",
            "MCREG_SERVE_CACHE_DIR",
            "MCREG_SERVE_CONFIG",
            "MCREG_SERVE_LISTEN",
        ] {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start mcreg serve");
        let mut stderr = child.stderr.take().expect("stderr");
        let log = std::thread::spawn(move || {
            let mut log = String::new();
            let _ = stderr.read_to_string(&mut log);
            log
        });
        let server = Server {
            child,
            port,
            log: Some(log),
        };
        server.wait_ready();
        server
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mcreg serve did not listen on {}", self.host());
    }

    /// The server's process id.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and returns the exit code and everything it logged.
    pub(crate) fn terminate(self) -> (i32, String) {
        self.signal_term();
        self.wait()
    }

    /// Sends SIGTERM, without waiting for the server to stop.
    fn signal_term(&self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(killed.success());
    }

    /// Waits for the server to exit: its exit code and everything it logged.
    fn wait(mut self) -> (i32, String) {
        let status = self.child.wait().expect("wait");
        let log = self
            .log
            .take()
            .map(|reader| reader.join().expect("the log reader"))
            .unwrap_or_default();
        (status.code().unwrap_or(-1), log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET target` from `host` (see [`http_request`]): the status and the body.
fn http_get(host: &str, target: &str) -> (u16, Vec<u8>) {
    let answer = http_request(host, "GET", target);
    (answer.status, answer.body)
}

/// The code of a registry error body.
fn error_code(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not a JSON error ({e}): {}", String::from_utf8_lossy(body)));
    value["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
}

/// The value of `name=` in an access log line.
fn field<'l>(line: &'l str, name: &str) -> Option<&'l str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split_whitespace().next()
}

/// Standard base64 (for a `config.json` `auth`, as `docker login` writes it).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Where a route's blob lives in a cache directory (docs/proxy.md, "On disk").
fn blob_file(cache: &Path, route: &str, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    cache.join(format!("store/routes/{route}/blobs/sha256/{hex}"))
}

/// Waits until no blob fill is under way (`mcreg_fills_in_flight 0`): a fill ends just
/// after its file is committed, and a request that comes while it ends joins it (a `MISS`).
fn wait_for_fills_to_end(host: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let (status, body) = http_get(host, "/metrics");
        let text = String::from_utf8_lossy(&body);
        if status == 200 && text.lines().any(|l| l == "mcreg_fills_in_flight 0") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits for a blob's commit (it lands just after its bytes were sent).
fn wait_for_file(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if path.is_file() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn serve_caches_a_registry_logs_each_request_and_stops_on_sigterm() {
    let registry = TestRegistry::start(AuthMode::Basic).await;
    let (user, password) = registry.credentials().expect("Basic");
    let sandbox = Sandbox::new();
    // The route for 127.0.0.1:PORT is named 127-0-0-1-PORT.
    let env_name = format!("MCREG_UPSTREAM_127_0_0_1_{}", registry.port());
    let (user_var, password_var) = (format!("{env_name}_USERNAME"), format!("{env_name}_PASSWORD"));
    // Content fetched with credentials is not served to anyone unless asked.
    let refused = Command::new(MCREG)
        .args(["serve", "--upstream", &registry.host()])
        .args(["--cache-dir", &path_str(&sandbox.path("cache"))])
        .env("HOME", sandbox.path("home"))
        .envs([(&user_var, &user), (&password_var, &password)])
        .output()
        .expect("run mcreg serve");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("--public") && said.contains("--htpasswd"), "{said}");
    let server = Server::start(
        &sandbox,
        &["--upstream", &registry.host(), "--public", "-vv"],
        &[(&user_var, &user), (&password_var, &password)],
    );

    let fixture = &registry.fixtures().single_oci;
    let image = fixture.reference(&server.host());
    for expected in ["MISS", "HIT"] {
        let out = path_str(&sandbox.path(&format!("{expected}.tar")));
        let run = sandbox.mcreg(&["pull", &image, "-o", &out, "--json"]).ok();
        let report = run.json();
        assert_eq!(report["digest"], fixture.digest.as_str(), "{expected}");
        assert_eq!(report["source"], server.host().as_str());
    }

    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    let requests: Vec<&str> = log.lines().filter(|l| l.contains(" request ")).collect();
    let manifest = format!("/v2/{}/manifests/v1", fixture.repository);
    let route = format!("route=127-0-0-1-{}", registry.port());
    for cache in ["MISS", "HIT"] {
        let line = requests
            .iter()
            .find(|l| l.contains(&manifest) && l.contains(&format!("cache={cache}")))
            .unwrap_or_else(|| panic!("no {cache} line for {manifest} in:\n{log}"));
        assert!(line.contains("status=200") && line.contains(&route), "{line}");
    }
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains(&password),
        "the upstream password was logged:\n{log}"
    );
}

/// At the default verbosity, the access line of a blob `GET` names the
/// route, the cache result, the upstream that served a `MISS` (none for a
/// `HIT`), the bytes sent (the blob's size) and the time taken (`ms=`).
#[tokio::test]
async fn the_access_log_names_the_upstream_bytes_and_time_of_a_blob() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox, &["--upstream", &registry.host()], &[]);
    let layer = &registry.fixtures().single_oci.layers[0];
    let path = format!("/v2/single/oci/blobs/{}", layer.digest);
    for _ in ["MISS", "HIT"] {
        let (status, body) = http_get(&server.host(), &path);
        assert_eq!(status, 200);
        assert_eq!(body, layer.data.as_ref());
        // The HIT must find the blob committed and its fill ended.
        assert!(wait_for_file(&blob_file(
            &sandbox.path("cache"),
            &format!("127-0-0-1-{}", registry.port()),
            &layer.digest
        )));
        assert!(wait_for_fills_to_end(&server.host()), "a fill never ended");
    }

    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains(" DEBUG "),
        "debug lines at the default verbosity:\n{log}"
    );
    let line = |cache: &str| {
        log.lines()
            .find(|l| {
                l.contains(" request ") && field(l, "path") == Some(&path) && field(l, "cache") == Some(cache)
            })
            .unwrap_or_else(|| panic!("no {cache} line for {path} in:\n{log}"))
    };
    let route = format!("127-0-0-1-{}", registry.port());
    let size = layer.size.to_string();
    for (cache, upstream) in [("MISS", registry.host()), ("HIT", "-".to_owned())] {
        let line = line(cache);
        assert_eq!(field(line, "method"), Some("GET"), "{line}");
        assert_eq!(field(line, "status"), Some("200"), "{line}");
        assert_eq!(field(line, "route"), Some(route.as_str()), "{line}");
        assert_eq!(field(line, "upstream"), Some(upstream.as_str()), "{line}");
        assert_eq!(field(line, "bytes"), Some(size.as_str()), "{line}");
        assert!(
            field(line, "ms").is_some_and(|ms| ms.parse::<u64>().is_ok()),
            "no time in milliseconds: {line}"
        );
    }
}

/// Upstream credentials from docker's `config.json` alone (`DOCKER_CONFIG`,
/// an `auths` entry with base64 `user:password`, as `docker login` writes
/// it): the cache fetches from a registry that needs them, and a pull
/// through it works. Without the file the registry refuses the cache (`403
/// DENIED`); with it, the cache will not start until told `--public`. The
/// password, and the `auth` value, never appear in the log, even at `-vv`.
#[tokio::test]
async fn serve_fetches_with_credentials_from_docker_config_json() {
    let registry = TestRegistry::start(AuthMode::Basic).await;
    let (user, password) = registry.credentials().expect("Basic");
    let auth = base64(format!("{user}:{password}").as_bytes());
    let sandbox = Sandbox::new();
    let docker_config = sandbox.path("server-docker");
    std::fs::create_dir_all(&docker_config).expect("mkdir");
    let config = serde_json::json!({"auths": {registry.host(): {"auth": auth}}});
    std::fs::write(docker_config.join("config.json"), config.to_string()).expect("config.json");
    let fixture = &registry.fixtures().single_oci;
    let manifest = format!("/v2/{}/manifests/v1", fixture.repository);

    // No config.json (the sandbox's docker directory is empty): refused.
    let server = Server::start(&sandbox, &["--upstream", &registry.host()], &[]);
    let (status, body) = http_get(&server.host(), &manifest);
    assert_eq!(
        (status, error_code(&body)),
        (403, "DENIED".to_owned()),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");

    // With it, the content is private: not served to anyone unless asked.
    let refused = Command::new(MCREG)
        .args(["serve", "--upstream", &registry.host()])
        .args(["--cache-dir", &path_str(&sandbox.path("cache"))])
        .env("HOME", sandbox.path("home"))
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .expect("run mcreg serve");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&registry.host())
            && said.contains("config.json")
            && said.contains("--public")
            && said.contains("--htpasswd"),
        "{said}"
    );

    // Said public: the manifest, then a whole pull, through the cache.
    let server = Server::start(
        &sandbox,
        &["--upstream", &registry.host(), "--public", "-vv"],
        &[("DOCKER_CONFIG", &path_str(&docker_config))],
    );
    let (status, body) = http_get(&server.host(), &manifest);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, fixture.manifest.as_ref());
    let out = path_str(&sandbox.path("pulled.tar"));
    let image = fixture.reference(&server.host());
    let report = sandbox.mcreg(&["pull", &image, "-o", &out, "--json"]).ok().json();
    assert_eq!(report["digest"], fixture.digest.as_str());

    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains(" DEBUG "), "not at debug level:\n{log}");
    for secret in [password.as_str(), auth.as_str()] {
        assert!(!log.contains(secret), "a secret was logged:\n{log}");
    }
}

/// Without `--cache-dir` or a file, the cache lives in the default
/// directory: `$XDG_CACHE_HOME/mcreg/proxy`, else `~/.cache/mcreg/proxy`.
/// A fetched blob lands there, and the start-up line names the directory.
#[tokio::test]
async fn serve_without_a_cache_dir_uses_the_default_cache_directory() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let layer = &registry.fixtures().single_oci.layers[0];
    let route = format!("127-0-0-1-{}", registry.port());
    let sandbox = Sandbox::new();
    let xdg = path_str(&sandbox.path("xdg"));
    let home_cache = sandbox.path("home").join(".cache/mcreg/proxy");
    let xdg_cache = sandbox.path("xdg").join("mcreg/proxy");

    for (env, expected, not_there) in [
        (vec![("XDG_CACHE_HOME", xdg.as_str())], &xdg_cache, &home_cache),
        (vec![], &home_cache, &xdg_cache),
    ] {
        let server = Server::start_without_cache_dir(&sandbox, &["--upstream", &registry.host()], &env);
        let (status, body) = http_get(&server.host(), &format!("/v2/single/oci/blobs/{}", layer.digest));
        assert_eq!(status, 200, "{env:?}");
        assert_eq!(body, layer.data.as_ref(), "{env:?}");
        let blob = blob_file(expected, &route, &layer.digest);
        let landed = wait_for_file(&blob);
        let (code, log) = server.terminate();
        assert!(landed, "{env:?}: no {}\n{log}", blob.display());
        assert_eq!(std::fs::read(&blob).expect("the blob"), layer.data.as_ref());
        assert!(!not_there.exists(), "{env:?}: {} was made", not_there.display());
        assert_eq!(code, 0, "{log}");
        assert!(
            log.contains(&format!("cache={}", expected.display())),
            "the start-up line names another directory:\n{log}"
        );
        std::fs::remove_dir_all(expected).expect("remove the cache");
    }
}

#[tokio::test]
async fn a_bad_config_file_names_the_file_and_the_key() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("proxy.toml");
    std::fs::write(&config, "[[route]]\nregistry = \"docker.io\"\ntag_ttl = 5\n").expect("write");
    let run = sandbox
        .mcreg(&["serve", "--config", &path_str(&config)])
        .expect_code(1);
    let expected = format!("{}, line 3, route[0].tag_ttl:", path_str(&config));
    assert!(run.stderr.contains(&expected), "{}", run.stderr);

    let run = sandbox
        .mcreg(&["serve", "--config", &path_str(&config), "--upstream", "ghcr.io"])
        .expect_code(2);
    assert!(run.stderr.contains("--upstream"), "{}", run.stderr);

    // An unknown key is reported at its own line, in a route or a mirror.
    for (text, expected) in [
        (
            "[[route]]\nregistry = \"docker.io\"\n\nfrobnicate = true\n",
            "line 4, route[0].frobnicate:",
        ),
        (
            "[[route]]\nregistry = \"docker.io\"\n[[route.mirror]]\nurl = \"m.io\"\nfrobnicate = true\n",
            "line 5, route[0].mirror[0].frobnicate:",
        ),
        (
            "[server]\nidle_timeout = \"0s\"\n[[route]]\nregistry = \"docker.io\"\n",
            "server.idle_timeout:",
        ),
        (
            "[server]\nmax_connections = 0\n[[route]]\nregistry = \"docker.io\"\n",
            "server.max_connections:",
        ),
        (
            "[[route]]\nregistry = \"docker.io\"\nupstream_timeout = \"0s\"\n",
            "route[0].upstream_timeout:",
        ),
    ] {
        std::fs::write(&config, text).expect("write");
        let run = sandbox
            .mcreg(&["serve", "--config", &path_str(&config)])
            .expect_code(1);
        let expected = format!("{}, {expected}", path_str(&config));
        assert!(run.stderr.contains(&expected), "{text:?}: {}", run.stderr);
    }
}

/// A registry given twice with `--upstream` (as written, or the same after
/// normalisation: `index.docker.io` is `docker.io`) is a usage error that
/// names the flag and the registry, not a route name used twice with a hint
/// about access.
#[test]
fn a_repeated_upstream_is_a_usage_error() {
    let sandbox = Sandbox::new();
    let cache = path_str(&sandbox.path("cache"));
    let serve = |upstreams: &[&str]| {
        let mut args = vec!["serve", "--cache-dir", cache.as_str()];
        for upstream in upstreams {
            args.extend(["--upstream", upstream]);
        }
        sandbox.mcreg(&args).expect_code(2).stderr
    };
    let said = serve(&["ghcr.io", "quay.io", "ghcr.io"]);
    assert!(
        said.contains("--upstream ghcr.io is given twice") && !said.contains("--htpasswd"),
        "{said}"
    );
    let said = serve(&["docker.io", "index.docker.io"]);
    assert!(
        said.contains("--upstream docker.io and --upstream index.docker.io are both docker.io")
            && !said.contains("--htpasswd"),
        "{said}"
    );
    // Two registries whose routes get one name: a usage error, not about access.
    let said = serve(&["a.example:5000", "a.example-5000"]);
    assert!(
        said.contains("route[1].name") && !said.contains("--htpasswd"),
        "{said}"
    );
}

/// The `--htpasswd FILE, or --public` hint is for errors about access: a
/// cloud registry's route fetches with the cloud's credentials.
#[test]
fn a_private_upstream_on_the_command_line_hints_at_htpasswd_or_public() {
    let sandbox = Sandbox::new();
    let cache = path_str(&sandbox.path("cache"));
    let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let said = sandbox
        .mcreg(&["serve", "--cache-dir", &cache, "--upstream", ecr])
        .expect_code(2)
        .stderr;
    assert!(
        said.contains("route[0].public") && said.contains("--htpasswd FILE, or --public"),
        "{said}"
    );
}

// `mcreg serve` under attack: silent connections, a hung
// upstream and a full disk.

/// An answer to [`http_request`]: the status, the header block, the body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    /// The value of the header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `METHOD target` to `host` as HTTP/1.0, so that the body simply ends with
/// the connection (no chunks to decode), accepting OCI manifests.
fn http_request(host: &str, method: &str, target: &str) -> Answer {
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the cache");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {target} HTTP/1.0\r\nHost: {host}\r\n\
         Accept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )
    .expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    Answer {
        status,
        head,
        body: answer[end + 4..].to_vec(),
    }
}

/// Writes a configuration file into the sandbox; its path.
fn write_config(sandbox: &Sandbox, text: &str) -> String {
    let path = sandbox.path("proxy.toml");
    std::fs::write(&path, text).expect("write the configuration");
    path_str(&path)
}

/// The access lines (`request …`) of `path` in a log.
fn access_lines<'l>(log: &'l str, path: &str) -> Vec<&'l str> {
    log.lines()
        .filter(|l| l.contains(" request ") && field(l, "path") == Some(path))
        .collect()
}

/// The route name the cache gives an `--upstream` or `registry` `host:port`.
fn route_name(host: &str) -> String {
    host.replace(['.', ':'], "-")
}

/// How many descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count()
}

/// Whether the peer closed `stream` (EOF or a reset) by `deadline`.
fn closed_by(mut stream: &std::net::TcpStream, deadline: Instant) -> bool {
    let mut buffer = [0; 1024];
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            // Something was said (an error answer, say): read on to the end.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Runs `command` for at most `limit`: its output, or `None` (and it is
/// killed) if it was still running.
fn run_within(mut command: Command, limit: Duration) -> Option<std::process::Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// 300 connections that never send a byte, against a server whose
/// open-file limit is 256 (so 128 connections at most): a pull with skopeo
/// gets through all the same, every silent connection is closed by the
/// server within `header_timeout` (3 s, plus a margin), and the server's
/// descriptors come back to what they were; the log says the limit was
/// reached.
#[tokio::test]
async fn silent_connections_are_closed_and_their_descriptors_recovered_while_skopeo_pulls() {
    const SILENT: usize = 300;
    let header_timeout = Duration::from_secs(3);
    let registry = TestRegistry::start(AuthMode::None).await;
    let fixture = &registry.fixtures().single_oci;
    let sandbox = Sandbox::new();
    let config = write_config(
        &sandbox,
        &format!(
            "[server]\nheader_timeout = \"3s\"\n\n[[route]]\nregistry = \"{}\"\ndefault = true\n",
            registry.host()
        ),
    );
    let cache = path_str(&sandbox.path("cache"));
    let server = Server::launch(
        &sandbox,
        &["prlimit", "--nofile=256:256", "--"],
        &["--cache-dir", &cache, "--config", &config],
        &[],
    );
    let pid = server.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    assert_eq!(
        files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["256", "256"],
        "prlimit did not apply to the server: {files}"
    );
    // Let start-up settle before counting.
    std::thread::sleep(Duration::from_millis(300));
    let before = open_fds(pid);

    let flood = Instant::now();
    let silent: Vec<std::net::TcpStream> = (0..SILENT)
        .map(|i| {
            std::net::TcpStream::connect(server.host()).unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    let connected = flood.elapsed();
    let layout = sandbox.path("layout");
    let copy = skopeo(&sandbox.path("skopeo"))
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/single/oci:v1", server.host()),
            &format!("oci:{}:v1", path_str(&layout)),
        ])
        .env("HOME", sandbox.path("home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run skopeo");

    // Each is closed by the server, not left to hold a descriptor: within
    // header_timeout of its accept, which came once its handshake was done
    // (a burst past the listen queue waits for a SYN to be sent again).
    let deadline = flood + connected + header_timeout + Duration::from_secs(2);
    let still_open = silent.iter().filter(|s| !closed_by(s, deadline)).count();
    let checked = flood.elapsed();
    let copied = copy.wait_with_output().expect("skopeo");
    let pulled = flood.elapsed();
    assert!(
        copied.status.success(),
        "skopeo copy through the cache failed while {SILENT} silent connections were open: {}\n{}",
        copied.status,
        String::from_utf8_lossy(&copied.stderr)
    );
    assert_eq!(layout_digest(&layout, "v1"), fixture.digest);
    assert_eq!(
        still_open, 0,
        "{still_open} of {SILENT} silent connections still open {checked:?} after the first \
         (connected within {connected:?}; header_timeout 3 s)"
    );

    // The server's descriptors come back (skopeo's own connections end with it).
    let settle = Instant::now() + Duration::from_secs(5);
    let mut now = open_fds(pid);
    while now > before + 20 && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
        now = open_fds(pid);
    }
    drop(silent);
    let (code, log) = server.terminate();
    assert!(
        now <= before + 20,
        "the server holds {now} descriptors, {before} before the flood:\n{log}"
    );
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("max_connections=128"),
        "the connection limit is not half the open-file limit:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" WARN ") && l.contains("connection limit reached")),
        "no warning about the connection limit:\n{log}"
    );
    eprintln!(
        "silent connections: {SILENT} connected in {connected:?}, all closed by {checked:?}, \
         skopeo done at {pulled:?}; descriptors {before} before, {now} after"
    );
}

/// SIGTERM while a 64 MiB blob is being filled (a slow upstream, ~3 s):
/// the client still gets every byte, the server exits 0 once it is sent,
/// and the blob is kept: the next run has it (`X-Cache: HIT`) without
/// asking the upstream again.
#[tokio::test]
async fn sigterm_during_a_fill_keeps_the_blob() {
    const SIZE: usize = 64 * 1024 * 1024;
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let data = conformance::harness::noise(18, SIZE);
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    let proxy = FaultProxy::start(url::Url::parse(&registry.url()).expect("URL")).await;
    proxy.inject_when(
        Matcher::blob_gets(),
        Fault::Throttle {
            bytes_per_second: SIZE as u64 / 3,
            times: usize::MAX,
        },
    );
    let sandbox = Sandbox::new();
    let config = write_config(
        &sandbox,
        &format!(
            "[server]\nshutdown_grace = \"30s\"\n\n[[route]]\nregistry = \"{}\"\ndefault = true\n\
             upstream_timeout = \"60s\"\n",
            proxy.host()
        ),
    );
    let path = format!("/v2/big/blob/blobs/{digest}");
    let server = Server::start(&sandbox, &["--config", &config], &[]);

    let started = Instant::now();
    let mut client = std::net::TcpStream::connect(server.host()).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(client, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", server.host()).expect("send");
    let mut received = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    let body_start = loop {
        let n = client.read(&mut buffer).expect("read");
        assert!(
            n > 0,
            "the answer ended early: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
            && received.len() > end + 4
        {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&received[..body_start]).into_owned();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let before_signal = received.len() - body_start;
    server.signal_term();
    let signalled = started.elapsed();
    client.read_to_end(&mut received).expect("read the rest");
    let done = started.elapsed();
    let (code, log) = server.wait();
    let exited = started.elapsed();
    let body = &received[body_start..];
    assert!(
        before_signal < SIZE / 2,
        "the blob was mostly sent before SIGTERM ({before_signal} bytes)"
    );
    assert_eq!(
        body.len(),
        SIZE,
        "the client got {} of {SIZE} bytes ({before_signal} before SIGTERM):\n{log}",
        body.len()
    );
    assert!(
        body == data.as_slice(),
        "the client got other bytes than the blob's"
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.lines().any(|l| l.ends_with("stopped")), "{log}");

    let route = route_name(&proxy.host());
    let file = blob_file(&sandbox.path("cache"), &route, &digest);
    assert!(file.is_file(), "no {} after the stop:\n{log}", file.display());
    let server = Server::start(&sandbox, &["--config", &config], &[]);
    let answer = http_request(&server.host(), "HEAD", &path);
    let (code, second_log) = server.terminate();
    assert_eq!(answer.status, 200, "{}\n{second_log}", answer.head);
    assert_eq!(answer.header("x-cache"), Some("HIT"), "{}", answer.head);
    assert_eq!(code, 0, "{second_log}");
    let gets = proxy.count(|r| r.is_blob_get() && r.path.contains(&digest));
    assert_eq!(gets, 1, "blob GETs upstream across both runs");
    eprintln!(
        "SIGTERM at {signalled:?} after {before_signal} bytes; last byte at {done:?}; exit at {exited:?}"
    );
}

/// `mcreg serve` whose one route's upstream takes requests and never
/// answers, with `upstream_timeout` (and the sandbox it runs in).
fn serve_a_hung_upstream(upstream_timeout: &str) -> (conformance::harness::HungServer, Sandbox, Server) {
    let hung = conformance::harness::HungServer::accepting();
    let sandbox = Sandbox::new();
    let config = write_config(
        &sandbox,
        &format!(
            "[server]\nshutdown_grace = \"5s\"\n\n[[route]]\nregistry = \"{}\"\ndefault = true\n\
             upstream_timeout = \"{upstream_timeout}\"\n",
            hung.host()
        ),
    );
    let server = Server::start(&sandbox, &["--config", &config], &[]);
    (hung, sandbox, server)
}

/// A client that sends a request and leaves before its answer (the
/// upstream never answers) gets one access line, status 499, with the time
/// it waited and the request's id.
#[tokio::test]
async fn a_client_that_leaves_before_its_answer_is_logged_with_499() {
    let (hung, _sandbox, server) = serve_a_hung_upstream("20s");
    let path = "/v2/x/y/manifests/v1";
    let mut client = std::net::TcpStream::connect(server.host()).expect("connect");
    write!(
        client,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n",
        server.host()
    )
    .expect("send");
    std::thread::sleep(Duration::from_secs(1));
    drop(client);
    // Time to notice, well before the upstream's timeout.
    std::thread::sleep(Duration::from_millis(500));
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    let lines = access_lines(&log, path);
    assert_eq!(lines.len(), 1, "access lines for {path}:\n{log}");
    let line = lines[0];
    assert_eq!(field(line, "method"), Some("GET"), "{line}");
    assert_eq!(field(line, "status"), Some("499"), "{line}");
    // The route was chosen before the client left.
    assert_eq!(
        field(line, "route"),
        Some(route_name(&hung.host()).as_str()),
        "{line}"
    );
    assert_eq!(field(line, "via"), Some("default"), "{line}");
    let ms: u64 = field(line, "ms")
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no ms= in {line}"));
    assert!((900..=5000).contains(&ms), "ms={ms}: {line}");
    let id = field(line, "id").unwrap_or_else(|| panic!("no id= in {line}"));
    assert!(
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "id={id}: {line}"
    );
}

/// An upstream that takes the request and never answers: the cache answers
/// `503 UNAVAILABLE` once the route's `upstream_timeout` (2 s) has passed.
#[tokio::test]
async fn a_hung_upstream_gets_a_503_within_the_upstream_timeout() {
    let (_hung, _sandbox, server) = serve_a_hung_upstream("2s");
    let path = "/v2/x/y/manifests/v1";
    let started = Instant::now();
    let (status, body) = http_get(&server.host(), path);
    let took = started.elapsed();
    let (code, log) = server.terminate();
    assert_eq!(
        (status, error_code(&body)),
        (503, "UNAVAILABLE".to_owned()),
        "{}\n{log}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(4500),
        "answered in {took:?}, upstream_timeout 2 s"
    );
    assert_eq!(code, 0, "{log}");
    let lines = access_lines(&log, path);
    assert!(
        lines.len() == 1 && field(lines[0], "status") == Some("503"),
        "{log}"
    );
}

/// A cache directory the server's user cannot write to (`store/` and
/// `spool/` owned by root, or a root-owned directory deep in `store/`)
/// stops it at start, naming the directory, instead of failing each pull.
#[test]
fn an_unwritable_cache_dir_refuses_to_start_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipped: needs root, to make directories another user cannot write to");
        return;
    }
    // Everything the unprivileged user needs must be reachable by it: the
    // checkout (and the sandbox) may be private.
    let dir = tempfile::Builder::new()
        .prefix("mcreg-serve-unwritable-")
        .tempdir()
        .expect("temp dir");
    let root = dir.path();
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    mode(root, 0o755);
    let binary = root.join("mcreg");
    std::fs::copy(MCREG, &binary).expect("copy mcreg");
    mode(&binary, 0o755);
    for sub in ["home", "docker"] {
        std::fs::create_dir(root.join(sub)).expect("mkdir");
        mode(&root.join(sub), 0o755);
    }
    let serve_as_nobody = |cache: &Path| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&binary)
            .args(["serve", "--cache-dir", &path_str(cache)])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--upstream", "127.0.0.1:1"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", root.join("home"))
            .env("DOCKER_CONFIG", root.join("docker"));
        let started = Instant::now();
        let output = run_within(command, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("mcreg serve kept running with {}", cache.display()));
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), said, started.elapsed())
    };

    // store/ and spool/ belong to root.
    let cache = root.join("root-owned");
    for sub in ["store", "spool"] {
        std::fs::create_dir_all(cache.join(sub)).expect("mkdir");
        mode(&cache.join(sub), 0o755);
    }
    mode(&cache, 0o755);
    let (code, said, took) = serve_as_nobody(&cache);
    assert_ne!(code, Some(0), "{said}");
    assert!(code.is_some(), "killed by a signal: {said}");
    let named = ["store", "spool"]
        .iter()
        .any(|sub| said.contains(&path_str(&cache.join(sub))));
    assert!(
        named && said.contains("Permission denied"),
        "the error names neither directory, or no reason: {said}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}: {said}");

    // store/ is the user's, but a directory in it is root's.
    let cache = root.join("deep");
    let deep = cache.join("store/routes/x");
    std::fs::create_dir_all(&deep).expect("mkdir");
    std::fs::create_dir_all(cache.join("spool")).expect("mkdir");
    for path in [&cache, &deep] {
        mode(path, 0o755);
    }
    for sub in ["store", "store/routes", "spool"] {
        let path = cache.join(sub);
        mode(&path, 0o755);
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
    }
    let (code, said, took) = serve_as_nobody(&cache);
    assert_ne!(code, Some(0), "{said}");
    assert!(code.is_some(), "killed by a signal: {said}");
    assert!(
        said.contains(&path_str(&deep)),
        "the error does not name {}: {said}",
        deep.display()
    );
    assert!(took < Duration::from_secs(5), "took {took:?}: {said}");
}

/// A blob the upstream does not have is an answer (`404 BLOB_UNKNOWN`),
/// counted in `mcreg_upstream_not_found_total`, not a warning: 20 of them
/// leave no `WARN` line. An upstream that sends a manifest other than the
/// one asked for is worth a warning, once for several within 10 s.
#[tokio::test]
async fn a_missing_blob_is_not_a_warning_and_a_wrong_manifest_is() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox, &["--upstream", &registry.host()], &[]);
    let missing = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let path = format!("/v2/single/oci/blobs/{missing}");
    for i in 0..20 {
        let (status, body) = http_get(&server.host(), &path);
        assert_eq!(
            (status, error_code(&body)),
            (404, "BLOB_UNKNOWN".to_owned()),
            "GET {i}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let metrics = http_request(&server.host(), "GET", "/metrics");
    let (code, log) = server.terminate();
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    let series = format!(
        "mcreg_upstream_not_found_total{{route=\"{}\"}}",
        route_name(&registry.host())
    );
    let value = metrics
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(&series).map(|v| v.trim().to_owned()));
    assert_eq!(value.as_deref(), Some("20"), "{series} in:\n{}", metrics.text());
    assert_eq!(code, 0, "{log}");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(warnings.is_empty(), "warnings for missing blobs:\n{log}");

    // Manifests corrupted on the way.
    let proxy = FaultProxy::start(url::Url::parse(&registry.url()).expect("URL")).await;
    proxy.inject_when(
        Matcher::predicate(|r| r.method.as_str() == "GET" && r.path.contains("/manifests/")),
        Fault::CorruptByte {
            offset: 40,
            times: usize::MAX,
        },
    );
    let server = Server::start(&sandbox, &["--upstream", &proxy.host()], &[]);
    let fixture = &registry.fixtures().single_oci;
    let path = format!("/v2/single/oci/manifests/{}", fixture.digest);
    let started = Instant::now();
    for i in 0..3 {
        let (status, body) = http_get(&server.host(), &path);
        assert_eq!(status, 502, "GET {i}: {}", String::from_utf8_lossy(&body));
    }
    let took = started.elapsed();
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(10), "three GETs took {took:?}");
    let corrupted = proxy.count(|r| r.is_manifest() && r.method.as_str() == "GET");
    assert!(corrupted >= 3, "{corrupted} manifest GETs upstream");
    let wrong: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("the upstream sent a wrong manifest"))
        .collect();
    assert_eq!(
        wrong.len(),
        1,
        "one warning for a wrong manifest (rate-limited):\n{log}"
    );
}

/// What failed inside the cache is told to its log, not to the client: an
/// error answer names no local file, and gives the request's id, which the
/// access line of the request carries with the error itself.
///
/// A malformed `config.json` stops the cache at start (the SDK reads it
/// when the route's client is built), naming the file. The failure at
/// request time comes from a well-formed file whose `auth` for the
/// registry is not base64: it is read when the registry asks for
/// credentials.
#[tokio::test]
async fn error_answers_name_no_local_path_and_give_a_request_id() {
    let registry = TestRegistry::start(AuthMode::Basic).await;
    let sandbox = Sandbox::new();
    let docker_config = sandbox.path("broken/config.json");
    std::fs::create_dir_all(docker_config.parent().expect("parent")).expect("mkdir");
    let config_text = format!(
        "[[route]]\nregistry = \"{}\"\ndefault = true\npublic = true\n\n[route.options]\n\
         docker_config = \"{}\"\n",
        registry.host(),
        path_str(&docker_config)
    );
    let config = write_config(&sandbox, &config_text);

    // Malformed: refused at start, naming the file.
    std::fs::write(&docker_config, "{\"auths\": {").expect("config.json");
    let mut command = Command::new(MCREG);
    command
        .args(["serve", "--config", &config])
        .args(["--cache-dir", &path_str(&sandbox.path("cache"))])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("HOME", sandbox.path("home"))
        .env("DOCKER_CONFIG", sandbox.path("docker"))
        .env_remove("RUST_LOG");
    let output = run_within(command, Duration::from_secs(10))
        .expect("mcreg serve started with a malformed config.json");
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains(&path_str(&docker_config)), "{said}");

    // Well-formed, but the registry's `auth` is not base64: fails on use.
    let broken = serde_json::json!({"auths": {registry.host(): {"auth": "%%% not base64 %%%"}}});
    std::fs::write(&docker_config, broken.to_string()).expect("config.json");
    let server = Server::start(&sandbox, &["--config", &config], &[]);
    let path = "/v2/single/oci/manifests/v1";
    let (status, body) = http_get(&server.host(), path);
    let (code, log) = server.terminate();
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(status >= 500, "{status}: {text}\n{log}");
    let sandbox_dir = path_str(sandbox.dir.path());
    for local in [sandbox_dir.as_str(), "config.json"] {
        assert!(!text.contains(local), "the answer names {local}: {text}");
    }
    let message = serde_json::from_slice::<Value>(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        ["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = message
        .split_once("request id ")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        })
        .unwrap_or_default();
    assert_eq!(id.len(), 12, "no request id in the answer: {text}");
    assert_eq!(code, 0, "{log}");
    let lines = access_lines(&log, path);
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    assert_eq!(field(line, "id"), Some(id.as_str()), "{line}");
    assert_eq!(field(line, "status"), Some(status.to_string().as_str()), "{line}");
    assert!(
        line.contains(" error=") && line.contains(&path_str(&docker_config)),
        "the access line does not name the file: {line}"
    );
}

/// Requests the HTTP layer answers itself, before they reach the cache
/// (headers over the limit: 431; not HTTP at all: 400), still get their
/// access line: every request has exactly one.
#[tokio::test]
async fn a_request_the_http_layer_refuses_still_gets_its_access_line() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox, &["--upstream", &registry.host()], &[]);
    let raw = |request: &[u8]| {
        let mut stream = std::net::TcpStream::connect(server.host()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = stream.write_all(request);
        let mut answer = vec![0; 256];
        let read = stream.read(&mut answer).unwrap_or(0);
        String::from_utf8_lossy(&answer[..read]).into_owned()
    };
    let big = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(128 * 1024)
    );
    let answer = raw(big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    let answer = raw(b"NOT HTTP AT ALL\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:.80}");
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    for status in ["431", "400"] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" request ") && field(l, "status") == Some(status))
            .collect();
        assert_eq!(lines.len(), 1, "status {status}:\n{log}");
        assert_eq!(field(lines[0], "method"), Some("-"), "{}", lines[0]);
        assert_eq!(field(lines[0], "client"), Some("127.0.0.1"), "{}", lines[0]);
    }
}
