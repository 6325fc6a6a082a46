//! A size limit: above `max_size` the least recently used blobs go, but
//! never one being served; what is evicted is fetched again on demand.

mod common;

use std::time::{Duration, Instant};

use common::{RunningProxy, config};
use conformance::harness::{AuthMode, Pusher, TestRegistry};

/// Three distinct blobs of `size` bytes in one repository.
async fn blobs(registry: &TestRegistry, size: usize) -> Vec<(String, Vec<u8>)> {
    let pusher = Pusher::new(&registry.url());
    let mut blobs = Vec::new();
    for seed in 1..=3_u8 {
        let data: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
            .collect();
        let digest = pusher.blob("big/blobs", &data).await;
        blobs.push((digest, data));
    }
    blobs
}

fn url(proxy: &RunningProxy, digest: &str) -> String {
    format!("{}/v2/big/blobs/blobs/{digest}", proxy.url())
}

async fn x_cache(proxy: &RunningProxy, digest: &str) -> String {
    let head = reqwest::Client::new()
        .head(url(proxy, digest))
        .send()
        .await
        .expect("HEAD");
    head.headers()["x-cache"].to_str().expect("text").to_owned()
}

async fn get(proxy: &RunningProxy, digest: &str) {
    let body = reqwest::get(url(proxy, digest))
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    assert_eq!(registry_client::digest::sha256(&body), digest);
}

/// Waits until `digest` is no longer cached (eviction runs on its own task).
async fn wait_evicted(proxy: &RunningProxy, digest: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while x_cache(proxy, digest).await == "HIT" {
        assert!(Instant::now() < deadline, "{digest} was never evicted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Room for two blobs of `size` (and the odd small object), not three.
fn limited(registry: &TestRegistry, dir: &std::path::Path, size: usize) -> registry_proxy::Config {
    let mut config = config(dir, &[registry.host()]);
    config.max_size = Some((size * 5 / 2) as u64);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_blob_goes_first() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let size = 100 * 1024;
    let blobs = blobs(&registry, size).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&limited(&registry, dir.path(), size));
    let [(first, _), (second, _), (third, _)] = &blobs[..] else {
        unreachable!()
    };

    get(&proxy, first).await;
    get(&proxy, second).await;
    // The first is used again: the second is now the least recently used.
    tokio::time::sleep(Duration::from_millis(20)).await;
    get(&proxy, first).await;
    get(&proxy, third).await;
    wait_evicted(&proxy, second).await;
    assert_eq!(x_cache(&proxy, first).await, "HIT");
    assert_eq!(x_cache(&proxy, third).await, "HIT");

    // Evicted is only not cached: asked again, it is fetched again.
    get(&proxy, second).await;
    let metrics = reqwest::get(format!("{}/metrics", proxy.url()))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let evictions = metrics
        .lines()
        .find(|l| l.starts_with("mcreg_evictions_total"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .expect("evictions");
    assert!(evictions >= 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_being_served_is_not_evicted() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    // Larger than what the sockets between us can hold: the server is
    // still sending while the client waits.
    let size = 24 * 1024 * 1024;
    let blobs = blobs(&registry, size).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&limited(&registry, dir.path(), size));
    let [(first, first_data), (second, _), (third, _)] = &blobs[..] else {
        unreachable!()
    };

    get(&proxy, first).await;
    // A slow client holds the first blob open; it is the least recently used.
    let mut slow = reqwest::get(url(&proxy, first)).await.expect("GET");
    let mut received = slow
        .chunk()
        .await
        .expect("chunk")
        .expect("a first chunk")
        .to_vec();
    tokio::time::sleep(Duration::from_millis(20)).await;
    get(&proxy, second).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    get(&proxy, third).await;
    // The second goes instead, though it was used later.
    wait_evicted(&proxy, second).await;
    assert_eq!(x_cache(&proxy, first).await, "HIT");
    while let Some(chunk) = slow.chunk().await.expect("chunk") {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(&received, first_data, "the slow client got the whole blob");
}
