//! How fresh the cache's answers are, and what it does when the upstream
//! misbehaves, against real Distribution registries behind recording fault
//! proxies: a tag is trusted for its TTL, then checked with an upstream
//! `HEAD`; a tag is served `STALE` (with its blobs) when the upstream answers
//! 503, rate-limits with 429 or hangs past the timeout, but a 404 forgets it;
//! a broken blob body is resumed with `Range`; a `Range` request joins a fill
//! under way; a corrupted blob cuts every client and caches nothing; a cold
//! tag is fetched once for twenty clients; a route whose first upstream is
//! down pulls from the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

use crate::common;
use crate::common::{
    RunningProxy, config, config_with_routes, header, http, pull_through, recorded, wait_for_hit,
};
use conformance::harness::fault_proxy::{Fault, FaultKind, FaultProxy, Matcher, RecordedRequest};
use conformance::harness::{
    AuthMode, HungServer, ImageFixture, Pusher, TestRegistry, fixtures, noise, sha256_digest,
};
use registry_client::driver::oci::OciOption;
use registry_client::{CircuitBreakerConfig, RetryConfig};
use registry_proxy::storage::Storage;
use registry_proxy::{Config, Proxy, UpstreamConfig};
use reqwest::{Method, StatusCode};

const MIB: usize = 1024 * 1024;

/// A cache for `config` with fast retries that never wait long for a
/// `Retry-After`, and, if given, a short upstream read timeout.
fn start(config: &Config, read_timeout: Option<Duration>) -> RunningProxy {
    let proxy = Proxy::new(config, |builder| {
        let builder = builder
            .option(OciOption::DockerConfig, "/nonexistent/config.json")
            .retry(
                RetryConfig::default()
                    .with_max_retries(2)
                    .with_initial_backoff(Duration::from_millis(10))
                    .with_max_backoff(Duration::from_millis(50))
                    .with_max_retry_after(Duration::from_millis(50)),
            );
        match read_timeout {
            Some(timeout) => builder.read_timeout(timeout),
            None => builder,
        }
    })
    .expect("build the proxy");
    RunningProxy::serve(proxy)
}

/// `image` as `team/app:v1`.
fn app(image: &ImageFixture) -> ImageFixture {
    let mut image = image.clone();
    image.repository = "team/app".into();
    image.tag = Some("v1".into());
    image
}

/// The requests the upstream received for `/manifests/<reference>` with `method`.
fn manifest_requests(upstream: &FaultProxy, method: Method, reference: &str) -> Vec<RecordedRequest> {
    let suffix = format!("/manifests/{reference}");
    upstream
        .requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.ends_with(&suffix))
        .collect()
}

/// The blob GETs the upstream received for `digest`.
fn blob_gets(upstream: &FaultProxy, digest: &str) -> Vec<RecordedRequest> {
    upstream
        .requests()
        .into_iter()
        .filter(|r| r.is_blob_get() && r.path.ends_with(digest))
        .collect()
}

/// The spec error code of a JSON error body.
fn error_code(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_tag_is_trusted_for_its_ttl_then_checked_with_a_head_and_follows_the_move() {
    // Tag records keep whole seconds; 5 s leaves a loaded CI machine time
    // for the push between the two GETs.
    const TTL: Duration = Duration::from_secs(5);
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let (old, new) = (app(&fixtures().single_oci), app(&fixtures().single_docker));
    let pusher = Pusher::new(&registry.url());
    pusher.image(&old).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[upstream.host()]);
    config.routes[0].tag_ttl = TTL;
    let proxy = start(&config, None);
    let manifest = format!("{}/v2/team/app/manifests/v1", proxy.url());

    let before = Instant::now();
    let first = http().get(&manifest).send().await.expect("GET");
    let checked = Instant::now();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-cache"), "MISS");
    assert_eq!(header(&first, "docker-content-digest"), old.digest);

    // The tag moves upstream (pushed around the fault proxy: not recorded).
    pusher.image(&new).await;
    upstream.clear_log();
    let within = http().get(&manifest).send().await.expect("GET");
    assert!(
        before.elapsed() < TTL - Duration::from_secs(1),
        "too slow to test the TTL: {:?}",
        before.elapsed()
    );
    assert_eq!(header(&within, "x-cache"), "HIT");
    assert_eq!(header(&within, "docker-content-digest"), old.digest);
    assert_eq!(within.bytes().await.expect("body"), old.manifest);
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());

    tokio::time::sleep_until((checked + TTL + Duration::from_millis(100)).into()).await;
    let after = http().get(&manifest).send().await.expect("GET");
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(header(&after, "x-cache"), "MISS");
    assert_eq!(header(&after, "docker-content-digest"), new.digest);
    assert_eq!(after.bytes().await.expect("body"), new.manifest);
    // Checked with a HEAD of the tag; the new manifest fetched by digest.
    assert_eq!(manifest_requests(&upstream, Method::HEAD, "v1").len(), 1);
    assert_eq!(manifest_requests(&upstream, Method::GET, "v1").len(), 0);
    assert_eq!(manifest_requests(&upstream, Method::GET, &new.digest).len(), 1);

    // The check starts a new TTL: the next GET asks nothing.
    upstream.clear_log();
    let again = http().get(&manifest).send().await.expect("GET");
    assert_eq!(header(&again, "x-cache"), "HIT");
    assert_eq!(header(&again, "docker-content-digest"), new.digest);
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

