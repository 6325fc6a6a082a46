//! The real clients the tests run, each kept off the machine's own files:
//! skopeo with a policy that accepts anything, an empty `registries.conf`
//! and an auth file of its own, all in a directory of the test's.

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
