//! Copies between real Distribution registries, each behind a recording fault proxy: the
//! whole multi-arch index byte for byte (skopeo reads the same digest on both sides), one
//! platform, nothing uploaded twice, mounts within one registry, an upload cut mid-way and
//! resumed, a corrupted download committing nothing, an upload sent to another origin
//! refused, a refused manifest leaving no tag, and push access asked of a token server.

use conformance::harness::fault_proxy::{Fault, FaultProxy, Matcher, RecordedRequest};
use conformance::harness::fixtures::{OCI_CONFIG, OCI_MANIFEST};
use conformance::harness::{AuthMode, Pusher, TestRegistry, noise, run_tool};
use registry_client::BlobPush;
use registry_client::driver::oci::OciOption;
use registry_client::model::digest::sha256;
use registry_client::pull::PullOptions;
use registry_client::push::{CopyOptions, CopyResult, LocalImage};
use registry_client::{Credentials, ImageReference, RepositoryClient};
use registry_client::{Progress, ProgressEvent, SkipReason};
use reqwest::Method;
use serde_json::json;
use url::Url;

fn client(credentials: Option<(String, String)>) -> RepositoryClient {
    let mut builder = RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .platform("linux/amd64");
    if let Some((user, password)) = credentials {
        builder = builder.credentials(Credentials::basic(user, password));
    }
    builder.build().expect("client")
}

fn reference(host: &str, name: &str) -> ImageReference {
    format!("{host}/{name}").parse().expect("reference")
}

/// A registry with nothing in it, behind a recording proxy.
async fn destination(auth: AuthMode) -> (TestRegistry, FaultProxy) {
    let registry = TestRegistry::start_empty(auth).await;
    let proxy = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    (registry, proxy)
}

/// Resolves `from` (one platform) and copies it to `to`, anonymously on both sides.
async fn copy(from: &ImageReference, to: &ImageReference) -> registry_client::Result<CopyResult> {
    let image = client(None).pull(from).await.expect("resolve");
    client(None).push(&image, to, &CopyOptions::default()).await
}

/// A failed copy left no tag behind (asked as the registry's admin when it has one).
async fn assert_no_tag(registry: &TestRegistry, repository: &str, tag: &str) {
    let url = format!("{}/v2/{repository}/manifests/{tag}", registry.url());
    let mut request = reqwest::Client::new().get(&url);
    if let Some((user, password)) = registry.admin_credentials() {
        request = request.basic_auth(user, Some(password));
    }
    let answer = request.send().await.expect("GET the tag");
    assert_eq!(answer.status(), 404, "a failed copy left {repository}:{tag}");
}

fn is_upload_start(r: &RecordedRequest) -> bool {
    r.method == Method::POST && r.path.ends_with("/blobs/uploads/")
}

fn is_mount(r: &RecordedRequest) -> bool {
    is_upload_start(r) && r.query.as_deref().is_some_and(|q| q.contains("mount="))
}

fn is_blob_data(r: &RecordedRequest) -> bool {
    (r.method == Method::PATCH || r.method == Method::PUT) && r.path.contains("/blobs/uploads/")
}

/// The manifest digest skopeo reads at `image` (`docker://…`).
fn skopeo_digest(image: &str) -> String {
    skopeo_digest_as(image, None)
}

/// The same, logged in as `credentials`.
fn skopeo_digest_as(image: &str, credentials: Option<(String, String)>) -> String {
    let creds = credentials.map(|(user, password)| format!("{user}:{password}"));
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(creds) = &creds {
        args.extend(["--creds", creds.as_str()]);
    }
    args.push(image);
    sha256(run_tool("skopeo", &args).as_bytes())
}

