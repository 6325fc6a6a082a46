//! What the cache promises, against real upstream registries behind a
//! recording fault proxy: one upstream GET per blob however many clients
//! pull at once; stale answers when the upstream is gone; nothing cached
//! from a corrupted upstream; blob HEADs that download nothing; Range on a
//! miss and on a hit; routes that never mix; a fetch under way for one
//! repository that answers no other; fills that outlive their
//! client when nearly done, and stop when nobody wants a big blob; a full
//! disk midway through fills that their clients never notice; a commit
//! that fails after verification caching nothing; a cache that survives a
//! restart and cleans up after a crash.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    RunningProxy, Tmpfs, config, header, http, metric, metrics, recorded, wait_for_hit, walk,
};
use conformance::harness::fault_proxy::{Fault, FaultProxy, Matcher, RecordedRequest};
use conformance::harness::{AuthMode, ImageFixture, Pusher, TestRegistry, fixtures, noise};
use registry_client::driver::oci::OciOption;
use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient};
use reqwest::StatusCode;

/// An SDK client that talks to the cache as its registry.
fn client() -> RepositoryClient {
    RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .platform("linux/amd64")
        .build()
        .expect("client")
}

fn through(proxy: &RunningProxy, image: &ImageFixture) -> ImageReference {
    image.reference(&proxy.host()).parse().expect("reference")
}

async fn pull(reference: &ImageReference) -> registry_client::Result<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = client()
        .pull(reference)
        .await?
        .write_oci_layout(&dir.path().join("layout"), &PullOptions::default())
        .await?;
    Ok(result.digest)
}

fn blob_gets(upstream: &FaultProxy) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in upstream.requests().iter().filter(|r| r.is_blob_get()) {
        let digest = request.path.rsplit('/').next().unwrap_or_default().to_owned();
        *counts.entry(digest).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_cold_pulls_fetch_each_blob_once() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    // Slow blobs: every pull arrives while the first fill is still running.
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Delay {
            duration: Duration::from_millis(300),
            times: usize::MAX,
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config(dir.path(), &[upstream.host()]));
    let image = &registry.fixtures().many_layers;
    let reference = through(&proxy, image);

    let pulls = (0..20).map(|_| {
        let reference = reference.clone();
        tokio::spawn(async move { pull(&reference).await })
    });
    for result in futures::future::join_all(pulls).await {
        assert_eq!(result.expect("task").expect("pull"), image.digest);
    }

    let gets = blob_gets(&upstream);
    let expected: Vec<&str> = image
        .layers
        .iter()
        .map(|l| l.digest.as_str())
        .chain([image.config_digest.as_str()])
        .collect();
    for digest in &expected {
        assert_eq!(gets.get(*digest), Some(&1), "upstream GETs of {digest}: {gets:?}");
    }
    assert_eq!(gets.len(), expected.len(), "{gets:?}");
}

