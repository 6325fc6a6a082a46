//! A size limit: above `max_size` the least recently used blobs go, but
//! never one being served; what is evicted is fetched again on demand.
//! Images pulled in turn keep the cache under its limit, the latest whole.
//! A disk that fills up before the limit is reached is made room on by
//! evicting, when a limit is set.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    Image, RunningProxy, Tmpfs, config, metrics, pull_through, push_noise_image, wait_for_hit,
};
use conformance::harness::{AuthMode, Pusher, TestRegistry};
use registry_client::model::digest::sha256;

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
    assert_eq!(registry_client::model::digest::sha256(&body), digest);
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

/// Layers in each image, and their size. Five: half of three images is
/// seven and a half layers, so the cache's size after a pull is never within
/// a few bytes of the limit (the use records on disk fit beside it).
const LAYERS: usize = 5;
const LAYER: usize = 1024 * 1024;

/// An image whose layers no other image shares (`seed` makes them).
async fn push_image(pusher: &Pusher, repository: &str, seed: u64) -> Image {
    push_noise_image(pusher, repository, seed, &[LAYER; LAYERS]).await
}

/// Pulls `image:v1` through the cache; its manifest digest.
async fn pull(proxy: &RunningProxy, image: &Image) -> String {
    pull_through(proxy, &format!("{}:v1", image.repository)).await
}

/// A series of the cache's metrics, e.g. `mcreg_cache_bytes`.
async fn metric(proxy: &RunningProxy, series: &str) -> u64 {
    common::metric(&metrics(proxy).await, &format!("{series} ")) as u64
}

/// Bytes in the files under `dir`, however deep.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => bytes_under(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0, // removed while we looked
        })
        .sum()
}

/// Waits for the housekeeping (eviction runs on a task of its own) to have
/// brought the cache within `max`: what it counts (`mcreg_cache_bytes`)
/// is what its objects take on disk, and the whole directory (spool and
/// use records included) is within the limit. Returns the size.
async fn settled(proxy: &RunningProxy, dir: &Path, max: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let counted = metric(proxy, "mcreg_cache_bytes").await;
        let stored = bytes_under(&dir.join("store/routes"));
        let whole = bytes_under(dir);
        if counted == stored && whole <= max {
            return stored;
        }
        assert!(
            Instant::now() < deadline,
            "over {max} bytes: counted {counted}, objects on disk {stored}, the directory {whole}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `X-Cache` of a `HEAD` (of a manifest or a blob) in `repository`.
async fn head(proxy: &RunningProxy, repository: &str, kind: &str, reference: &str) -> String {
    let url = format!("{}/v2/{repository}/{kind}/{reference}", proxy.url());
    let answer = reqwest::Client::new().head(&url).send().await.expect("HEAD");
    assert_eq!(answer.status(), 200, "{url}");
    answer.headers()["x-cache"].to_str().expect("text").to_owned()
}

/// A pull by hand that stays open: the manifest and every blob but the
/// last are read whole; of the last only a first chunk, the rest when
/// [`finish`](Self::finish) is called.
struct OpenPull {
    expected: Vec<u8>,
    received: Vec<u8>,
    open: reqwest::Response,
}

impl OpenPull {
    async fn start(proxy: &RunningProxy, image: &Image) -> OpenPull {
        let base = format!("{}/v2/{}", proxy.url(), image.repository);
        let manifest = reqwest::get(format!("{base}/manifests/v1")).await.expect("GET");
        let manifest = manifest.bytes().await.expect("manifest");
        assert_eq!(sha256(&manifest), image.digest);
        let (last, whole) = image.blobs.split_last().expect("blobs");
        for (digest, data) in whole {
            let body = reqwest::get(format!("{base}/blobs/{digest}")).await.expect("GET");
            assert_eq!(body.bytes().await.expect("blob").as_ref(), data.as_slice());
        }
        let mut open = reqwest::get(format!("{base}/blobs/{}", last.0))
            .await
            .expect("GET");
        assert_eq!(open.status(), 200);
        let received = open
            .chunk()
            .await
            .expect("chunk")
            .expect("a first chunk")
            .to_vec();
        OpenPull {
            expected: last.1.clone(),
            received,
            open,
        }
    }

    /// Reads the rest: the pull succeeded if the last blob came whole.
    async fn finish(mut self) {
        while let Some(chunk) = self.open.chunk().await.expect("the rest of the blob") {
            self.received.extend_from_slice(&chunk);
        }
        assert!(
            self.received == self.expected,
            "the open pull's last blob came damaged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_images_pulled_in_turn_stay_within_half_their_size() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let mut images = Vec::new();
    for (seed, repository) in [(1, "turn/first"), (2, "turn/second"), (3, "turn/third")] {
        images.push(push_image(&pusher, repository, seed).await);
    }
    let max = images.iter().map(Image::size).sum::<u64>() / 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[registry.host()]);
    config.max_size = Some(max);
    let proxy = RunningProxy::start(&config);
    let [first, second, third] = &images[..] else {
        unreachable!()
    };

    assert_eq!(pull(&proxy, first).await, first.digest);
    settled(&proxy, dir.path(), max).await;
    // The second does not fit beside the first: some of the first goes.
    assert_eq!(pull(&proxy, second).await, second.digest);
    settled(&proxy, dir.path(), max).await;
    assert!(metric(&proxy, "mcreg_evictions_total").await > 0);

    // A pull of the second, the least recently used, is still open while
    // the third's fills evict what the second has not got open.
    let open = OpenPull::start(&proxy, second).await;
    let evictions = metric(&proxy, "mcreg_evictions_total").await;
    assert_eq!(pull(&proxy, third).await, third.digest);
    assert!(metric(&proxy, "mcreg_evictions_total").await > evictions);
    open.finish().await;
    settled(&proxy, dir.path(), max).await;

    // The latest image is whole in the cache: nothing of it was evicted.
    let repository = &third.repository;
    assert_eq!(head(&proxy, repository, "manifests", "v1").await, "HIT");
    assert_eq!(head(&proxy, repository, "manifests", &third.digest).await, "HIT");
    for (digest, _) in &third.blobs {
        assert_eq!(head(&proxy, repository, "blobs", digest).await, "HIT", "{digest}");
    }
}

/// A disk smaller than `max_size` (a limit set too high, or other files on
/// the disk) fills up before the limit is reached: the fill that finds no
/// room evicts the least recently used blobs to make some, and is cached.
/// No client notices, and the storage never counts as failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_made_room_on_by_evicting_when_a_size_limit_is_set() {
    const MIB: usize = 1024 * 1024;
    let Some(disk) = Tmpfs::mount("40m") else { return };
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let blobs = blobs(&registry, 15 * MIB).await;
    let mut config = config(disk.path(), &[registry.host()]);
    config.max_size = Some(100 * MIB as u64);
    let proxy = RunningProxy::start(&config);

    for (digest, data) in &blobs {
        let got = reqwest::get(url(&proxy, digest)).await.expect("GET");
        assert_eq!(got.bytes().await.expect("body").as_ref(), data.as_slice());
        wait_for_hit(&url(&proxy, digest)).await;
    }
    // The third did not fit beside the first two on 40 MiB: the first went.
    assert_eq!(x_cache(&proxy, &blobs[0].0).await, "MISS");
    assert_eq!(x_cache(&proxy, &blobs[1].0).await, "HIT");
    assert!(metric(&proxy, "mcreg_evictions_total").await >= 1);
    let text = metrics(&proxy).await;
    assert!(!text.contains("mcreg_storage_errors_total{"), "{text}");
    assert!(!text.contains("mcreg_fills_stopped_total{"), "{text}");
}