#[tokio::test]
async fn a_whole_index_copies_byte_for_byte_and_a_second_copy_uploads_nothing() {
    let source = TestRegistry::start(AuthMode::None).await;
    let (_registry, dest) = destination(AuthMode::None).await;
    let multi = &source.fixtures().multi_oci;
    let from = reference(&source.host(), &format!("{}:v1", multi.repository));
    let to = reference(&dest.host(), "copies/multi:v1");
    let (source_client, dest_client) = (client(None), client(None));

    let image = source_client.pull_all_platforms(&from).await.expect("resolve");
    let (progress, mut events) = Progress::channel();
    let result = dest_client
        .push(&image, &to, &CopyOptions::default().progress(progress))
        .await
        .expect("copy");
    let events: Vec<ProgressEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    let total: u64 = result.blobs.iter().map(|b| b.size).sum();
    assert!(
        matches!(&events[0], ProgressEvent::CopyPlanned { digest, blobs, total_bytes, .. }
            if *digest == multi.digest && *blobs == result.blobs.len() && *total_bytes == total),
        "{events:?}"
    );
    for blob in &result.blobs {
        let sent = events.iter().filter_map(|e| match e {
            ProgressEvent::BlobProgress { digest, done, .. } if *digest == blob.digest => Some(*done),
            _ => None,
        });
        assert_eq!(sent.max(), Some(blob.size), "{} counted", blob.digest);
        assert!(events.iter().any(
            |e| matches!(e, ProgressEvent::BlobDone { digest, size } if *digest == blob.digest && *size == blob.size)
        ));
    }
    assert_eq!(result.digest, multi.digest);
    assert!(
        result.blobs.iter().all(|b| b.how == BlobPush::Uploaded),
        "{result:?}"
    );
    assert_eq!(
        result.manifests.last(),
        Some(&multi.digest),
        "the index goes last"
    );
    assert_eq!(result.manifests.len(), multi.children.len() + 1);
    assert_eq!(
        skopeo_digest(&format!("docker://{to}")),
        skopeo_digest(&format!("docker://{from}")),
        "the same index on both sides"
    );
    assert_eq!(skopeo_digest(&format!("docker://{to}")), multi.digest);
    let uploads = dest.count(is_upload_start);
    assert_eq!(uploads, result.blobs.len(), "one upload per distinct blob");

    // Again: every blob is there, none goes up; the manifests are put again.
    dest.clear_log();
    let (progress, mut events) = Progress::channel();
    let again = dest_client
        .push(&image, &to, &CopyOptions::default().progress(progress))
        .await
        .expect("copy again");
    let skipped = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| {
            matches!(
                e,
                ProgressEvent::BlobSkipped {
                    reason: SkipReason::Exists,
                    ..
                }
            )
        })
        .count();
    assert_eq!(skipped, again.blobs.len());
    assert!(
        again.blobs.iter().all(|b| b.how == BlobPush::Present),
        "{again:?}"
    );
    assert_eq!(again.uploaded_bytes, 0);
    assert_eq!(dest.count(is_upload_start), 0, "{:#?}", dest.requests());
    assert_eq!(dest.count(is_blob_data), 0);

    // A dry run of a new tag: says what exists, puts nothing.
    dest.clear_log();
    let dry = dest_client
        .push(
            &image,
            &reference(&dest.host(), "copies/other:v1"),
            &CopyOptions::default().dry_run(true),
        )
        .await
        .expect("dry run");
    assert!(dry.dry_run && dry.manifests.is_empty());
    assert!(dry.blobs.iter().all(|b| b.how == BlobPush::Uploaded), "{dry:?}");
    assert_eq!(
        dest.count(|r| r.method != Method::HEAD && r.method != Method::GET),
        0,
        "a dry run wrote: {:#?}",
        dest.requests()
    );
}

#[tokio::test]
async fn one_platform_copies_as_its_own_manifest() {
    let source = TestRegistry::start(AuthMode::None).await;
    let (_registry, dest) = destination(AuthMode::None).await;
    let multi = &source.fixtures().multi_oci;
    let amd64 = multi
        .children
        .iter()
        .find(|c| c.platform.architecture == "amd64" && c.platform.os == "linux")
        .expect("an amd64 child");
    let from = reference(&source.host(), &format!("{}:v1", multi.repository));
    let to = reference(&dest.host(), "copies/amd64:v1");
    let result = copy(&from, &to).await.expect("copy");
    assert_eq!(result.digest, amd64.digest);
    assert_eq!(result.manifests, vec![amd64.digest.clone()]);
    assert_eq!(skopeo_digest(&format!("docker://{to}")), amd64.digest);
    // Pulled back from the destination, it is the same image.
    let back = client(None).get_manifest(&to).await.expect("manifest");
    assert_eq!(back.descriptor.digest, amd64.digest);
}

