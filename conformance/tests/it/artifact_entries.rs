//! An index that lists an OCI artifact (a manifest whose config is not an
//! image config, here the empty config `{}`) beside an image: pulling one
//! platform ignores it; pulling the whole index keeps it, blobs and all.

use conformance::harness::fixtures::{OCI_INDEX, OCI_MANIFEST};
use conformance::harness::{AuthMode, Pusher, TestRegistry};
use registry_client::driver::oci::OciOption;
use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient};
use serde_json::{Value, json};

const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const NOTE: &str = "application/vnd.example.note.v1+txt";

fn client() -> RepositoryClient {
    RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .platform("linux/amd64")
        .build()
        .expect("client")
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

#[tokio::test]
async fn artifact_entries_are_kept_in_a_whole_index_pull() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let image = &registry.fixtures().multi_oci.children[0];
    let repo = &registry.fixtures().multi_oci.repository;
    let pusher = Pusher::new(&registry.url());

    let config = b"{}";
    let note = b"signed by nobody in particular";
    let config_digest = pusher.blob(repo, config).await;
    let note_digest = pusher.blob(repo, note).await;
    let artifact = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": NOTE,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": NOTE, "digest": note_digest, "size": note.len()}],
    }));
    let artifact_digest = pusher.manifest(repo, "note", OCI_MANIFEST, &artifact).await;
    let index = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": image.media_type, "digest": image.digest, "size": image.manifest.len(),
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            {"mediaType": OCI_MANIFEST, "digest": artifact_digest, "size": artifact.len(), "artifactType": NOTE},
        ],
    }));
    let index_digest = pusher.manifest(repo, "with-artifact", OCI_INDEX, &index).await;
    let reference: ImageReference = format!("{}/{repo}:with-artifact", registry.host())
        .parse()
        .expect("reference");

    // One platform: the artifact has none, so it is not a candidate.
    let one = client().pull(&reference).await.expect("resolve one platform");
    assert_eq!(one.images()[0].manifest.descriptor.digest, image.digest);

    // The whole index: the image and the artifact, every blob in the layout.
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let result = client()
        .pull_all_platforms(&reference)
        .await
        .expect("resolve the whole index")
        .write_oci_layout(&layout, &PullOptions::default())
        .await
        .expect("pull the whole index");
    assert_eq!(result.digest, index_digest);
    assert_eq!(
        result.layers.len(),
        image.layers.len(),
        "the result lists the image's layers only"
    );
    let blob = |digest: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap_or_else(|e| panic!("blob {digest}: {e}"))
    };
    assert_eq!(blob(&index_digest), index);
    assert_eq!(blob(&artifact_digest), artifact);
    assert_eq!(blob(&config_digest), config);
    assert_eq!(blob(&note_digest), note);
    assert_eq!(blob(&image.digest), image.manifest);
    assert_eq!(blob(&image.config_digest), image.config);
    for layer in &image.layers {
        assert_eq!(blob(&layer.digest), layer.data);
    }
    let index_json: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json")).expect("JSON");
    assert_eq!(index_json["manifests"][0]["digest"], index_digest.as_str());
}
