//! Every command of the built binary against a real registry, in every auth mode.

use crate::common::{MODES, Sandbox, path_str};
use conformance::harness::{AuthMode, TestRegistry, run_tool};
use conformance::suite::tar_entries;
use serde_json::Value;

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

#[tokio::test]
async fn every_command_in_every_auth_mode() {
    for mode in MODES {
        let registry = TestRegistry::start(mode).await;
        let sandbox = Sandbox::new();
        let host = registry.host();
        let fixtures = registry.fixtures();
        let single = &fixtures.single_oci;
        let image = single.reference(&host);
        let run = |args: &[&str]| sandbox.mcreg_as_user(&registry, args).ok();

        // digest: HEAD only.
        let digest = run(&["digest", &image, "--json"]).json();
        assert_eq!(digest["digest"], single.digest.as_str(), "{mode:?}");
        assert_eq!(digest["mediaType"], single.media_type);
        assert_eq!(digest["size"], single.manifest.len() as u64);
        let human = run(&["digest", &image]);
        assert_eq!(human.stdout_text(), format!("{}\n", single.digest));

        // inspect: an image manifest.
        let inspect = run(&["inspect", &image, "--json"]).json();
        assert_eq!(inspect["digest"], single.digest.as_str());
        assert_eq!(inspect["mediaType"], single.media_type);
        assert_eq!(inspect["provider"], "oci");
        let layers: Vec<&str> = inspect["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("digest"))
            .collect();
        let want: Vec<&str> = single.layers.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(layers, want);
        assert_eq!(inspect["layers"][0]["size"], single.layers[0].size);
        assert_eq!(inspect["platforms"][0]["platform"], "linux/amd64");
        assert_eq!(inspect["config"]["digest"], single.config_digest.as_str());
        assert_eq!(inspect["config"]["architecture"], "amd64");
        let human = run(&["inspect", &image]).stdout_text();
        for needle in [
            single.digest.as_str(),
            single.layers[0].digest.as_str(),
            "linux/amd64",
        ] {
            assert!(human.contains(needle), "{needle} in {human}");
        }

        // inspect: an index, one platform described.
        let index = &fixtures.multi_oci;
        let arm = index.child("linux/arm64/v8");
        let inspect = run(&[
            "inspect",
            &index.reference(&host),
            "--platform",
            "linux/arm64",
            "--json",
        ])
        .json();
        assert_eq!(inspect["digest"], index.digest.as_str());
        assert_eq!(inspect["mediaType"], index.media_type);
        let platforms: Vec<&str> = inspect["platforms"]
            .as_array()
            .expect("platforms")
            .iter()
            .map(|p| p["platform"].as_str().expect("platform"))
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
        assert_eq!(inspect["platform"], "linux/arm64/v8");
        assert_eq!(inspect["manifest"]["digest"], arm.digest.as_str());
        assert_eq!(inspect["layers"][0]["digest"], arm.layers[0].digest.as_str());

        // inspect --raw: the bytes exactly as served, no newline added.
        let raw = run(&["inspect", &index.reference(&host), "--raw"]);
        assert_eq!(raw.stdout, index.manifest.as_ref());
        let raw = run(&[
            "inspect",
            &index.reference(&host),
            "--raw",
            "--platform",
            "linux/arm64",
        ]);
        assert_eq!(raw.stdout, arm.manifest.as_ref());
        let raw = run(&["inspect", &image, "--config", "--raw"]);
        assert_eq!(raw.stdout, single.config.as_ref());
        let config = run(&["inspect", &image, "--config"]).json();
        assert_eq!(config["architecture"], "amd64");

        // tags: every page.
        let tags = &fixtures.tags;
        let listed = run(&["tags", &format!("{host}/{}", tags.repository), "--json"]).json();
        assert_eq!(listed["repository"], format!("{host}/{}", tags.repository));
        assert_eq!(listed["source"], host.as_str());
        let mut got = strings(&listed["tags"]);
        got.sort();
        assert_eq!(got, tags.tags);
        let human = run(&["tags", &format!("{host}/{}", tags.repository), "--page-size", "7"]);
        assert_eq!(human.stdout_text().lines().count(), tags.tags.len());

        // catalog: every page (Distribution paginates the catalog).
        let catalog = run(&["catalog", &host, "--json", "--page-size", "2"]).json();
        assert_eq!(catalog["registry"], host.as_str());
        assert_eq!(strings(&catalog["repositories"]), fixtures.repositories());
        let human = run(&["catalog", &host]).stdout_text();
        assert_eq!(human.lines().collect::<Vec<_>>(), fixtures.repositories());

        // pull, in this mode: a docker archive.
        let out = sandbox.path("single.tar");
        let pulled = run(&["pull", &image, "-o", &path_str(&out), "--json"]).json();
        assert_eq!(pulled["digest"], single.digest.as_str());
        assert_eq!(pulled["format"], "docker");
        assert_eq!(pulled["platform"], "linux/amd64");
        assert_eq!(pulled["layers"][0]["digest"], single.layers[0].digest.as_str());
        assert_eq!(pulled["layers"][0]["fromCache"], false);
        let entries = tar_entries(&std::fs::read(&out).expect("archive"));
        assert!(entries.contains_key("manifest.json"), "{:?}", entries.keys());
    }
}

#[tokio::test]
async fn pull_writes_each_format() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let sandbox = Sandbox::new();
    let host = registry.host();
    let fixtures = registry.fixtures();
    let single = &fixtures.single_docker;
    let image = single.reference(&host);

    // docker (the default), checked by skopeo.
    let archive = sandbox.path("docker.tar");
    sandbox.mcreg(&["pull", &image, "-o", &path_str(&archive)]).ok();
    let entries = tar_entries(&std::fs::read(&archive).expect("archive"));
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"].2).expect("manifest.json");
    assert_eq!(manifest[0]["RepoTags"][0], image.as_str());
    let inspected: Value = serde_json::from_str(&run_tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", path_str(&archive))],
    ))
    .expect("skopeo JSON");
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Os"], "linux");

    // oci: one platform (skopeo reads OCI media types only from a layout), then every
    // platform of an index.
    let oci = &fixtures.single_oci;
    let layout = sandbox.path("layout");
    let pulled = sandbox
        .mcreg(&[
            "pull",
            &oci.reference(&host),
            "-o",
            &path_str(&layout),
            "--format",
            "oci",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(pulled["format"], "oci");
    assert!(layout.join("oci-layout").is_file());
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
        .expect("index JSON");
    assert_eq!(index["manifests"][0]["digest"], oci.digest.as_str());
    let inspected: Value = serde_json::from_str(&run_tool(
        "skopeo",
        &["inspect", &format!("oci:{}:v1", path_str(&layout))],
    ))
    .expect("skopeo JSON");
    assert_eq!(inspected["Digest"], oci.digest.as_str());

    let multi = &fixtures.multi_oci;
    let all = sandbox.path("all");
    let pulled = sandbox
        .mcreg(&[
            "pull",
            &multi.reference(&host),
            "-o",
            &path_str(&all),
            "--format",
            "oci",
            "--platform",
            "all",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(pulled["digest"], multi.digest.as_str());
    assert_eq!(pulled["platform"], Value::Null);
    assert_eq!(pulled["layers"].as_array().expect("layers").len(), 3);
    let index: Value =
        serde_json::from_slice(&std::fs::read(all.join("index.json")).expect("index.json")).expect("JSON");
    assert_eq!(index["manifests"][0]["digest"], multi.digest.as_str());

    // rootfs: the image's files, flattened.
    let rootfs = sandbox.path("rootfs.tar");
    let pulled = sandbox
        .mcreg(&[
            "pull",
            &image,
            "-o",
            &path_str(&rootfs),
            "--format",
            "rootfs",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(pulled["format"], "rootfs");
    let entries = tar_entries(&std::fs::read(&rootfs).expect("rootfs"));
    let hello = &entries["etc/hello.txt"].2;
    assert_eq!(hello.as_slice(), b"hello from single/docker\n");

    // A platform of a multi-platform image.
    let arm = sandbox.path("arm.tar");
    sandbox
        .mcreg(&[
            "pull",
            &multi.reference(&host),
            "-o",
            &path_str(&arm),
            "--format",
            "rootfs",
            "--platform",
            "linux/arm/v7",
        ])
        .ok();
    let entries = tar_entries(&std::fs::read(&arm).expect("rootfs"));
    assert_eq!(entries["platform.txt"].2.as_slice(), b"multi/oci linux/arm/v7\n");

    // `all` is only for an OCI layout: a usage error, nothing written.
    let refused = sandbox
        .mcreg(&[
            "pull",
            &multi.reference(&host),
            "-o",
            &path_str(&sandbox.path("all.tar")),
            "--platform",
            "all",
        ])
        .expect_code(2);
    assert!(
        refused
            .stderr
            .starts_with("error: --platform all needs --format oci"),
        "{}",
        refused.stderr
    );
    assert!(!sandbox.path("all.tar").exists());
}

#[tokio::test]
async fn progress_is_one_line_per_layer_without_a_terminal() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let sandbox = Sandbox::new();
    let fixture = &registry.fixtures().many_layers;
    let image = fixture.reference(&registry.host());
    let cache = path_str(&sandbox.path("cache"));

    let first = sandbox
        .mcreg(&[
            "pull",
            &image,
            "-o",
            &path_str(&sandbox.path("1.tar")),
            "--cache-dir",
            &cache,
            "--jobs",
            "4",
        ])
        .ok();
    // Which source served the image, then one line per layer.
    let resolved = format!("resolved {} from {}", fixture.digest, registry.host());
    let (head, lines) = first.stderr.split_once('\n').expect("lines");
    assert_eq!(head, resolved, "{}", first.stderr);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), fixture.layers.len(), "{}", first.stderr);
    for layer in &fixture.layers {
        let line = format!("done {} {} bytes", layer.digest, layer.size);
        assert_eq!(
            lines.iter().filter(|l| **l == line).count(),
            1,
            "{line} in {}",
            first.stderr
        );
    }
    let summary = first.stdout_text();
    assert!(summary.contains(&fixture.digest), "{summary}");

    // Again from the cache: the same layers, shown as cached.
    let second = sandbox
        .mcreg(&[
            "pull",
            &image,
            "-o",
            &path_str(&sandbox.path("2.tar")),
            "--cache-dir",
            &cache,
            "--json",
        ])
        .ok();
    let (head, lines) = second.stderr.split_once('\n').expect("lines");
    assert_eq!(head, resolved, "{}", second.stderr);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), fixture.layers.len(), "{}", second.stderr);
    assert!(
        lines.iter().all(|l| l.starts_with("cached sha256:")),
        "{}",
        second.stderr
    );
    let result = second.json();
    assert_eq!(result["downloadedBytes"], 0);
    assert!(
        result["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .all(|l| l["fromCache"] == true)
    );
    assert_eq!(
        std::fs::read(sandbox.path("1.tar")).expect("first"),
        std::fs::read(sandbox.path("2.tar")).expect("second")
    );

    // --quiet: nothing at all.
    let quiet = sandbox
        .mcreg(&["pull", &image, "-o", &path_str(&sandbox.path("3.tar")), "-q"])
        .ok();
    assert_eq!(quiet.stderr, "");
    assert!(quiet.stdout.is_empty());
}

#[test]
fn providers_are_listed_with_their_hosts() {
    let sandbox = Sandbox::new();
    let listed = sandbox.mcreg(&["providers", "--json"]).ok().json();
    let providers = listed["providers"].as_array().expect("providers");
    let ids: Vec<&str> = providers.iter().map(|p| p["id"].as_str().expect("id")).collect();
    for id in ["ali", "aws", "gcp", "oci"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    for provider in providers {
        assert!(
            !provider["hosts"].as_array().expect("hosts").is_empty(),
            "{provider}"
        );
    }
    let human = sandbox.mcreg(&["providers"]).ok().stdout_text();
    assert!(human.starts_with("PROVIDER"), "{human}");
    assert!(human.contains("amazonaws.com"), "{human}");
}

#[test]
fn completions_and_help() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = sandbox.mcreg(&["completions", shell]).ok().stdout_text();
        assert!(script.contains("mcreg"), "{shell}");
        assert!(script.contains("credential-helper"), "{shell}");
    }
    let help = sandbox.mcreg(&["--help"]).ok().stdout_text();
    for command in [
        "pull",
        "inspect",
        "digest",
        "tags",
        "catalog",
        "providers",
        "credential-helper",
    ] {
        assert!(help.contains(command), "{command} in {help}");
    }
    let version = sandbox.mcreg(&["--version"]).ok().stdout_text();
    assert!(version.starts_with("mcreg "), "{version}");
}
