//! Exit codes and error messages: one sentence and its causes, never a debug dump or a secret.

use crate::common::{MODES, Run, SECRET_MARK, Sandbox, path_str};
use conformance::harness::fault_proxy::{Fault, FaultProxy, Matcher, is_manifest_path};
use conformance::harness::{AuthMode, TestRegistry, USER};

/// The run failed with `code` and printed exactly one line, `error: …`, and nothing on stdout.
fn assert_error(run: &Run, code: i32, starts_with: &str) {
    assert_eq!(run.code, code, "exit code: {run:#?}");
    assert!(run.stdout.is_empty(), "stdout: {run:#?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {run:#?}");
    assert!(
        lines[0].starts_with(starts_with),
        "{:?} should start with {starts_with:?}",
        lines[0]
    );
    for debug in ["{ ", " }", "Error {", "source:", "Some(", "panicked"] {
        assert!(!lines[0].contains(debug), "no debug output: {}", lines[0]);
    }
    assert!(!run.stderr.contains(SECRET_MARK), "no secret: {}", run.stderr);
}

#[tokio::test]
async fn not_found_is_3() {
    for mode in MODES {
        let registry = TestRegistry::start(mode).await;
        let sandbox = Sandbox::new();
        let host = registry.host();
        let run = sandbox.mcreg_as_user(&registry, &["digest", &format!("{host}/single/oci:no-such-tag")]);
        assert_error(&run, 3, "error: manifest not found: single/oci:no-such-tag");
        let out = path_str(&sandbox.path("x.tar"));
        let run = sandbox.mcreg_as_user(
            &registry,
            &["pull", &format!("{host}/single/oci:no-such-tag"), "-o", &out],
        );
        assert_error(&run, 3, "error: manifest not found");
        assert!(!sandbox.path("x.tar").exists());
        let run = sandbox.mcreg_as_user(
            &registry,
            &[
                "inspect",
                &registry.fixtures().multi_oci.reference(&host),
                "--platform",
                "linux/s390x",
            ],
        );
        assert_error(
            &run,
            3,
            "error: no manifest for platform linux/s390x; available: linux/amd64",
        );
        if let Some((_, password)) = registry.credentials() {
            let run = sandbox.mcreg_as_user(&registry, &["-vv", "tags", &format!("{host}/no/such")]);
            assert_eq!(run.code, 3, "{run:#?}");
            assert!(
                !run.stderr.contains(&password),
                "{mode:?}: the password leaked: {}",
                run.stderr
            );
        }
    }
}

#[tokio::test]
async fn bad_credentials_are_4_and_never_shown() {
    for mode in [AuthMode::Basic, AuthMode::Token] {
        let registry = TestRegistry::start(mode).await;
        let sandbox = Sandbox::new();
        let image = registry.fixtures().single_oci.reference(&registry.host());
        let password = format!("wrong-{SECRET_MARK}-password\n");
        for args in [
            vec!["--username", USER, "--password-stdin", "digest", image.as_str()],
            vec![
                "--username",
                USER,
                "--password-stdin",
                "-vvv",
                "inspect",
                image.as_str(),
                "--json",
            ],
        ] {
            let run = sandbox.mcreg_with_stdin(&args, password.as_bytes());
            assert_eq!(run.code, 4, "{mode:?} {run:#?}");
            assert!(
                !run.stderr.contains(SECRET_MARK),
                "{mode:?} leaked: {}",
                run.stderr
            );
            assert!(!run.stdout_text().contains(SECRET_MARK));
            let last = run.stderr.lines().last().expect("a line");
            assert!(
                last.starts_with("error: unauthorized at 127.0.0.1:"),
                "{mode:?}: {last}"
            );
        }
        let run = sandbox.mcreg_with_stdin(
            &["--username", USER, "--password-stdin", "digest", &image],
            password.as_bytes(),
        );
        assert_error(&run, 4, "error: unauthorized at ");

        // No credentials at all.
        let run = sandbox.mcreg(&["digest", &image]);
        assert_error(&run, 4, "error: unauthorized at ");
    }
}