/// Pulls `single/oci:v1` through a cache with `tag_ttl = 0`, then makes
/// every upstream request meet `fault`: the tag must be answered `STALE`
/// with the old digest, and its blobs still served.
async fn served_stale_when(fault: Fault, read_timeout: Option<Duration>) {
    let registry = TestRegistry::start(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[upstream.host()]);
    config.routes[0].tag_ttl = Duration::ZERO;
    let proxy = start(&config, read_timeout);
    let image = &registry.fixtures().single_oci;
    assert_eq!(pull_through(&proxy, "single/oci:v1").await, image.digest);

    let kind = fault.kind();
    upstream.inject_when(Matcher::any(), fault);
    upstream.clear_log();
    let started = Instant::now();
    let manifest = http()
        .get(format!("{}/v2/single/oci/manifests/v1", proxy.url()))
        .send()
        .await
        .expect("GET");
    let waited = started.elapsed();
    assert_eq!(manifest.status(), StatusCode::OK, "{kind:?}");
    assert_eq!(header(&manifest, "x-cache"), "STALE", "{kind:?}");
    assert_eq!(header(&manifest, "docker-content-digest"), image.digest);
    let bytes = manifest.bytes().await.expect("body");
    assert_eq!(sha256_digest(&bytes), image.digest);
    // It did ask: the tag's HEAD met the fault.
    let heads = manifest_requests(&upstream, Method::HEAD, "v1");
    assert!(
        !heads.is_empty() && heads.iter().all(|r| r.fault == Some(kind)),
        "{heads:?}"
    );
    if let Some(timeout) = read_timeout {
        // Given up after the timeouts (3 attempts), not after the hang.
        assert!(waited < timeout * 3 + Duration::from_secs(2), "{waited:?}");
    }

    for (digest, data) in image
        .layers
        .iter()
        .map(|l| (&l.digest, &l.data))
        .chain([(&image.config_digest, &image.config)])
    {
        let blob = http()
            .get(format!("{}/v2/single/oci/blobs/{digest}", proxy.url()))
            .send()
            .await
            .expect("GET");
        assert_eq!(blob.status(), StatusCode::OK, "{digest}");
        assert_eq!(header(&blob, "x-cache"), "HIT");
        assert_eq!(&blob.bytes().await.expect("body"), data);
    }
}

#[tokio::test]
async fn a_pulled_tag_is_served_stale_with_its_blobs_when_the_upstream_answers_503() {
    served_stale_when(Fault::status(503, usize::MAX), None).await;
}

#[tokio::test]
async fn a_pulled_tag_is_served_stale_with_its_blobs_when_the_upstream_rate_limits_with_429() {
    served_stale_when(Fault::rate_limited(usize::MAX, "1"), None).await;
}

#[tokio::test]
async fn a_pulled_tag_is_served_stale_with_its_blobs_when_the_upstream_hangs_past_the_timeout() {
    let hang = Fault::Delay {
        duration: Duration::from_secs(10),
        times: usize::MAX,
    };
    served_stale_when(hang, Some(Duration::from_secs(1))).await;
}

/// The route's `upstream_timeout` in the tests of hung upstreams.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether an answer came when the upstream timeout ran out (not before,
/// not long after).
fn at_the_timeout(took: Duration) -> bool {
    took >= UPSTREAM_TIMEOUT - Duration::from_millis(100) && took < UPSTREAM_TIMEOUT * 2
}

