//! Cases for the upload side: a copy within the registry (mounted), blobs and a manifest
//! pushed by hand (one small blob in one `PUT`, one large in chunks) and pulled back, a
//! failed chunk sent again, a refused manifest leaving no tag. Everything goes under the
//! harness's [`PUSH_NAMESPACE`], where the provider's own user may push.

use bytes::Bytes;
use futures::stream;
use registry_client::BlobPush;
use registry_client::model::digest::sha256;
use registry_client::pull::PullOptions;
use registry_client::push::CopyOptions;
use registry_client::{ImageReference, RepositoryClient};
use serde_json::json;

use super::env::SuiteEnv;
use crate::harness::fault_proxy::{Fault, FaultKind, Matcher};
use crate::harness::fixtures::{OCI_CONFIG, OCI_MANIFEST};
use crate::harness::{PUSH_NAMESPACE, noise};

/// `pushed/<name>:<tag>` under the environment's registry name.
fn pushed(env: &SuiteEnv, name_and_tag: &str) -> ImageReference {
    env.reference(&format!("{PUSH_NAMESPACE}{name_and_tag}"))
}

/// Uploads `data` as a blob of `reference`'s repository, in pieces as a stream would bring it.
async fn upload(client: &RepositoryClient, reference: &ImageReference, data: &[u8]) -> String {
    let digest = sha256(data);
    let pieces: Vec<registry_client::Result<Bytes>> = data
        .chunks(1024 * 1024 + 7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    client
        .upload_blob(reference, &digest, data.len() as u64, stream::iter(pieces))
        .await
        .unwrap_or_else(|e| panic!("upload {digest}: {e}"));
    digest
}

/// An image of one layer of `layer` pushed by hand as `reference`; its manifest digest.
async fn push_image(client: &RepositoryClient, reference: &ImageReference, layer: &[u8]) -> String {
    let layer_digest = upload(client, reference, layer).await;
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    })
    .to_string();
    let config_digest = upload(client, reference, config.as_bytes()).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    })
    .to_string();
    client
        .put_manifest(reference, OCI_MANIFEST, Bytes::from(manifest))
        .await
        .expect("put the manifest")
}

/// A fixture copied to another repository of the same registry: mounted (or, where the
/// registry declines, uploaded), then present on a second copy; the same digest.
pub async fn push_copy_within_registry(client: &RepositoryClient, env: &SuiteEnv) {
    let many = &env.fixtures().many_layers;
    let to = pushed(env, "many:copy");
    let image = client.pull(&env.image(many)).await.expect("resolve");
    let result = client
        .push(&image, &to, &CopyOptions::default())
        .await
        .expect("copy");
    assert_eq!(result.digest, many.digest);
    assert_eq!(result.blobs.len(), many.layers.len() + 1);
    assert!(
        result.blobs.iter().all(|b| b.how != BlobPush::Present),
        "{result:?}"
    );
    let back = client.get_manifest(&to).await.expect("the copy's manifest");
    assert_eq!(back.descriptor.digest, many.digest);
    let again = client
        .push(&image, &to, &CopyOptions::default())
        .await
        .expect("copy again");
    assert!(
        again.blobs.iter().all(|b| b.how == BlobPush::Present),
        "{again:?}"
    );
    assert_eq!(again.uploaded_bytes, 0);
}

/// Blobs pushed by hand (a small one in one `PUT`, a large one in chunks) and a manifest
/// by tag; pulled back whole, by tag and by digest.
pub async fn push_and_pull_back(client: &RepositoryClient, env: &SuiteEnv) {
    let to = pushed(env, "by-hand:v1");
    let layer = noise(1, 9 * 1024 * 1024 + 123);
    let digest = push_image(client, &to, &layer).await;
    assert!(client.blob_exists(&to, &sha256(&layer)).await.expect("HEAD"));
    assert!(
        !client
            .blob_exists(&to, &sha256(b"never pushed"))
            .await
            .expect("HEAD"),
        "a blob never pushed"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    for reference in [to.clone(), to.with_digest(&digest).expect("by digest")] {
        let result = client
            .pull(&reference)
            .await
            .expect("resolve")
            .write_oci_layout(&dir.path().join("layout"), &PullOptions::default())
            .await
            .expect("pull back");
        assert_eq!(result.digest, digest);
    }
    let blob = dir.path().join("layout/blobs/sha256").join(&sha256(&layer)[7..]);
    assert!(
        std::fs::read(blob).expect("the layer") == layer,
        "the layer came back changed"
    );
}

/// A chunk refused before it reaches the registry is sent again from the offset the
/// registry reports.
pub async fn push_resumes_failed_chunk(client: &RepositoryClient, env: &SuiteEnv) {
    env.proxy.inject_when(
        Matcher::path_contains("/blobs/uploads/").method(reqwest::Method::PATCH),
        Fault::status(503, 1),
    );
    let to = pushed(env, "resumed:v1");
    let layer = noise(2, 10 * 1024 * 1024);
    let digest = push_image(client, &to, &layer).await;
    assert_eq!(env.proxy.fired(FaultKind::Status), 1);
    let back = client.get_manifest(&to).await.expect("manifest");
    assert_eq!(back.descriptor.digest, digest);
}

/// A manifest the registry refuses is an error, and leaves no tag.
pub async fn push_refused_manifest_leaves_no_tag(client: &RepositoryClient, env: &SuiteEnv) {
    env.proxy.inject_when(
        Matcher::manifests().method(reqwest::Method::PUT),
        Fault::status(400, 10),
    );
    let to = pushed(env, "refused:v1");
    let image = client
        .pull(&env.image(&env.fixtures().single_oci))
        .await
        .expect("resolve");
    let copy = client.push(&image, &to, &CopyOptions::default()).await;
    assert!(copy.is_err(), "{copy:?}");
    let tag = client.get_manifest(&to).await.expect_err("no tag");
    assert!(tag.is_not_found(), "{tag}");
}