#[tokio::test]
async fn a_copy_within_one_registry_mounts_every_blob() {
    let registry = TestRegistry::start(AuthMode::Basic).await;
    let proxy = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    let single = &registry.fixtures().many_layers;
    let admin = registry.admin_credentials();
    let from = reference(&proxy.host(), &format!("{}:v1", single.repository));
    let to = reference(&proxy.host(), "mounted/copy:v1");
    let image = client(admin.clone()).pull(&from).await.expect("resolve");
    let result = client(admin)
        .push(&image, &to, &CopyOptions::default())
        .await
        .expect("copy");
    assert!(
        result.blobs.iter().all(|b| b.how == BlobPush::Mounted),
        "{result:?}"
    );
    assert_eq!(result.uploaded_bytes, 0);
    let mounts = proxy.count(|r| is_mount(r) && r.status == Some(201));
    assert_eq!(mounts, single.layers.len() + 1, "every layer and the config");
    assert_eq!(
        proxy.count(is_blob_data),
        0,
        "nothing uploaded: {:#?}",
        proxy.requests()
    );
    assert_eq!(
        skopeo_digest_as(&format!("docker://{to}"), registry.admin_credentials()),
        single.digest
    );
}

/// Pushes an image of one layer of `size` bytes of noise as `repository:v1`.
async fn push_big_image(pusher: &Pusher, repository: &str, size: usize) -> (String, String, Vec<u8>) {
    let layer = noise(7, size);
    let layer_digest = pusher.blob(repository, &layer).await;
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    })
    .to_string()
    .into_bytes();
    let config_digest = pusher.blob(repository, &config).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": size}],
    })
    .to_string()
    .into_bytes();
    let digest = pusher.manifest(repository, "v1", OCI_MANIFEST, &manifest).await;
    (digest, layer_digest, layer)
}

/// How the image reaches the destination in [`copy_with_a_failing_patch`].
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// Registry to registry: each layer piped into one streamed `PATCH`.
    Registry,
    /// From an OCI layout on disk: `PATCH` chunks of 8 MiB, read again from the file.
    Layout,
}

/// Copies `big/image:v1` (one 20 MiB layer) to `big/copy:v1` with `fault` on the
/// destination's first upload `PATCH`; checks the stored layer byte for byte. Returns the
/// destination's log.
async fn copy_with_a_failing_patch(via: Via, fault: Fault) -> Vec<RecordedRequest> {
    let source = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&source.url());
    let (digest, layer_digest, layer) = push_big_image(&pusher, "big/image", 20 * 1024 * 1024).await;
    let (registry, dest) = destination(AuthMode::None).await;
    let kind = fault.kind();
    dest.inject_when(
        Matcher::path_contains("/blobs/uploads/").method(Method::PATCH),
        fault,
    );
    let from = reference(&source.host(), "big/image:v1");
    let to = reference(&dest.host(), "big/copy:v1");
    let image = client(None).pull(&from).await.expect("resolve");
    let dir = tempfile::tempdir().expect("tempdir");
    let result = match via {
        Via::Registry => client(None).push(&image, &to, &CopyOptions::default()).await,
        Via::Layout => {
            let layout = dir.path().join("layout");
            image
                .write_oci_layout(&layout, &PullOptions::default())
                .await
                .expect("the layout");
            let local = LocalImage::open_oci_layout(&layout, Some("v1")).expect("open the layout");
            client(None).push(&local, &to, &CopyOptions::default()).await
        }
    }
    .expect("the copy gets past the failed PATCH");
    assert_eq!(result.digest, digest);
    assert_eq!(dest.fired(kind), 1);
    let stored = reqwest::get(format!("{}/v2/big/copy/blobs/{layer_digest}", registry.url()))
        .await
        .expect("GET the blob")
        .bytes()
        .await
        .expect("body");
    assert!(stored.as_ref() == layer.as_slice(), "the stored layer differs");
    dest.requests()
}

fn is_upload_status(r: &RecordedRequest) -> bool {
    r.method == Method::GET && r.path.contains("/blobs/uploads/")
}