/// A cache in front of a recorded registry, `single/oci:v1` pulled through
/// it, its tags checked every time, its upstream held to `UPSTREAM_TIMEOUT`;
/// the upstream client has the SDK's own timeouts (30 s to read, 4 retries)
/// and a breaker that opens after 3 failures.
struct Pulled {
    registry: TestRegistry,
    upstream: FaultProxy,
    proxy: RunningProxy,
    _dir: tempfile::TempDir,
}

impl Pulled {
    async fn start() -> Pulled {
        let registry = TestRegistry::start(AuthMode::None).await;
        let upstream = recorded(&registry.url()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(dir.path(), &[upstream.host()]);
        config.routes[0].tag_ttl = Duration::ZERO;
        config.routes[0].upstream_timeout = UPSTREAM_TIMEOUT;
        let proxy = Proxy::new(&config, |builder| {
            builder
                .option(OciOption::DockerConfig, "/nonexistent/config.json")
                .circuit_breaker(CircuitBreakerConfig::new(3, Duration::from_secs(60)))
        })
        .expect("build the proxy");
        let proxy = RunningProxy::serve(proxy);
        let image = &registry.fixtures().single_oci;
        assert_eq!(pull_through(&proxy, "single/oci:v1").await, image.digest);
        Pulled {
            registry,
            upstream,
            proxy,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.proxy.url())
    }
}

/// Asks `url` with `method`: the status, `X-Cache` and how long it took.
async fn timed(method: Method, url: &str) -> (StatusCode, String, Duration) {
    let started = Instant::now();
    let response = http().request(method, url).send().await.expect("send");
    let (status, cache) = (response.status(), header(&response, "x-cache").to_owned());
    let _ = response.bytes().await;
    (status, cache, started.elapsed())
}

/// An upstream that takes requests and never answers: with the read
/// timeout (30 s) and retries (5 attempts) that used to make a stale answer
/// take 150 s, the route's `upstream_timeout` (2 s) bounds each request: a
/// pulled tag is `STALE` and a never-pulled one `503` right after it;
/// content by digest is served at once. Each request cut short counts
/// against the upstream's breaker; once it is open, stale answers are
/// immediate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upstream_is_answered_within_the_upstream_timeout_then_at_once_when_its_breaker_opens() {
    let pulled = Pulled::start().await;
    let (upstream, image) = (&pulled.upstream, &pulled.registry.fixtures().single_oci);
    let url = |path: &str| pulled.url(path);
    upstream.inject_when(
        Matcher::any(),
        Fault::Delay {
            duration: Duration::from_secs(60),
            times: usize::MAX,
        },
    );
    let (status, cache, took) = timed(Method::GET, &url("single/oci/manifests/v1")).await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, "STALE"));
    assert!(at_the_timeout(took), "stale after {took:?}");
    // By digest: from disk, no upstream needed.
    for path in [
        format!("single/oci/manifests/{}", image.digest),
        format!("single/oci/blobs/{}", image.layers[0].digest),
    ] {
        let (status, cache, took) = timed(Method::GET, &url(&path)).await;
        assert_eq!((status, cache.as_str()), (StatusCode::OK, "HIT"), "{path}");
        assert!(took < Duration::from_millis(500), "{path}: {took:?}");
    }
    // Never pulled: nothing stale to give.
    let (status, _, took) = timed(Method::GET, &url("single/docker/manifests/v1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(at_the_timeout(took), "503 after {took:?}");
    let (status, cache, took) = timed(Method::HEAD, &url("single/oci/manifests/v1")).await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, "STALE"));
    assert!(at_the_timeout(took), "stale HEAD after {took:?}");

    // Three requests cut short: the breaker is open, and nothing waits.
    let asked = upstream.requests().len();
    let (status, cache, took) = timed(Method::GET, &url("single/oci/manifests/v1")).await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, "STALE"));
    assert!(
        took < Duration::from_millis(300),
        "stale after {took:?} with the breaker open"
    );
    assert_eq!(upstream.requests().len(), asked, "nothing sent while open");
}

