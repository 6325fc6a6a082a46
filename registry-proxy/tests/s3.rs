//! The cache in an S3 bucket (moto's S3 server), shared by replicas: what
//! one replica fetched is a hit on another, tag records included, and two
//! replicas filling the same blob at once leave it whole and right.

mod common;

use std::time::Duration;

use common::{RunningProxy, config};
use conformance::harness::fault_proxy::{Fault, FaultProxy, Matcher};
use conformance::harness::{AuthMode, Pusher, TestRegistry, moto_url};
use registry_client::oci::DOCKER_CONFIG_OPTION;
use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient};
use registry_proxy::{Config, S3Config};
use url::Url;

/// A new, empty bucket on moto's S3.
async fn bucket() -> S3Config {
    let name = format!("mcreg-cache-{}", rand_suffix());
    let created = reqwest::Client::new()
        .put(format!("{}/{name}", moto_url()))
        .send()
        .await
        .expect("create the bucket");
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
    S3Config {
        bucket: name,
        prefix: Some("cache".into()),
        endpoint: Some(moto_url().to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some("AKIDMCREGMOTO".into()),
        secret_access_key: Some("mcreg-moto-secret".into()),
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A replica: its own local spool, the shared bucket.
fn replica(upstream: &str, s3: &S3Config, dir: &std::path::Path) -> Config {
    let mut config = config(dir, &[upstream.to_owned()]);
    config.s3 = Some(s3.clone());
    config
}

async fn pull(proxy: &RunningProxy, image: &str) -> String {
    let reference: ImageReference = format!("{}/{image}", proxy.host()).parse().expect("reference");
    let dir = tempfile::tempdir().expect("tempdir");
    RepositoryClient::builder("oci")
        .option(DOCKER_CONFIG_OPTION, "/nonexistent/config.json")
        .platform("linux/amd64")
        .build()
        .expect("client")
        .pull(&reference)
        .await
        .expect("resolve")
        .write_oci_layout(&dir.path().join("layout"), &PullOptions::default())
        .await
        .expect("pull")
        .digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_bucket_share_the_cache() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let upstream = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    let s3 = bucket().await;
    let (dir_a, dir_b) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    let a = RunningProxy::start(&replica(&upstream.host(), &s3, dir_a.path()));
    let b = RunningProxy::start(&replica(&upstream.host(), &s3, dir_b.path()));
    let image = &registry.fixtures().many_layers;
    let name = format!("{}:v1", image.repository);

    assert_eq!(pull(&a, &name).await, image.digest);
    let fetched = upstream.requests().len();
    assert!(upstream.requests().iter().any(|r| r.is_blob_get()));

    // Replica B finds everything in the bucket: the tag record (still
    // fresh), the manifest, every blob. The upstream is not asked.
    assert_eq!(pull(&b, &name).await, image.digest);
    assert_eq!(
        upstream.requests().len(),
        fetched,
        "{:?}",
        &upstream.requests()[fetched..]
    );
    let blob = format!(
        "{}/v2/{}/blobs/{}",
        b.url(),
        image.repository,
        image.layers[0].digest
    );
    let answer = reqwest::get(&blob).await.expect("GET");
    assert_eq!(answer.headers()["x-cache"], "HIT");
    assert_eq!(answer.bytes().await.expect("body"), image.layers[0].data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_filling_one_blob_at_once_leave_it_whole() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let data: Vec<u8> = (0..12 * 1024 * 1024_u32).map(|i| (i % 253) as u8).collect();
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    let upstream = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    // Both replicas are filling when the first answer starts.
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Delay {
            duration: Duration::from_millis(300),
            times: 2,
        },
    );
    let s3 = bucket().await;
    let (dir_a, dir_b, dir_c) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
        tempfile::tempdir().expect("c"),
    );
    let a = RunningProxy::start(&replica(&upstream.host(), &s3, dir_a.path()));
    let b = RunningProxy::start(&replica(&upstream.host(), &s3, dir_b.path()));
    let get = |proxy: &RunningProxy| reqwest::get(format!("{}/v2/big/blob/blobs/{digest}", proxy.url()));
    let (from_a, from_b) = tokio::join!(get(&a), get(&b));
    let (from_a, from_b) = (from_a.expect("a"), from_b.expect("b"));
    assert_eq!(from_a.headers()["x-cache"], "MISS");
    assert_eq!(from_b.headers()["x-cache"], "MISS");
    assert_eq!(from_a.bytes().await.expect("a body").as_ref(), data.as_slice());
    assert_eq!(from_b.bytes().await.expect("b body").as_ref(), data.as_slice());
    assert_eq!(upstream.requests().iter().filter(|r| r.is_blob_get()).count(), 2);

    // A third replica reads the bucket's one object: whole, right.
    let c = RunningProxy::start(&replica(&upstream.host(), &s3, dir_c.path()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&c).await.expect("c");
        if answer.headers()["x-cache"] == "HIT" {
            assert_eq!(answer.bytes().await.expect("c body").as_ref(), data.as_slice());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never committed to the bucket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
