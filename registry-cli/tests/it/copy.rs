//! `mcreg copy`: a whole index to a registry that wants a password, given for that side
//! only; a dry run that writes nothing; a second copy that uploads nothing; one registry's
//! settings refused because they would reach both.

use std::path::Path;

use crate::common::{SECRET_MARK, Sandbox, path_str};
use conformance::harness::fault_proxy::FaultProxy;
use conformance::harness::{AuthMode, TestRegistry, run_tool, tools};
use registry_client::model::digest::sha256;
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
    // Progress on stderr (not a terminal: one line per blob): the plan, then each upload.
    assert!(
        run.stderr
            .contains(&format!("copying {} to {to}: ", multi.digest)),
        "{}",
        run.stderr
    );
    let uploads = dest.count(|r| r.method.as_str() == "POST" && r.path.ends_with("/blobs/uploads/"));
    let done = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("done sha256:"))
        .count();
    assert_eq!(done, uploads, "a line per uploaded blob: {}", run.stderr);
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
    let again = sandbox.mcreg(&["copy", "--all", &from, &to, "--json"]).ok();
    let stderr = again.stderr.clone();
    let again = again.json();
    let blobs = again["blobs"].as_array().expect("blobs");
    assert!(!blobs.is_empty());
    assert!(blobs.iter().all(|b| b["action"] == "present"), "{again}");
    assert_eq!(again["uploadedBytes"], 0);
    for blob in blobs {
        let line = format!(
            "exists {} {} bytes",
            blob["digest"].as_str().expect("digest"),
            blob["size"]
        );
        assert!(stderr.lines().any(|l| l == line), "no {line:?} in {stderr}");
    }
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

/// podman with a storage of its own under `storage/<dir>` (vfs), an empty `registries.conf`
/// and auth file. `storage` is a short path of its own: podman refuses a runroot longer than
/// 50 characters, and the sandbox lives deep in the target directory.
fn podman(storage: &Path, dir: &str, args: &[&str]) -> String {
    tools::run(tools::podman(&storage.join(dir), None).args(args))
}

#[tokio::test]
async fn push_takes_a_podman_save_archive_and_our_layout_and_podman_pulls_them() {
    let source = TestRegistry::start(AuthMode::None).await;
    let dest = TestRegistry::start_empty(AuthMode::None).await;
    let sandbox = Sandbox::new();
    let storage = tempfile::tempdir().expect("podman's storage");
    let podman = |dir: &str, args: &[&str]| podman(storage.path(), dir, args);
    let fixture = &source.fixtures().single_docker;
    let image = fixture.reference(&source.host());
    let image_id = fixture.config_digest.trim_start_matches("sha256:");

    // podman save of the image podman pulled.
    podman("saver", &["pull", "--quiet", "--tls-verify=false", &image]);
    let archive = path_str(&sandbox.path("saved.tar"));
    podman(
        "saver",
        &["save", "--format", "docker-archive", "-o", &archive, &image],
    );
    let from_podman = format!("{}/pushed/podman:v1", dest.host());
    let said = sandbox
        .mcreg(&["push", &archive, &from_podman])
        .ok()
        .stdout_text();
    assert!(said.contains(&from_podman), "{said}");

    // Our own OCI layout.
    let layout = path_str(&sandbox.path("layout"));
    sandbox
        .mcreg(&["pull", &image, "--format", "oci", "-o", &layout])
        .ok();
    let from_layout = format!("{}/pushed/layout:v1", dest.host());
    let pushed = sandbox
        .mcreg(&["push", &layout, &from_layout, "--json"])
        .ok()
        .json();
    assert_eq!(
        pushed["digest"],
        fixture.digest.as_str(),
        "the layout's manifest, byte for byte"
    );

    // podman pulls both back: the same image (its ID is the config's digest).
    for reference in [&from_podman, &from_layout] {
        podman("puller", &["pull", "--quiet", "--tls-verify=false", reference]);
        let id = podman("puller", &["image", "inspect", "--format", "{{.Id}}", reference]);
        assert_eq!(id.trim(), image_id, "{reference}");
    }
    // Pushed again: nothing goes up.
    let again = sandbox
        .mcreg(&["push", &archive, &from_podman, "--json"])
        .ok()
        .json();
    assert_eq!(again["uploadedBytes"], 0, "{again}");
}