#[tokio::test]
async fn a_stopped_upstream_still_serves_what_was_pulled_marked_stale() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[registry.host()]);
    // Every tag request checks upstream.
    config.routes[0].tag_ttl = Duration::ZERO;
    let proxy = RunningProxy::start(&config);
    let image = &registry.fixtures().single_oci;
    let reference = through(&proxy, image);
    assert_eq!(pull(&reference).await.expect("first pull"), image.digest);

    drop(registry);
    assert_eq!(
        pull(&reference).await.expect("pull while the upstream is down"),
        image.digest
    );
    let manifest = format!("{}/v2/{}/manifests/v1", proxy.url(), image.repository);
    let response = http().get(&manifest).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-cache"), "STALE");
    assert_eq!(header(&response, "docker-content-digest"), image.digest);

    // An image never pulled: a clear error that names the upstream's failure.
    let never = through(&proxy, &registry_fixture_named(image, "never/pulled"));
    let error = pull(&never).await.expect_err("nothing to serve");
    assert!(error.to_string().contains("503"), "{error}");
    // (The upstream's breaker may have opened by now: that is said too.)
    let response = http()
        .get(format!("{}/v2/never/pulled/manifests/v1", proxy.url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.text().await.expect("body");
    let says_why = body.contains("connection to") || body.contains("circuit breaker open");
    assert!(body.contains("UNAVAILABLE") && says_why, "{body}");
}

fn registry_fixture_named(image: &ImageFixture, repository: &str) -> ImageFixture {
    let mut image = image.clone();
    image.repository = repository.to_owned();
    image
}

#[tokio::test]
async fn a_corrupted_upstream_blob_is_never_cached_and_cuts_the_client() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config(dir.path(), &[upstream.host()]));
    let image = &registry.fixtures().single_oci;
    let layer = &image.layers[0];
    upstream.inject_when(
        Matcher::path_contains(layer.digest.clone()).method(reqwest::Method::GET),
        Fault::CorruptByte { offset: 3, times: 1 },
    );
    let blob = format!("{}/v2/{}/blobs/{}", proxy.url(), image.repository, layer.digest);

    // The client never gets a clean answer: the body is cut (the answer had
    // started); the connection is cut before the headers went out (the check
    // failed as the answer began); or an error status (it failed before).
    match http().get(&blob).send().await {
        Err(error) => assert!(error.is_request(), "{error:?}"),
        Ok(response) => {
            let status = response.status();
            let body = response.bytes().await;
            if status == StatusCode::OK {
                assert!(body.is_err(), "a corrupted blob must not end cleanly: {body:?}");
            } else {
                assert!(status.is_server_error(), "{status}: {body:?}");
            }
        }
    }
    // And nothing was stored: a HEAD is a miss, answered by the upstream.
    let head = http().head(&blob).send().await.expect("HEAD");
    assert_eq!(header(&head, "x-cache"), "MISS");

    // With the fault gone, the next pull is whole and verified.
    assert_eq!(pull(&through(&proxy, image)).await.expect("pull"), image.digest);
    let cached = http().get(&blob).send().await.expect("GET");
    assert_eq!(header(&cached, "x-cache"), "HIT");
    assert_eq!(cached.bytes().await.expect("body"), layer.data);
}

#[tokio::test]
async fn a_blob_head_on_a_miss_downloads_nothing_and_ranges_work_on_miss_and_hit() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config(dir.path(), &[upstream.host()]));
    let image = &registry.fixtures().many_layers;
    let layer = image.layers.iter().max_by_key(|l| l.size).expect("a layer");
    let blob = format!("{}/v2/{}/blobs/{}", proxy.url(), image.repository, layer.digest);

    let head = http().head(&blob).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), layer.size.to_string());
    assert_eq!(header(&head, "docker-content-digest"), layer.digest);
    assert_eq!(header(&head, "x-cache"), "MISS");
    let sent: Vec<RecordedRequest> = upstream.requests().into_iter().filter(|r| r.is_blob()).collect();
    assert!(sent.iter().all(|r| r.method == reqwest::Method::HEAD), "{sent:?}");

    let (start, end) = (10_u64, 29_u64);
    let expected = &layer.data[start as usize..=end as usize];
    for cache in ["MISS", "HIT"] {
        if cache == "HIT" {
            wait_for_hit(&blob).await;
        }
        let response = http()
            .get(&blob)
            .header("range", format!("bytes={start}-{end}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{cache}");
        assert_eq!(header(&response, "x-cache"), cache);
        assert_eq!(
            header(&response, "content-range"),
            format!("bytes {start}-{end}/{}", layer.size)
        );
        assert_eq!(response.bytes().await.expect("body"), expected, "{cache}");
    }
    // Past the end, however many digits it takes to say so.
    for first in [layer.size.to_string(), "99999999999999999999999".to_owned()] {
        let beyond = http()
            .get(&blob)
            .header("range", format!("bytes={first}-"))
            .send()
            .await
            .expect("GET");
        assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{first}");
        assert_eq!(
            header(&beyond, "content-range"),
            format!("bytes */{}", layer.size)
        );
    }
    assert_eq!(blob_gets(&upstream).get(&layer.digest), Some(&1));
}