#[tokio::test]
async fn a_failed_chunk_is_sent_again_from_the_offset_the_registry_reports() {
    // A chunk from a file, refused before it reached the registry: the session is intact,
    // and the registry's Range says where to go on.
    let log = copy_with_a_failing_patch(Via::Layout, Fault::status(503, 1)).await;
    assert_eq!(log.iter().filter(|r| is_upload_status(r)).count(), 1, "{log:#?}");
    let sessions = log.iter().filter(|r| is_upload_start(r)).count();
    assert_eq!(sessions, 2, "the layer's session and the config's: {log:#?}");
}

#[tokio::test]
async fn a_failed_streamed_upload_starts_the_blob_again_in_a_new_session() {
    // A piped layer cannot be sent again from an offset: it is fetched again.
    let log = copy_with_a_failing_patch(Via::Registry, Fault::status(503, 1)).await;
    assert_eq!(log.iter().filter(|r| is_upload_start(r)).count(), 3, "{log:#?}");
}

#[tokio::test]
async fn an_upload_cut_mid_way_starts_the_blob_again_when_the_registry_drops_it() {
    // Cut after 1 MiB reached the registry (Distribution then cancels the session: its
    // state's offset no longer matches what it holds): the blob goes up again, in a new
    // session, from its first byte; from a file as from a registry.
    for via in [Via::Registry, Via::Layout] {
        let log = copy_with_a_failing_patch(
            via,
            Fault::CutRequestBody {
                bytes: 1024 * 1024,
                times: 1,
            },
        )
        .await;
        assert_eq!(log.iter().filter(|r| is_upload_start(r)).count(), 3, "{log:#?}");
    }
}

#[tokio::test]
async fn a_blob_stream_longer_than_its_size_is_a_size_mismatch_and_commits_nothing() {
    let (registry, proxy) = destination(AuthMode::None).await;
    let data = noise(7, 9 * 1024 * 1024);
    // Said to be 1 MiB shorter than what the stream brings: caught once the
    // stream passes the size, before its last chunk goes up.
    let size = (data.len() - 1024 * 1024) as u64;
    let digest = sha256(&data[..size as usize]);
    let pieces: Vec<registry_client::Result<bytes::Bytes>> = data
        .chunks(1024 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let to = reference(&proxy.host(), "long/blob");
    let error = client(None)
        .upload_blob(&to, &digest, size, futures::stream::iter(pieces))
        .await
        .expect_err("a stream longer than its size");
    assert!(
        matches!(&error, registry_client::Error::SizeMismatch { expected, actual, .. }
            if *expected == size && *actual > size),
        "{error:?}"
    );
    assert!(error.is_integrity(), "{error}");
    let log = proxy.requests();
    assert!(
        !log.iter()
            .any(|r| r.query.as_deref().is_some_and(|q| q.contains("digest="))),
        "a commit was sent: {log:#?}"
    );
    // The session was cancelled, and the registry has no such blob.
    assert!(log.iter().any(|r| r.method == Method::DELETE), "{log:#?}");
    let head = reqwest::Client::new()
        .head(format!("{}/v2/long/blob/blobs/{digest}", registry.url()))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 404);
}

#[tokio::test]
async fn a_corrupted_download_commits_nothing_at_the_destination() {
    // The piped bytes are hashed once, by the download: the upload must still never
    // commit a blob whose download failed its check, however far it got.
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let (_, layer_digest, _) = push_big_image(&pusher, "big/image", 4 * 1024 * 1024).await;
    let source = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    source.inject_when(
        Matcher::path_contains(format!("/blobs/{layer_digest}")),
        Fault::CorruptByte {
            offset: 3 * 1024 * 1024,
            times: 100,
        },
    );
    let (dest_registry, dest) = destination(AuthMode::None).await;
    let from = reference(&source.host(), "big/image:v1");
    let to = reference(&dest.host(), "big/copy:v1");
    let err = copy(&from, &to)
        .await
        .expect_err("a corrupted layer cannot be copied");
    assert!(err.is_integrity(), "{err}");
    let commits = dest.count(|r| {
        r.method == Method::PUT
            && r.path.contains("/blobs/uploads/")
            && r.query.as_deref().is_some_and(|q| q.contains(&layer_digest))
    });
    assert_eq!(commits, 0, "{:#?}", dest.requests());
    let blob = reqwest::get(format!(
        "{}/v2/big/copy/blobs/{layer_digest}",
        dest_registry.url()
    ))
    .await
    .expect("GET the blob");
    assert_eq!(blob.status(), 404, "the corrupted layer was stored");
    assert_no_tag(&dest_registry, "big/copy", "v1").await;
}

