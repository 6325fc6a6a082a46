//! `mcreg serve` as a real service: it starts with one command, pulls go
//! through it, it logs one line per request (with the upstream, the bytes
//! and the time), reads upstream credentials from the environment or
//! docker's `config.json` without ever printing them, keeps its cache in
//! the default directory when given none, refuses a bad config file with
//! the file and key, and stops cleanly on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{MCREG, Sandbox, path_str};
use conformance::harness::{AuthMode, TestRegistry, free_port};
use serde_json::Value;

/// A running `mcreg serve`; killed if the test did not stop it.
struct Server {
    child: Child,
    port: u16,
    /// Reads stderr as it comes (a full pipe would block the server).
    log: Option<JoinHandle<String>>,
}

impl Server {
    /// `mcreg serve --listen 127.0.0.1:<free port> --cache-dir <sandbox>/cache ARGS`.
    fn start(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Server {
        let cache = path_str(&sandbox.path("cache"));
        let mut all = vec!["--cache-dir", cache.as_str()];
        all.extend_from_slice(args);
        Server::start_without_cache_dir(sandbox, &all, env)
    }

    /// `mcreg serve --listen 127.0.0.1:<free port> ARGS`, with `HOME` and
    /// `DOCKER_CONFIG` in the sandbox and none of the variables that choose
    /// a cache directory or a configuration, unless `env` sets them.
    fn start_without_cache_dir(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = Command::new(MCREG);
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

    fn host(&self) -> String {
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

    /// Sends SIGTERM and returns the exit code and everything it logged.
    fn terminate(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(killed.success());
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

/// `GET target` from `host`, as HTTP/1.0 so that the body simply ends with
/// the connection (no chunks to decode): the status and the body.
fn http_get(host: &str, target: &str) -> (u16, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the cache");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET {target} HTTP/1.0\r\nHost: {host}\r\n\
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
    (status, answer[end + 4..].to_vec())
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
        // The HIT must find the blob committed.
        assert!(wait_for_file(&blob_file(
            &sandbox.path("cache"),
            &format!("127-0-0-1-{}", registry.port()),
            &layer.digest
        )));
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