#[tokio::test]
async fn two_routes_with_the_same_names_never_mix() {
    let (a, b) = tokio::join!(
        TestRegistry::start_empty(AuthMode::None),
        TestRegistry::start_empty(AuthMode::None)
    );
    let app = |image: &ImageFixture| {
        let mut image = image.clone();
        image.repository = "team/app".into();
        image.tag = Some("v1".into());
        image
    };
    let (in_a, in_b) = (app(&fixtures().single_oci), app(&fixtures().many_layers));
    Pusher::new(&a.url()).image(&in_a).await;
    Pusher::new(&b.url()).image(&in_b).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[a.host(), b.host()]);
    config.routes[0].prefix = Some("a".into());
    config.routes[1].prefix = Some("b".into());
    let proxy = RunningProxy::start(&config);
    let via = |prefix: &str, reference: &str| -> ImageReference {
        format!("{}/{prefix}/team/app{reference}", proxy.host())
            .parse()
            .expect("reference")
    };
    for _ in 0..2 {
        assert_eq!(pull(&via("a", ":v1")).await.expect("a"), in_a.digest);
        assert_eq!(pull(&via("b", ":v1")).await.expect("b"), in_b.digest);
    }
    // Content cached for one route is not there for the other.
    let error = pull(&via("b", &format!("@{}", in_a.digest)))
        .await
        .expect_err("not in b");
    assert!(error.is_not_found(), "{error}");
}

#[tokio::test]
async fn a_manifest_fetch_under_way_for_one_repository_does_not_answer_another() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let mut image = fixtures().single_oci.clone();
    image.repository = "team/app".into();
    Pusher::new(&registry.url()).image(&image).await;
    let upstream = recorded(&registry.url()).await;
    // The first fetch is still under way when the second request comes.
    upstream.inject_when(
        Matcher::path_contains(format!("/v2/team/app/manifests/{}", image.digest)),
        Fault::Delay {
            duration: Duration::from_millis(800),
            times: 1,
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config(dir.path(), &[upstream.host()]));
    let get = |repository: &str| {
        http()
            .get(format!(
                "{}/v2/{repository}/manifests/{}",
                proxy.url(),
                image.digest
            ))
            .header("Accept", image.media_type)
            .send()
    };

    let (held, other) = tokio::join!(get("team/app"), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        get("team/other").await
    });
    assert_eq!(held.expect("GET").status(), StatusCode::OK);
    // The upstream has no `team/other`: the same digest is not served there.
    let other = other.expect("GET");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    assert!(other.text().await.expect("body").contains("MANIFEST_UNKNOWN"));
}

#[tokio::test]
async fn a_fill_outlives_the_client_that_started_it() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    // Big enough to be sent in many chunks.
    let data: Vec<u8> = (0..8 * 1024 * 1024_u32).map(|i| (i % 251) as u8).collect();
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Delay {
            duration: Duration::from_millis(200),
            times: 1,
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config(dir.path(), &[upstream.host()]));
    let blob = format!("{}/v2/big/blob/blobs/{digest}", proxy.url());

    let mut response = http().get(&blob).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    let first = response.chunk().await.expect("a chunk");
    assert!(first.is_some());
    drop(response);

    wait_for_hit(&blob).await;
    let cached = http().get(&blob).send().await.expect("GET");
    assert_eq!(cached.bytes().await.expect("body").as_ref(), data.as_slice());
    assert_eq!(blob_gets(&upstream).get(&digest), Some(&1));
}