#[tokio::test]
async fn copy_to_and_from_disk_goes_through_layouts_and_archives() {
    let source = TestRegistry::start(AuthMode::None).await;
    let dest = TestRegistry::start_empty(AuthMode::None).await;
    let sandbox = Sandbox::new();
    let multi = &source.fixtures().multi_oci;
    let from = format!("{}/{}:v1", source.host(), multi.repository);
    let layout = path_str(&sandbox.path("layout"));
    let archive = path_str(&sandbox.path("image.tar"));

    // Registry → disk: the whole index into a layout, one platform into an archive.
    let into_layout = format!("oci:{layout}:multi");
    let said = sandbox
        .mcreg(&["copy", "--all", &from, &into_layout])
        .ok()
        .stdout_text();
    assert!(
        said.contains(&format!(
            "copied {from} to {into_layout}\ndigest: {}",
            multi.digest
        )),
        "{said}"
    );
    let raw = run_tool("skopeo", &["inspect", "--raw", &into_layout]);
    assert_eq!(sha256(raw.as_bytes()), multi.digest);
    sandbox
        .mcreg(&[
            "copy",
            "--platform",
            "linux/amd64",
            &from,
            &format!("docker-archive:{archive}"),
        ])
        .ok();

    // Disk → registry: the layout's index byte for byte, the archive as schema 2.
    let to = format!("{}/from-disk/multi:v1", dest.host());
    let pushed = sandbox
        .mcreg(&[
            "copy",
            &format!("oci:{layout}:multi"),
            &format!("docker://{to}"),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(pushed["digest"], multi.digest.as_str());
    let raw = run_tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{to}"),
        ],
    );
    assert_eq!(sha256(raw.as_bytes()), multi.digest);
    let to = format!("{}/from-disk/amd64:v1", dest.host());
    sandbox
        .mcreg(&["copy", &format!("docker-archive:{archive}"), &to])
        .ok();
    let inspected = run_tool(
        "skopeo",
        &["inspect", "--tls-verify=false", &format!("docker://{to}")],
    );
    assert!(inspected.contains("\"Architecture\": \"amd64\""), "{inspected}");

    // Disk to disk: a layout's whole index into another layout, byte for byte.
    let copied = path_str(&sandbox.path("copied"));
    sandbox
        .mcreg(&[
            "copy",
            &format!("oci:{layout}:multi"),
            &format!("oci:{copied}:again"),
        ])
        .ok();
    let raw = run_tool("skopeo", &["inspect", "--raw", &format!("oci:{copied}:again")]);
    assert_eq!(sha256(raw.as_bytes()), multi.digest);
    // The archive into a layout, and that layout into a new archive, which podman
    // loads as the same image.
    let from_archive = path_str(&sandbox.path("from-archive"));
    let said = sandbox
        .mcreg(&[
            "copy",
            &format!("docker-archive:{archive}"),
            &format!("oci:{from_archive}:amd64"),
            "--json",
        ])
        .ok()
        .json();
    let archived = said["digest"].as_str().expect("a digest").to_owned();
    let round_trip = path_str(&sandbox.path("round-trip.tar"));
    sandbox
        .mcreg(&[
            "copy",
            &format!("oci:{from_archive}:amd64"),
            &format!("docker-archive:{round_trip}"),
        ])
        .ok();
    let before = run_tool("skopeo", &["inspect", &format!("docker-archive:{archive}")]);
    let after = run_tool("skopeo", &["inspect", &format!("docker-archive:{round_trip}")]);
    let layers =
        |inspected: &str| serde_json::from_str::<serde_json::Value>(inspected).unwrap()["Layers"].clone();
    assert_eq!(layers(&before), layers(&after), "{before}\n{after}");
    assert!(after.contains("\"Architecture\": \"amd64\""), "{after}");
    assert!(archived.starts_with("sha256:"), "{archived}");
    // podman loads both archives as one image (its ID is the config's digest).
    let storage = tempfile::tempdir().expect("podman's storage");
    let loaded = |dir: &str, archive: &str| {
        podman(storage.path(), dir, &["load", "--quiet", "-i", archive]);
        podman(storage.path(), dir, &["images", "--quiet", "--no-trunc"])
    };
    let (original, copied) = (loaded("a", &archive), loaded("b", &round_trip));
    assert!(original.trim().starts_with("sha256:"), "{original}");
    assert_eq!(original, copied);

    // A whole index does not fit an archive: a clear error, and no file.
    let refused = path_str(&sandbox.path("refused.tar"));
    let run = sandbox
        .mcreg(&[
            "copy",
            &format!("oci:{layout}:multi"),
            &format!("docker-archive:{refused}"),
        ])
        .expect_code(1);
    assert!(run.stderr.contains("one platform"), "{}", run.stderr);
    assert!(!std::path::Path::new(&refused).exists());
}
