//! Our outputs, checked by the real tools people load them with:
//! `podman load`, `skopeo inspect`, `umoci unpack`.

use std::path::Path;

use conformance::harness::{AuthMode, ImageFixture, run_tool};
use conformance::suite::{SuiteEnv, Target, tree_from_dir, tree_from_tar};
use registry_client::driver::oci::OciOption;
use registry_client::pull::PullOptions;
use registry_client::push::{CopyOptions, LocalImage};
use registry_client::write::{Destination, Written, copy_image};
use registry_client::{ErrorKind, RepositoryClient, RepositoryClientBuilder};
use serde_json::Value;

fn builder(_: &Target) -> RepositoryClientBuilder {
    RepositoryClient::builder("oci").option(OciOption::DockerConfig, "/nonexistent/config.json")
}

fn hex(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, h)| h)
}

async fn pulled_archive(env: &SuiteEnv, fixture: &ImageFixture, dir: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("{}.tar", hex(&fixture.digest)));
    env.client()
        .pull(&env.image(fixture))
        .await
        .expect("resolve")
        .write_docker_archive(&path, &PullOptions::default())
        .await
        .expect("pull");
    path
}

#[tokio::test]
async fn podman_loads_the_docker_archive() {
    let env = SuiteEnv::start(AuthMode::None, None, builder).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, runroot) = (dir.path().join("root"), dir.path().join("runroot"));
    let storage = [
        "--root",
        root.to_str().expect("utf-8"),
        "--runroot",
        runroot.to_str().expect("utf-8"),
        "--storage-driver",
        "vfs",
    ];
    for fixture in [
        &env.fixtures().single_oci,
        &env.fixtures().single_docker,
        &env.fixtures().many_layers,
    ] {
        let archive = pulled_archive(&env, fixture, dir.path()).await;
        let mut load = storage.to_vec();
        load.extend(["load", "-i", archive.to_str().expect("utf-8")]);
        let loaded = run_tool("podman", &load);
        let tag = env.image(fixture).to_string();
        assert!(loaded.contains(&tag), "podman load said: {loaded}");

        let mut images = storage.to_vec();
        images.extend(["images", "--format", "json"]);
        let images: Value = serde_json::from_str(&run_tool("podman", &images)).expect("podman images JSON");
        let ours = images
            .as_array()
            .expect("array")
            .iter()
            .find(|i| {
                i["Names"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|n| n == tag.as_str()))
            })
            .unwrap_or_else(|| panic!("{tag} not in {images}"));
        assert_eq!(
            ours["Id"],
            hex(&fixture.config_digest),
            "image id is the config digest"
        );
    }
}

#[tokio::test]
async fn skopeo_reads_the_docker_archive() {
    let env = SuiteEnv::start(AuthMode::None, None, builder).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().many_layers;
    let archive = pulled_archive(&env, fixture, dir.path()).await;
    let source = format!("docker-archive:{}", archive.display());
    let inspected: Value = serde_json::from_str(&run_tool("skopeo", &["inspect", &source])).expect("JSON");
    assert_eq!(inspected["Architecture"], fixture.platform.architecture.as_str());
    assert_eq!(
        inspected["Layers"].as_array().map(Vec::len),
        Some(fixture.layers.len())
    );
    let config: Value =
        serde_json::from_str(&run_tool("skopeo", &["inspect", "--config", "--raw", &source])).expect("JSON");
    let diff_ids: Vec<&str> = fixture.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
}