/// A big blob whose clients all leave early is not fetched for nobody: a
/// client that comes back within the linger joins the same fill, but once
/// the last has been gone for it (5 s) and most of the blob is still to
/// come (more than 64 MiB, and more than what is already there), the fill
/// stops, the upstream download is cut, and nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_fill_whose_clients_all_left_stops_after_the_linger() {
    const MIB: usize = 1024 * 1024;
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let data = noise(11, 96 * MIB);
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    // 24 s for the whole blob: far from done when its clients leave.
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Throttle {
            bytes_per_second: 4 * MIB as u64,
            times: usize::MAX,
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config(dir.path(), &[upstream.host()]));
    let blob = format!("{}/v2/big/blob/blobs/{digest}", proxy.url());
    let fills = |text: &str| metric(text, "mcreg_fills_in_flight ");

    let mut first = http().get(&blob).send().await.expect("GET");
    assert!(first.chunk().await.expect("a chunk").is_some());
    drop(first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Back within the linger: the same fill.
    let mut second = http().get(&blob).send().await.expect("GET");
    assert_eq!(header(&second, "x-cache"), "MISS");
    assert!(second.chunk().await.expect("a chunk").is_some());
    drop(second);
    let left = Instant::now();
    assert_eq!(blob_gets(&upstream).get(&digest), Some(&1));

    let deadline = left + Duration::from_secs(15);
    while fills(&metrics(&proxy).await) > 0.0 {
        assert!(Instant::now() < deadline, "the fill never stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped_after = left.elapsed();
    assert!(
        stopped_after >= Duration::from_secs(5),
        "stopped after {stopped_after:?}"
    );
    let text = metrics(&proxy).await;
    assert_eq!(
        metric(&text, "mcreg_fills_stopped_total{reason=\"abandoned\"}"),
        1.0
    );
    let head = http().head(&blob).send().await.expect("HEAD");
    assert_eq!(header(&head, "x-cache"), "MISS", "nothing kept");
    let spooled: Vec<_> = walk(&dir.path().join("spool"));
    assert!(spooled.is_empty(), "{spooled:?}");
    assert_eq!(blob_gets(&upstream).get(&digest), Some(&1), "no download since");
}

/// Two fills that each fit the disk alone do not fit together: the one
/// that finds the disk full midway stops, and its client goes on from the
/// upstream at the byte it had reached, never noticing. The other is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_midway_through_a_fill_goes_unnoticed_by_its_client() {
    const MIB: usize = 1024 * 1024;
    let Some(disk) = Tmpfs::mount("40m") else { return };
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let pusher = Pusher::new(&registry.url());
    let (a, b) = (noise(21, 25 * MIB), noise(22, 25 * MIB));
    let digests = [
        pusher.blob("two/blobs", &a).await,
        pusher.blob("two/blobs", &b).await,
    ];
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Throttle {
            bytes_per_second: 20 * MIB as u64,
            times: usize::MAX,
        },
    );
    let proxy = RunningProxy::start(&config(disk.path(), &[upstream.host()]));
    let url = |digest: &str| format!("{}/v2/two/blobs/blobs/{digest}", proxy.url());
    let get = |url: String| async move {
        let response = http().get(url).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.expect("the whole blob")
    };
    let (got_a, got_b) = tokio::join!(get(url(&digests[0])), get(url(&digests[1])));
    assert!(
        got_a.as_ref() == a.as_slice() && got_b.as_ref() == b.as_slice(),
        "a blob came damaged"
    );

    let text = metrics(&proxy).await;
    assert!(
        metric(&text, "mcreg_fills_stopped_total{reason=\"storage\"}") >= 1.0,
        "{text}"
    );
    let mut cached = 0;
    for digest in &digests {
        let head = http().head(url(digest)).send().await.expect("HEAD");
        cached += usize::from(header(&head, "x-cache") == "HIT");
    }
    assert!(cached <= 1, "both fit after all");
}

