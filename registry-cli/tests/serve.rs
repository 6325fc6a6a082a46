//! `mcreg serve` as a real service: it starts with one command, pulls go
//! through it, it logs one line per request, reads upstream credentials from
//! the environment without ever printing them, refuses a bad config file
//! with the file and key, and stops cleanly on SIGTERM.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{MCREG, Sandbox, path_str};
use conformance::harness::{AuthMode, TestRegistry, free_port};

/// A running `mcreg serve`; killed if the test did not stop it.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = Command::new(MCREG);
        command
            .args([
                "serve",
                "--listen",
                &listen,
                "--cache-dir",
                &path_str(&sandbox.path("cache")),
            ])
            .args(args)
            .env("HOME", sandbox.path("home"))
            .env("DOCKER_CONFIG", sandbox.path("docker"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start mcreg serve");
        let server = Server { child, port };
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
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut log).expect("read the log");
        }
        (status.code().unwrap_or(-1), log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
}