#[tokio::test]
async fn skopeo_reads_the_oci_layout() {
    let env = SuiteEnv::start(AuthMode::Token, None, |t| {
        let (user, password) = t.credentials.clone().expect("token mode has a user");
        builder(t).credentials(registry_client::Credentials::basic(user, password))
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let client = env.client();
    let single = &env.fixtures().single_oci;
    client
        .pull(&env.image(single))
        .await
        .expect("resolve")
        .write_oci_layout(&layout, &PullOptions::default())
        .await
        .expect("pull");
    let multi = &env.fixtures().multi_oci;
    client
        .pull_all_platforms(&env.index(multi))
        .await
        .expect("resolve")
        .write_oci_layout(&layout, &PullOptions::default().ref_name("multi"))
        .await
        .expect("pull all");

    let v1 = format!("oci:{}:v1", layout.display());
    let inspected: Value = serde_json::from_str(&run_tool("skopeo", &["inspect", &v1])).expect("JSON");
    assert_eq!(inspected["Digest"], single.digest.as_str());
    let layers: Vec<&str> = single.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(inspected["Layers"], serde_json::json!(layers));
    let raw = run_tool(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:multi", layout.display())],
    );
    assert_eq!(raw.as_bytes(), multi.manifest, "the index, byte for byte");
    for child in &multi.children {
        let platform = format!("--override-arch={}", child.platform.architecture);
        let mut args = vec![platform.as_str()];
        let variant = child
            .platform
            .variant
            .as_ref()
            .map(|v| format!("--override-variant={v}"));
        args.extend(variant.as_deref());
        let target = format!("oci:{}:multi", layout.display());
        args.extend(["inspect", target.as_str()]);
        let inspected: Value = serde_json::from_str(&run_tool("skopeo", &args)).expect("JSON");
        // skopeo names the index's digest and describes the chosen child.
        assert_eq!(inspected["Digest"], multi.digest.as_str());
        let layers: Vec<&str> = child.layers.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(
            inspected["Layers"],
            serde_json::json!(layers),
            "{:?}",
            child.platform
        );
        assert_eq!(inspected["Architecture"], child.platform.architecture.as_str());
    }
}

#[tokio::test]
async fn umoci_unpack_matches_our_rootfs() {
    let env = SuiteEnv::start(AuthMode::None, None, builder).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let client = env.client();
    for fixture in [&env.fixtures().single_oci, &env.fixtures().many_layers] {
        let name = hex(&fixture.digest);
        let layout = dir.path().join(format!("layout-{name}"));
        let rootfs = dir.path().join(format!("rootfs-{name}.tar"));
        let image = client.pull(&env.image(fixture)).await.expect("resolve");
        image
            .write_oci_layout(&layout, &PullOptions::default())
            .await
            .expect("layout");
        image
            .write_rootfs(&rootfs, &PullOptions::default())
            .await
            .expect("rootfs");

        let bundle = dir.path().join(format!("bundle-{name}"));
        let image_arg = format!("{}:v1", layout.display());
        run_tool(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &image_arg,
                bundle.to_str().expect("utf-8"),
            ],
        );
        let theirs = tree_from_dir(&bundle.join("rootfs"));
        let ours = tree_from_tar(&std::fs::read(&rootfs).expect("rootfs"));
        assert!(!ours.is_empty());
        assert_eq!(ours, theirs, "{}", fixture.repository);

        // The same root filesystem from the layout on disk, no registry involved.
        let local = LocalImage::open_oci_layout(&layout, Some("v1")).expect("open the layout");
        let from_disk = dir.path().join(format!("rootfs-local-{name}.tar"));
        let written = copy_image(&local, &Destination::rootfs(&from_disk), &CopyOptions::default())
            .await
            .expect("rootfs from disk");
        assert!(matches!(written, Written::File(r) if r.digest == fixture.digest));
        let from_disk = tree_from_tar(&std::fs::read(&from_disk).expect("rootfs"));
        assert_eq!(from_disk, theirs, "{} from disk", fixture.repository);
    }
}

#[tokio::test]
async fn a_damaged_layout_blob_stops_a_copy_and_leaves_no_output() {
    let env = SuiteEnv::start(AuthMode::None, None, builder).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().single_oci;
    let layout = dir.path().join("layout");
    let image = env.client().pull(&env.image(fixture)).await.expect("resolve");
    image
        .write_oci_layout(&layout, &PullOptions::default())
        .await
        .expect("layout");
    // One layer's bytes change, its size does not (the reader checks sizes only).
    let layer = image.images()[0].manifest.bytes.clone();
    let layer: Value = serde_json::from_slice(&layer).expect("manifest");
    let digest = layer["layers"][0]["digest"].as_str().expect("a layer").to_owned();
    let path = layout.join("blobs/sha256").join(hex(&digest));
    let mut bytes = std::fs::read(&path).expect("layer");
    bytes[0] ^= 0xff;
    std::fs::remove_file(&path).expect("unlink the layer");
    std::fs::write(&path, &bytes).expect("damage the layer");

    let local = LocalImage::open_oci_layout(&layout, Some("v1")).expect("open the layout");
    let archive = dir.path().join("image.tar");
    let options = CopyOptions::default();
    let to = Destination::docker_archive(&archive);
    let error = copy_image(&local, &to, &options)
        .await
        .expect_err("a damaged layer");
    assert_eq!(error.kind(), ErrorKind::DigestMismatch, "{error}");
    assert!(error.to_string().contains(hex(&digest)), "{error}");
    assert!(!archive.exists(), "a half-written archive was left");
    let other = dir.path().join("other");
    let to = Destination::oci_layout(&other, None);
    assert_eq!(
        copy_image(&local, &to, &options)
            .await
            .expect_err("a damaged layer")
            .kind(),
        ErrorKind::DigestMismatch
    );
    assert!(
        !other.join("index.json").exists(),
        "a layout naming a damaged image was left"
    );
}