#[tokio::test]
async fn an_upload_location_on_another_origin_is_refused_and_gets_nothing() {
    // The destination wants a password; its upload answer sends the blob elsewhere.
    // Neither the blob nor the credentials may go there.
    let source = TestRegistry::start(AuthMode::None).await;
    let (registry, dest) = destination(AuthMode::Basic).await;
    let elsewhere = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    let foreign = format!(
        "http://{}/v2/stolen/blobs/uploads/1234?_state=x",
        elsewhere.host()
    );
    dest.inject_when(
        Matcher::path_contains("/blobs/uploads/").method(Method::POST),
        Fault::Status {
            status: 202,
            times: 100,
            retry_after: None,
            headers: vec![("Location".into(), foreign.clone())],
            body: Some(String::new()),
        },
    );
    let single = &source.fixtures().single_oci;
    let from = reference(&source.host(), &format!("{}:v1", single.repository));
    let to = reference(&dest.host(), "elsewhere/copy:v1");
    let image = client(None).pull(&from).await.expect("resolve");
    let err = client(registry.admin_credentials())
        .push(&image, &to, &CopyOptions::default())
        .await
        .expect_err("an upload that leaves the registry is refused");
    assert!(err.to_string().contains("leaves the registry"), "{err}");
    assert_eq!(elsewhere.requests().len(), 0, "{:#?}", elsewhere.requests());
    assert!(
        dest.count(|r| r.had_authorization) > 0,
        "the destination itself was asked with credentials"
    );
    assert_no_tag(&registry, "elsewhere/copy", "v1").await;
}

#[tokio::test]
async fn a_manifest_the_registry_refuses_leaves_no_tag() {
    let source = TestRegistry::start(AuthMode::None).await;
    let (registry, dest) = destination(AuthMode::None).await;
    dest.inject_when(Matcher::manifests().method(Method::PUT), Fault::status(400, 100));
    let single = &source.fixtures().single_oci;
    let from = reference(&source.host(), &format!("{}:v1", single.repository));
    let to = reference(&dest.host(), "refused/copy:v1");
    let err = copy(&from, &to).await.expect_err("the manifest is refused");
    assert!(err.to_string().contains("400"), "{err}");
    assert_no_tag(&registry, "refused/copy", "v1").await;
}

#[tokio::test]
async fn a_token_registry_grants_push_to_who_may_push() {
    let source = TestRegistry::start(AuthMode::None).await;
    let (registry, dest) = destination(AuthMode::Token).await;
    let single = &source.fixtures().single_docker;
    let from = reference(&source.host(), &format!("{}:v1", single.repository));
    // Outside the user's namespace: only the admin may push there.
    let to = reference(&dest.host(), "team/copy:v1");
    let image = client(None).pull(&from).await.expect("resolve");

    // A user with pull rights only: the registry refuses the upload.
    let err = client(registry.credentials())
        .push(&image, &to, &CopyOptions::default())
        .await
        .expect_err("a pull-only user cannot push");
    assert!(err.is_auth(), "{err}");

    let result = client(registry.admin_credentials())
        .push(&image, &to, &CopyOptions::default())
        .await
        .expect("the admin pushes");
    assert_eq!(result.digest, single.digest);
    let scopes: Vec<String> = registry
        .token_server()
        .expect("token mode")
        .requests()
        .iter()
        .flat_map(|r| r.scopes.clone())
        .collect();
    assert!(
        scopes.iter().any(|s| s == "repository:team/copy:pull,push"),
        "{scopes:?}"
    );
    assert_eq!(
        skopeo_digest_as(&format!("docker://{to}"), registry.admin_credentials()),
        single.digest
    );
}