/// An upstream host that never completes a handshake (its packets dropped):
/// the connect timeout (10 s, 5 attempts) no longer decides; the route's
/// `upstream_timeout` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_the_handshake_is_answered_within_the_upstream_timeout() {
    let Pulled {
        registry: _registry,
        upstream,
        proxy,
        _dir,
    } = Pulled::start().await;
    let url = |path: &str| format!("{}/v2/{path}", proxy.url());
    // The upstream's address stops answering at all.
    let address = upstream.addr();
    drop(upstream);
    let _black_hole = HungServer::unreachable_at(address);
    let (status, cache, took) = timed(Method::GET, &url("single/oci/manifests/v1")).await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, "STALE"));
    // At the timeout, or sooner: a pooled connection to the old upstream
    // fails at once and counts too.
    assert!(took < UPSTREAM_TIMEOUT * 2, "stale after {took:?}");
    let (status, _, took) = timed(Method::GET, &url("single/docker/manifests/v1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(at_the_timeout(took), "503 after {took:?}");
}

#[tokio::test]
async fn a_tag_deleted_upstream_is_404_and_an_outage_does_not_bring_it_back_stale() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[upstream.host()]);
    config.routes[0].tag_ttl = Duration::ZERO;
    let record = dir.path().join(format!(
        "store/routes/{}/repositories/single/oci/_tags/v1",
        config.routes[0].name
    ));
    let proxy = start(&config, None);
    let image = &registry.fixtures().single_oci;
    assert_eq!(pull_through(&proxy, "single/oci:v1").await, image.digest);
    assert!(record.is_file(), "no tag record at {}", record.display());

    // The harness registry has delete enabled: Distribution untags too.
    let deleted = http()
        .delete(format!(
            "{}/v2/single/oci/manifests/{}",
            registry.url(),
            image.digest
        ))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);

    let tag = format!("{}/v2/single/oci/manifests/v1", proxy.url());
    let gone = http().get(&tag).send().await.expect("GET");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&gone.text().await.expect("body")), "MANIFEST_UNKNOWN");
    assert!(!record.exists(), "the tag record was kept");

    // Upstream down: the forgotten tag gets the upstream's error, not the old manifest.
    upstream.inject_when(Matcher::any(), Fault::status(503, usize::MAX));
    let down = http().get(&tag).send().await.expect("GET");
    assert_ne!(header(&down, "x-cache"), "STALE");
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&down.text().await.expect("body")), "UNAVAILABLE");
    // What the tag pointed at is still valid by digest.
    let by_digest = http()
        .get(format!(
            "{}/v2/single/oci/manifests/{}",
            proxy.url(),
            image.digest
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(by_digest.status(), StatusCode::OK);
    assert_eq!(header(&by_digest, "x-cache"), "HIT");
}

#[tokio::test]
async fn a_blob_body_broken_upstream_is_resumed_with_range_and_the_client_never_notices() {
    const CUT: u64 = 2 * MIB as u64;
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let data = noise(4, 6 * MIB);
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    upstream.inject_when(Matcher::blob_gets(), Fault::ResetAfter { bytes: CUT, times: 1 });
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = start(&config(dir.path(), &[upstream.host()]), None);
    let blob = format!("{}/v2/big/blob/blobs/{digest}", proxy.url());

    let response = http().get(&blob).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-cache"), "MISS");
    let body = response.bytes().await.expect("a whole body");
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256_digest(&body), digest);

    let gets = blob_gets(&upstream, &digest);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].fault, Some(FaultKind::ResetAfter));
    assert_eq!(gets[0].range, None);
    let from: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the second GET is not a resume: {:?}", gets[1]));
    assert!(from > 0 && from <= CUT, "resumed from {from}");

    wait_for_hit(&blob).await;
    let cached = http().get(&blob).send().await.expect("GET");
    assert_eq!(header(&cached, "x-cache"), "HIT");
    assert_eq!(cached.bytes().await.expect("body").as_ref(), data.as_slice());
    assert_eq!(blob_gets(&upstream, &digest).len(), 2);
}

