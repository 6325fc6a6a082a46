//! `mcreg copy`: a whole index to a registry that wants a password, given for that side
//! only; a dry run that writes nothing; a second copy that uploads nothing; one registry's
//! settings refused because they would reach both.

mod common;

use common::{SECRET_MARK, Sandbox};
use conformance::harness::fault_proxy::FaultProxy;
use conformance::harness::{AuthMode, TestRegistry, run_tool};
use registry_client::digest::sha256;
use url::Url;

#[tokio::test]
async fn copy_sends_each_side_its_own_credentials_and_nothing_twice() {
    let source = TestRegistry::start(AuthMode::None).await;
    let registry = TestRegistry::start_empty(AuthMode::Basic).await;
    let dest = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    let (user, password) = registry.admin_credentials().expect("admin");
    let multi = &source.fixtures().multi_oci;
    let from = format!("{}/{}:v1", source.host(), multi.repository);
    let to = format!("{}/copied/multi:v2", dest.host());
    let sandbox = Sandbox::new().env("MCREG_DEST_CREDS", format!("{user}:{password}"));

    // A dry run: which blobs would go, nothing written.
    let dry = sandbox
        .mcreg(&["copy", "--all", "--dry-run", &from, &to, "--json"])
        .ok()
        .json();
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["digest"], multi.digest.as_str());
    assert!(dry["manifests"].as_array().expect("manifests").is_empty());
    let writes = dest.count(|r| !matches!(r.method.as_str(), "GET" | "HEAD"));
    assert_eq!(writes, 0, "a dry run wrote: {:#?}", dest.requests());

    let run = sandbox.mcreg(&["copy", "--all", &from, &to]).ok();
    let said = run.stdout_text();
    assert!(said.contains(&format!("copied {from} to {to}")), "{said}");
    assert!(said.contains(&multi.digest), "{said}");
    let raw = run_tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &format!("{user}:{password}"),
            &format!("docker://{to}"),
        ],
    );
    assert_eq!(sha256(raw.as_bytes()), multi.digest, "the index, byte for byte");
    // The destination was asked with credentials; the password shows nowhere.
    assert!(dest.count(|r| r.had_authorization) > 0);
    assert!(!run.stderr.contains(&password) && !said.contains(&password));

    // Again: every blob is there.
    let again = sandbox
        .mcreg(&["copy", "--all", &from, &to, "--json"])
        .ok()
        .json();
    let blobs = again["blobs"].as_array().expect("blobs");
    assert!(!blobs.is_empty());
    assert!(blobs.iter().all(|b| b["action"] == "present"), "{again}");
    assert_eq!(again["uploadedBytes"], 0);
}

#[tokio::test]
async fn copy_refuses_settings_that_would_reach_both_registries() {
    let sandbox = Sandbox::new();
    let run = sandbox
        .mcreg_with_stdin(
            &[
                "--username",
                "someone",
                "--password-stdin",
                "copy",
                "a.example/x:1",
                "b.example/x:1",
            ],
            format!("{SECRET_MARK}\n").as_bytes(),
        )
        .expect_code(2);
    assert!(run.stderr.contains("--src-creds"), "{}", run.stderr);
    assert!(!run.stderr.contains(SECRET_MARK));
    let run = sandbox
        .mcreg(&[
            "copy",
            "--dest-creds",
            "no-password",
            "a.example/x:1",
            "b.example/x:1",
        ])
        .expect_code(2);
    assert!(run.stderr.contains("USER:PASSWORD"), "{}", run.stderr);
}
