//! An index whose entry is itself an index: resolution for one platform walks
//! down both levels; a whole-index pull keeps every level in the OCI layout.

use conformance::harness::fixtures::OCI_INDEX;
use conformance::harness::{AuthMode, Pusher, TestRegistry};
use registry_client::driver::oci::OciOption;
use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient};
use serde_json::{Value, json};

fn client(platform: &str) -> RepositoryClient {
    RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .platform(platform)
        .build()
        .expect("client")
}

#[tokio::test]
async fn nested_indexes_resolve_and_are_kept_whole() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let multi = &registry.fixtures().multi_oci;
    let outer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": multi.digest, "size": multi.manifest.len()}],
    }))
    .expect("JSON");
    let outer_digest = Pusher::new(&registry.url())
        .manifest(&multi.repository, "nested", OCI_INDEX, &outer)
        .await;
    let reference: ImageReference = format!("{}/{}:nested", registry.host(), multi.repository)
        .parse()
        .expect("reference");

    for child in &multi.children {
        let platform = child.platform.to_string();
        let image = client(&platform).pull(&reference).await.expect("resolve");
        assert_eq!(
            image.images()[0].manifest.descriptor.digest,
            child.digest,
            "{platform}"
        );
        assert_eq!(
            image.index().map(|i| i.descriptor.digest.as_str()),
            Some(outer_digest.as_str())
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let result = client("linux/amd64")
        .pull_all_platforms(&reference)
        .await
        .expect("resolve all")
        .write_oci_layout(&layout, &PullOptions::default())
        .await
        .expect("pull all");
    assert_eq!(result.digest, outer_digest);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json")).expect("JSON");
    assert_eq!(index["manifests"][0]["digest"], outer_digest.as_str());
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    assert_eq!(std::fs::read(blob(&outer_digest)).expect("outer"), outer);
    assert_eq!(std::fs::read(blob(&multi.digest)).expect("inner"), multi.manifest);
    for child in &multi.children {
        assert_eq!(std::fs::read(blob(&child.digest)).expect("child"), child.manifest);
    }
}