#[test]
fn malformed_input_is_a_usage_error() {
    let sandbox = Sandbox::new();
    let run = sandbox.mcreg(&["digest", "Upper/Case:v1"]);
    assert_error(&run, 2, "error: invalid image reference \"Upper/Case:v1\": ");
    let run = sandbox.mcreg(&["pull", "ok/name:v1", "-o", "x.tar", "--platform", "linux"]);
    assert_error(&run, 2, "error: --platform: invalid platform \"linux\"");
    let run = sandbox.mcreg(&["--provider", "nope", "digest", "localhost:5000/a:v1"]);
    assert_error(&run, 2, "error: unknown registry provider \"nope\"; registered: ");
    let run = sandbox.mcreg(&["catalog", "host/with/path"]);
    assert_error(&run, 2, "error: invalid registry \"host/with/path\"");
    let run = sandbox.mcreg_with_stdin(
        &["--username", "u", "--password-stdin", "tags", "localhost:5000/a"],
        b"\n",
    );
    assert_error(&run, 2, "error: --password-stdin: stdin held no password");
    // clap's own errors: 2 as well.
    let run = sandbox.mcreg(&["pull", "alpine"]);
    assert_eq!(run.code, 2, "{run:#?}");
    let run = sandbox.mcreg(&["no-such-command"]);
    assert_eq!(run.code, 2, "{run:#?}");
    let run = sandbox.mcreg(&["--username", "u", "digest", "alpine"]);
    assert_eq!(run.code, 2, "{run:#?}");
}

#[test]
fn output_problems_are_1() {
    let sandbox = Sandbox::new();
    let run = sandbox.mcreg(&["pull", "localhost:5000/a:v1", "-o", "/nonexistent/dir/a.tar"]);
    assert_error(
        &run,
        1,
        "error: cannot write /nonexistent/dir/a.tar: directory /nonexistent/dir does not exist",
    );
}

#[test]
fn unreachable_host_is_5() {
    let sandbox = Sandbox::new();
    let run = sandbox.mcreg(&["digest", "127.0.0.1:1/single/oci:v1"]);
    assert_error(&run, 5, "error: connection to 127.0.0.1:1 failed: ");
    let run = sandbox.mcreg(&["tags", "127.0.0.1:1/single/oci", "--json"]);
    assert_error(&run, 5, "error: connection to 127.0.0.1:1 failed");
    // The error above is all a command says; the circuit breaker's warning (which the
    // retries open) is filtered by its log target, and shown when RUST_LOG asks.
    assert!(!run.stderr.contains("circuit breaker"), "{}", run.stderr);
    let run = Sandbox::new()
        .env("RUST_LOG", "warn")
        .mcreg(&["digest", "127.0.0.1:1/single/oci:v1"]);
    assert!(
        run.stderr
            .contains("circuit breaker opened after repeated failures"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn corrupted_content_is_6_and_leaves_nothing() {
    let registry = TestRegistry::start(AuthMode::Basic).await;
    let proxy = FaultProxy::start(registry.url().parse().expect("URL")).await;
    let sandbox = Sandbox::new();
    let fixture = &registry.fixtures().single_oci;
    let image = fixture.reference(&proxy.host());
    for format in ["docker", "oci", "rootfs"] {
        // The config is fetched to resolve the image; corrupt the layer that follows it.
        proxy.inject_when(
            Matcher::path_contains(fixture.layers[0].digest.as_str()),
            Fault::CorruptByte {
                offset: 100,
                times: 1,
            },
        );
        let out = sandbox.path(&format!("out-{format}"));
        let run = sandbox.mcreg_as_user(
            &registry,
            &["pull", &image, "-o", &path_str(&out), "--format", format, "-q"],
        );
        assert_error(
            &run,
            6,
            &format!(
                "error: digest mismatch: expected {}, got sha256:",
                fixture.layers[0].digest
            ),
        );
        assert!(
            !out.exists() || std::fs::read_dir(&out).map(|d| d.count() == 0).unwrap_or(false),
            "{format}: nothing left"
        );
    }
    // The manifest itself (the answer with credentials, not the first 401).
    proxy.inject_when(
        Matcher::predicate(|r| is_manifest_path(r.path) && r.headers.contains_key("authorization")),
        Fault::CorruptByte { offset: 40, times: 1 },
    );
    let run = sandbox.mcreg_as_user(&registry, &["inspect", &image]);
    assert_error(&run, 6, "error: digest mismatch: expected ");
}

#[tokio::test]
async fn json_mode_errors_are_the_same_line() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let sandbox = Sandbox::new();
    let run = sandbox.mcreg(&["--json", "tags", &format!("{}/no/such-repo", registry.host())]);
    assert_error(&run, 3, "error: repository not found: no/such-repo");
}
