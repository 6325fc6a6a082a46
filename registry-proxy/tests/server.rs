//! The server as a service: HTTPS with HTTP/2, bounded request headers
//! (size and time), and a shutdown that lets answers under way finish
//! within the grace period, then cuts what is left.

mod common;

use std::time::{Duration, Instant};

use common::{RunningProxy, config};
use conformance::harness::{AuthMode, Pusher, TestRegistry, write_tls_files};
use registry_client::oci::DOCKER_CONFIG_OPTION;
use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// Multi-threaded: the clients' connections must be able to close while the
// server stops at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_http2() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = write_tls_files(dir.path());
    let mut config = config(&dir.path().join("cache"), &[registry.host()]);
    config.server.tls = Some((tls.cert_path.clone(), tls.key_path.clone()));
    let proxy = RunningProxy::start(&config);
    let https = format!("https://{}", proxy.host());

    let certificate = reqwest::Certificate::from_pem(tls.cert_pem.as_bytes()).expect("certificate");
    let client = reqwest::Client::builder()
        .add_root_certificate(certificate)
        .build()
        .expect("client");
    let answer = client.get(format!("{https}/v2/")).send().await.expect("GET /v2/");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    // Plain HTTP is not served on a TLS port.
    assert!(reqwest::get(format!("{}/v2/", proxy.url())).await.is_err());

    // The SDK pulls over it (it trusts the certificate as insecure).
    let image = &registry.fixtures().single_oci;
    let reference: ImageReference = image.reference(&proxy.host()).parse().expect("reference");
    let out = tempfile::tempdir().expect("tempdir");
    let result = RepositoryClient::builder("oci")
        .option(DOCKER_CONFIG_OPTION, "/nonexistent/config.json")
        .endpoint(&https)
        .insecure_registry(proxy.host())
        .build()
        .expect("client")
        .pull(&reference)
        .await
        .expect("resolve over TLS")
        .write_oci_layout(&out.path().join("layout"), &PullOptions::default())
        .await
        .expect("pull over TLS");
    assert_eq!(result.digest, image.digest);
}

/// Sends `request` raw and returns the first bytes of the answer (empty if
/// the server closed the connection without one).
async fn raw(host: &str, request: &[u8], wait: Duration) -> String {
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(wait, stream.read(&mut answer))
        .await
        .expect("the server neither answered nor closed")
        .unwrap_or(0);
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

#[tokio::test]
async fn request_headers_are_bounded_in_size_and_time() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[registry.host()]);
    config.server.header_timeout = Duration::from_secs(1);
    config.server.max_header_bytes = 16 * 1024;
    let proxy = RunningProxy::start(&config);

    // Headers that never end: the connection is closed after the timeout.
    let started = Instant::now();
    let answer = raw(
        &proxy.host(),
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(10),
    )
    .await;
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );

    // Headers over the limit: refused.
    let big = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = raw(&proxy.host(), big.as_bytes(), Duration::from_secs(10)).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // Still serving.
    assert_eq!(
        reqwest::get(format!("{}/v2/", proxy.url()))
            .await
            .expect("GET")
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_answers_finish_within_the_grace_period() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let data: Vec<u8> = (0..24 * 1024 * 1024_u32).map(|i| (i % 249) as u8).collect();
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[registry.host()]);
    config.server.shutdown_grace = Duration::from_secs(10);
    let blob = |proxy: &RunningProxy| format!("{}/v2/big/blob/blobs/{digest}", proxy.url());

    // An answer under way when the stop comes: it finishes (well within
    // the grace period), and the server stops right after.
    let proxy = RunningProxy::start(&config);
    let cached = reqwest::get(blob(&proxy))
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("fill");
    assert_eq!(cached.len(), data.len());
    let mut response = reqwest::get(blob(&proxy)).await.expect("GET");
    let mut received = response.chunk().await.expect("chunk").expect("bytes").to_vec();
    let host = proxy.host();
    let stopping = std::thread::spawn(move || proxy.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections once stopping.
    assert!(tokio::net::TcpStream::connect(&host).await.is_err() || raw_refused(&host).await);
    while let Some(chunk) = response.chunk().await.expect("the answer under way finishes") {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, data);
    assert!(stopping.join().expect("stopped") < Duration::from_secs(10));

    // A client that stops reading: cut when the grace period is over.
    config.server.shutdown_grace = Duration::from_secs(2);
    let proxy = RunningProxy::start(&config);
    let mut stalled = reqwest::get(blob(&proxy)).await.expect("GET");
    let _ = stalled.chunk().await.expect("chunk");
    let took = proxy.stop();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "stopped after {took:?}"
    );
    let mut rest = Ok(Some(bytes::Bytes::new()));
    while let Ok(Some(_)) = rest {
        rest = stalled.chunk().await;
    }
    assert!(rest.is_err(), "the stalled answer was cut, not completed");
}

/// Whether a new request on `host` is refused (the listener is closed, or
/// the connection is closed without an answer).
async fn raw_refused(host: &str) -> bool {
    raw(
        host,
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await
    .is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_fetches_beyond_the_limit_wait_their_turn() {
    use conformance::harness::fault_proxy::{Fault, FaultProxy, Matcher};
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let mut digests = Vec::new();
    for i in 0..4_u8 {
        digests.push(pusher.blob("many/blobs", &[i; 1000]).await);
    }
    let upstream = FaultProxy::start(url::Url::parse(&registry.url()).expect("URL")).await;
    let slow = Duration::from_millis(300);
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Delay {
            duration: slow,
            times: usize::MAX,
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[upstream.host()]);
    config.server.upstream_fetches = 1;
    let proxy = RunningProxy::start(&config);

    let gets = digests.iter().map(|digest| {
        let url = format!("{}/v2/many/blobs/blobs/{digest}", proxy.url());
        async move { reqwest::get(url).await.expect("GET").bytes().await.expect("body") }
    });
    let bodies = futures::future::join_all(gets).await;
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(
            body.as_ref(),
            [i as u8; 1000],
            "every request answered, none refused"
        );
    }
    // One at a time: each upstream GET arrived after the one before ended.
    let mut arrivals: Vec<Instant> = upstream
        .requests()
        .iter()
        .filter(|r| r.is_blob_get())
        .map(|r| r.at)
        .collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 4);
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= slow,
            "two upstream fetches overlapped: {arrivals:?}"
        );
    }
}
