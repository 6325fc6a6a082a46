//! The real clients the tests run, each kept off the machine's own files:
//! skopeo with a policy that accepts anything, podman with a storage of its
//! own, each with a `registries.conf` and an auth file in a directory of the
//! test's. (containerd's `ctr` is [`super::Containerd::ctr`].)

use std::path::Path;
use std::process::Command;

/// `skopeo` with its policy, `registries.conf` and auth file in `dir`
/// (created if need be; logins go to `dir/skopeo-auth.json`). Add the arguments.
pub fn skopeo(dir: &Path) -> Command {
    std::fs::create_dir_all(dir).expect("skopeo's directory");
    let policy = dir.join("policy.json");
    let registries_conf = dir.join("skopeo-registries.conf");
    if !policy.exists() {
        std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).expect("policy.json");
    }
    if !registries_conf.exists() {
        std::fs::write(&registries_conf, "").expect("registries.conf");
    }
    let mut command = Command::new("skopeo");
    command
        .env("CONTAINERS_REGISTRIES_CONF", registries_conf)
        .env("REGISTRY_AUTH_FILE", dir.join("skopeo-auth.json"))
        .arg("--policy")
        .arg(policy);
    command
}

/// `podman` with a storage of its own under `dir` (`root/`, `run/`, the vfs driver),
/// `registries_conf` (an empty one in `dir` if `None`) and its auth file in `dir`
/// (`podman-auth.json`). Add the arguments. Keep `dir` short: podman refuses a runroot
/// longer than 50 characters.
pub fn podman(dir: &Path, registries_conf: Option<&Path>) -> Command {
    std::fs::create_dir_all(dir).expect("podman's directory");
    let registries_conf = match registries_conf {
        Some(path) => path.to_owned(),
        None => {
            let path = dir.join("podman-registries.conf");
            if !path.exists() {
                std::fs::write(&path, "").expect("registries.conf");
            }
            path
        }
    };
    let authfile = dir.join("podman-auth.json");
    if !authfile.exists() {
        std::fs::write(&authfile, "{}").expect("podman's auth file");
    }
    let mut command = Command::new("podman");
    command
        .env("CONTAINERS_REGISTRIES_CONF", registries_conf)
        .env("REGISTRY_AUTH_FILE", authfile)
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"]);
    command
}

/// Runs `command` and returns its standard output; panics with both outputs if it
/// fails (or cannot start: the tools come from `scripts/install-test-tools.sh`).
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?} could not run ({err}): run scripts/install-test-tools.sh"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The manifest digest the `index.json` of the OCI layout at `layout`
/// gives `tag`.
pub fn layout_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json")).expect("JSON");
    let entries = index["manifests"].as_array().expect("manifests");
    let entry = entries
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index}"));
    entry["digest"].as_str().expect("digest").to_owned()
}