#[tokio::test]
async fn a_commit_that_fails_after_the_blob_was_verified_serves_it_and_caches_nothing() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let upstream = recorded(&registry.url()).await;
    let data: Vec<u8> = (0..2 * 1024 * 1024_u32).map(|i| (i % 241) as u8).collect();
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &[upstream.host()]);
    // A directory where the blob's file goes: the rename that commits it fails.
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    let obstacle = dir.path().join(format!(
        "store/routes/{}/blobs/sha256/{hex}",
        config.routes[0].name
    ));
    std::fs::create_dir_all(&obstacle).expect("the obstacle");
    let proxy = RunningProxy::start(&config);
    let blob = format!("{}/v2/big/blob/blobs/{digest}", proxy.url());

    // The client gets the whole, verified blob all the same.
    let first = http().get(&blob).send().await.expect("GET");
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-cache"), "MISS");
    assert_eq!(first.bytes().await.expect("body").as_ref(), data.as_slice());
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::metric(&common::metrics(&proxy).await, "mcreg_fills_in_flight") > 0.0 {
        assert!(Instant::now() < deadline, "the fill never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing was cached: the obstacle is as it was, and the blob is still a miss.
    assert!(obstacle.is_dir() && std::fs::read_dir(&obstacle).expect("read").next().is_none());
    let head = http().head(&blob).send().await.expect("HEAD");
    assert_eq!(header(&head, "x-cache"), "MISS");

    // Once storage works again, the next request fills it for good.
    std::fs::remove_dir(&obstacle).expect("remove the obstacle");
    let second = http().get(&blob).send().await.expect("GET");
    assert_eq!(second.bytes().await.expect("body").as_ref(), data.as_slice());
    wait_for_hit(&blob).await;
    assert_eq!(blob_gets(&upstream).get(&digest), Some(&2));
}

#[tokio::test]
async fn the_cache_survives_a_restart_and_cleans_what_a_crash_left() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &[registry.host()]);
    let image = &registry.fixtures().single_docker;
    {
        let proxy = RunningProxy::start(&config);
        assert_eq!(pull(&through(&proxy, image)).await.expect("pull"), image.digest);
    }
    // What a crash leaves: a spool file, a half-written object.
    let spool_leftover = dir.path().join("spool/fill-crashed");
    std::fs::write(&spool_leftover, b"partial").expect("write");
    let staging_leftover = dir.path().join("store/routes/leftover#7");
    std::fs::write(&staging_leftover, b"partial").expect("write");
    drop(registry);

    let proxy = RunningProxy::start(&config);
    assert!(!spool_leftover.exists() && !staging_leftover.exists());
    // The upstream is gone, the tag is still fresh: all from disk.
    assert_eq!(
        pull(&through(&proxy, image)).await.expect("pull from disk"),
        image.digest
    );
}

#[tokio::test]
async fn hostile_requests_get_an_error_and_leave_nothing_behind() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config(dir.path(), &[registry.host()]));
    let raw = |request: Vec<u8>| {
        let host = proxy.host();
        async move {
            let mut stream = tokio::net::TcpStream::connect(&host).await.expect("connect");
            // The server may answer (and close) before it has read it all.
            let _ = stream.write_all(&request).await;
            // Enough to see the status line; the server may keep the connection.
            let mut answer = vec![0; 4096];
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
                .await
                .unwrap_or(Ok(0))
                .unwrap_or(0);
            String::from_utf8_lossy(&answer[..read]).into_owned()
        }
    };
    let huge_header = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2 * 1024 * 1024)
    );
    let answer = raw(huge_header.into_bytes()).await;
    assert!(
        !answer.starts_with("HTTP/1.1 2"),
        "a 2 MiB header was accepted: {answer:.80}"
    );
    let many_headers: String = (0..1000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes()).await;
    assert!(
        !answer.starts_with("HTTP/1.1 2"),
        "1000 headers were accepted: {answer:.80}"
    );
    let answer =
        raw(b"GET /v2/single/oci/blobs/sha256:..%2F..%2Fetc HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:.200}");
    // HTTP/1.1 without Host is refused (RFC 9112); HTTP/1.0 needs none.
    let answer = raw(b"GET /v2/single/oci/manifests/v1 HTTP/1.1\r\n\r\n".to_vec()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:.200}");
    assert!(answer.contains("Host"), "{answer}");
    let answer = raw(b"GET /v2/ HTTP/1.0\r\n\r\n".to_vec()).await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer:.200}");

    // Still serving, and nothing was stored for any of it.
    let ok = http()
        .get(format!("{}/v2/", proxy.url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(ok.status(), StatusCode::OK);
    let stored: Vec<_> = walk(&dir.path().join("store"));
    assert!(stored.is_empty(), "{stored:?}");
}