#[tokio::test]
async fn a_range_request_joins_the_fill_another_client_started() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let data = noise(5, 4 * MIB);
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    // About two seconds of download.
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Throttle {
            bytes_per_second: 2 * MIB as u64,
            times: 1,
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = start(&config(dir.path(), &[upstream.host()]), None);
    let blob = format!("{}/v2/big/blob/blobs/{digest}", proxy.url());

    let whole = tokio::spawn({
        let blob = blob.clone();
        async move {
            let response = http().get(&blob).send().await.expect("GET");
            (response.status(), response.bytes().await.expect("body"))
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.count(RecordedRequest::is_blob_get) == 0 {
        assert!(Instant::now() < deadline, "the fill never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!whole.is_finished(), "the first client is done already");

    let (start, end) = (2 * MIB + 12_345, 2 * MIB + 12_345 + 65_535);
    let part = http()
        .get(&blob)
        .header("range", format!("bytes={start}-{end}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&part, "x-cache"), "MISS");
    assert_eq!(
        header(&part, "content-range"),
        format!("bytes {start}-{end}/{}", data.len())
    );
    assert_eq!(part.bytes().await.expect("body").as_ref(), &data[start..=end]);

    let (status, body) = whole.await.expect("the first client");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_ref(), data.as_slice());
    let gets = blob_gets(&upstream, &digest);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range, None, "a fill downloads from the first byte");
}

#[tokio::test]
async fn a_corrupted_blob_cuts_every_client_reading_it_and_nothing_is_cached() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let data = noise(6, 3 * MIB);
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    // One fault per request and proxy: corrupting behind, throttling in front.
    let corrupting = recorded(&registry.url()).await;
    corrupting.inject_when(
        Matcher::blob_gets(),
        Fault::CorruptByte {
            offset: (MIB + 7) as u64,
            times: 1,
        },
    );
    let upstream = recorded(corrupting.url().as_str()).await;
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Throttle {
            bytes_per_second: 2 * MIB as u64,
            times: 1,
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = start(&config(dir.path(), &[upstream.host()]), None);
    let blob = format!("{}/v2/big/blob/blobs/{digest}", proxy.url());

    let clients = (0..5).map(|_| async {
        let response = http().get(&blob).send().await.expect("GET");
        (response.status(), response.bytes().await)
    });
    for (status, body) in futures::future::join_all(clients).await {
        // The answer started (200, the full Content-Length), then was cut.
        assert_eq!(status, StatusCode::OK);
        match body {
            Err(_) => {}
            Ok(body) => panic!(
                "a body that ended cleanly: {} bytes, {} (expected {digest})",
                body.len(),
                sha256_digest(&body)
            ),
        }
    }
    assert_eq!(corrupting.fired(FaultKind::CorruptByte), 1);
    assert_eq!(blob_gets(&upstream, &digest).len(), 1);

    // Nothing stored: once the failed fill is gone, a HEAD is a miss.
    let deadline = Instant::now() + Duration::from_secs(10);
    let head = loop {
        let head = http().head(&blob).send().await.expect("HEAD");
        if head.status() == StatusCode::OK || Instant::now() > deadline {
            break head;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "x-cache"), "MISS");
    // And the next GET fetches it again, whole this time.
    let again = http().get(&blob).send().await.expect("GET");
    assert_eq!(header(&again, "x-cache"), "MISS");
    assert_eq!(again.bytes().await.expect("body").as_ref(), data.as_slice());
    assert_eq!(blob_gets(&upstream, &digest).len(), 2);
}

#[tokio::test]
async fn twenty_cold_gets_of_a_tag_make_one_upstream_head_and_one_manifest_get() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    // A slow tag check: every client arrives while it is under way.
    slow_tag_checks(&upstream, Duration::from_millis(500));
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = start(&config(dir.path(), &[upstream.host()]), None);
    let image = &registry.fixtures().single_oci;
    let manifest = format!("{}/v2/single/oci/manifests/v1", proxy.url());

    let clients = (0..20).map(|_| async {
        let response = http().get(&manifest).send().await.expect("GET");
        let digest = header(&response, "docker-content-digest").to_owned();
        (response.status(), digest, response.bytes().await.expect("body"))
    });
    for (status, digest, body) in futures::future::join_all(clients).await {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(digest, image.digest);
        assert_eq!(body, image.manifest);
    }
    // The tag checked once; the manifest fetched once, by digest.
    let manifests: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.is_manifest())
        .collect();
    assert_eq!(
        manifest_requests(&upstream, Method::HEAD, "v1").len(),
        1,
        "{manifests:?}"
    );
    let gets: Vec<_> = manifests.iter().filter(|r| r.method == Method::GET).collect();
    assert_eq!(gets.len(), 1, "{manifests:?}");
    assert!(gets[0].path.ends_with(&image.digest), "{gets:?}");
}

#[tokio::test]
async fn a_route_whose_first_upstream_is_down_pulls_from_the_next() {
    let (registry, empty) = tokio::join!(
        TestRegistry::start(AuthMode::None),
        TestRegistry::start_empty(AuthMode::None)
    );
    let down = recorded(&empty.url()).await;
    down.inject_when(Matcher::any(), Fault::status(503, usize::MAX));
    let second = recorded(&registry.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut route = common::route(&second.host());
    route.default = true;
    route.mirrors = vec![UpstreamConfig {
        url: format!("http://{}", down.host()),
        credentials: None,
        insecure: true,
    }];
    let config = config_with_routes(dir.path(), vec![route]);
    let proxy = start(&config, None);
    let image = &registry.fixtures().single_oci;

    assert_eq!(pull_through(&proxy, "single/oci:v1").await, image.digest);
    // The first upstream was asked, and answered nothing but 503.
    let asked = down.requests();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|r| r.status == Some(503) && !r.forwarded),
        "{asked:?}"
    );
    // Every blob came from the second.
    for digest in image
        .layers
        .iter()
        .map(|l| &l.digest)
        .chain([&image.config_digest])
    {
        let gets = blob_gets(&second, digest);
        assert_eq!(gets.len(), 1, "{digest}: {gets:?}");
        assert_eq!(gets[0].status, Some(200));
    }
}

/// The store under the cache, with one read made late: the second read of a
/// manifest (one client's look in storage after the shared tag check; the
/// other client's fetch reads the link, not the manifest) waits until the
/// fetch has linked the manifest (and a moment more, for that fetch to end),
/// then answers "not found", as a read issued before the write does on a
/// busy machine.
#[derive(Debug)]
struct LateSecondRead {
    inner: Arc<dyn ObjectStore>,
    manifest_reads: AtomicUsize,
    linked: AtomicBool,
    link_written: tokio::sync::Notify,
}

impl std::fmt::Display for LateSecondRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LateSecondRead({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for LateSecondRead {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let put = self.inner.put_opts(location, payload, opts).await;
        if location.as_ref().contains("/_links/manifests/") {
            self.linked.store(true, Ordering::SeqCst);
            self.link_written.notify_waiters();
        }
        put
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &StorePath, options: GetOptions) -> object_store::Result<GetResult> {
        let key = location.as_ref();
        let manifest = key.contains("/manifests/") && !key.contains("/_links/");
        if manifest && self.manifest_reads.fetch_add(1, Ordering::SeqCst) == 1 {
            let written = self.link_written.notified();
            if !self.linked.load(Ordering::SeqCst) {
                // Bounded, so that an order this test did not foresee fails
                // its assertion instead of hanging.
                let _ = tokio::time::timeout(Duration::from_secs(5), written).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(object_store::Error::NotFound {
                path: key.to_owned(),
                source: "read before the manifest was written".into(),
            });
        }
        self.inner.get_opts(location, options).await
    }

    async fn delete(&self, location: &StorePath) -> object_store::Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&StorePath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&StorePath>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &StorePath, to: &StorePath) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &StorePath, to: &StorePath) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

/// Two clients wait on one tag check; the first fetches the manifest while the
/// second's look in storage comes back empty only after that fetch ended. The
/// second must not fetch the manifest again: the fetch looks in storage once
/// more before it asks the upstream.
#[tokio::test]
async fn a_storage_read_that_missed_a_fetch_just_ended_does_not_fetch_the_manifest_again() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    slow_tag_checks(&upstream, Duration::from_millis(300));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("store")).expect("store dir");
    let store = LateSecondRead {
        inner: Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("store")).expect("store")),
        manifest_reads: AtomicUsize::new(0),
        linked: AtomicBool::new(false),
        link_written: tokio::sync::Notify::new(),
    };
    let storage = Storage::new(Arc::new(store), dir.path().join("spool")).expect("storage");
    let config = config(dir.path(), &[upstream.host()]);
    let proxy = Proxy::with_storage(&config, storage, |builder| {
        builder.option(OciOption::DockerConfig, "/nonexistent/config.json")
    })
    .expect("build the proxy");
    let proxy = RunningProxy::serve(proxy);
    let image = &registry.fixtures().single_oci;
    let manifest = format!("{}/v2/single/oci/manifests/v1", proxy.url());
    let clients = (0..2).map(|_| async {
        let response = http().get(&manifest).send().await.expect("GET");
        (response.status(), response.bytes().await.expect("body"))
    });
    for (status, body) in futures::future::join_all(clients).await {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, image.manifest);
    }
    let gets: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.is_manifest() && r.method == Method::GET)
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
}

/// Every tag check (a manifest `HEAD`) through `upstream` takes `delay`, so that
/// the clients of a test arrive while one is under way.
fn slow_tag_checks(upstream: &FaultProxy, delay: Duration) {
    upstream.inject_when(
        Matcher::manifests().method(Method::HEAD),
        Fault::Delay {
            duration: delay,
            times: usize::MAX,
        },
    );
}
