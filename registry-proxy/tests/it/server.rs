//! The server as a service: HTTPS with HTTP/2, bounded request headers
//! (size and time), and a shutdown that lets answers under way finish
//! within the grace period, then cuts what is left.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::{RunningProxy, config};
use conformance::harness::{AuthMode, Pusher, TestRegistry, write_tls_files};
use registry_client::driver::oci::OciOption;
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
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
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

/// Whether the server closes `stream` within `within`: its read ends
/// (EOF or reset) rather than timing out.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buffer = [0; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An answer (a 408, say): keep reading to the close.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_its_first_request_is_closed_at_the_header_timeout() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[registry.host()]);
    config.server.header_timeout = Duration::from_secs(1);
    config.server.idle_timeout = Duration::from_secs(60);
    let proxy = RunningProxy::start(&config);

    // Silent (hyper waits for the first bytes to tell HTTP/1 from HTTP/2),
    // one byte, and half of HTTP/2's preface.
    for first in [&b""[..], b"G", b"PRI * HTTP/2.0\r\n"] {
        let started = Instant::now();
        let mut silent = tokio::net::TcpStream::connect(proxy.host())
            .await
            .expect("connect");
        silent.write_all(first).await.expect("send");
        assert!(
            closed_within(&mut silent, Duration::from_secs(5)).await,
            "{first:?}: still open after 5 s"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{first:?}: closed after {took:?}"
        );
    }
    let metrics = common::metrics(&proxy).await;
    assert_eq!(closed_for(&metrics, "header_timeout"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_gets_the_idle_timeout_between_requests() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[registry.host()]);
    config.server.header_timeout = Duration::from_millis(500);
    config.server.idle_timeout = Duration::from_secs(3);
    let proxy = RunningProxy::start(&config);

    let mut stream = tokio::net::TcpStream::connect(proxy.host())
        .await
        .expect("connect");
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: cache\r\n\r\n")
        .await
        .expect("send");
    let mut answer = vec![0; 1024];
    let read = stream.read(&mut answer).await.expect("answer");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    // Long past the header timeout, the connection is still there for the next request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: cache\r\n\r\n")
        .await
        .expect("send again");
    let read = stream.read(&mut answer).await.expect("second answer");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"), "kept alive");
    let answered_again = Instant::now();
    assert!(answered_again - answered > Duration::from_secs(1));
    // Then nothing: closed at the idle timeout.
    assert!(
        closed_within(&mut stream, Duration::from_secs(6)).await,
        "never closed"
    );
    let idle = answered_again.elapsed();
    assert!(idle >= Duration::from_millis(2900), "closed after {idle:?}");
    let metrics = common::metrics(&proxy).await;
    assert_eq!(closed_for(&metrics, "idle_timeout"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_the_connection_idle_longest_makes_room() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[registry.host()]);
    config.server.max_connections = Some(8);
    config.server.header_timeout = Duration::from_secs(60);
    let proxy = RunningProxy::start(&config);

    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(
            tokio::net::TcpStream::connect(proxy.host())
                .await
                .expect("connect"),
        );
        // Distinct ages.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A well-behaved client still gets in, and pulls.
    let image = &registry.fixtures().single_oci;
    assert_eq!(common::pull_through(&proxy, "single/oci:v1").await, image.digest);
    // The oldest silent connections made room; the newest is still open.
    assert!(
        closed_within(&mut silent[0], Duration::from_secs(5)).await,
        "the oldest stayed"
    );
    assert!(
        !closed_within(&mut silent[7], Duration::from_millis(300)).await,
        "the newest went"
    );
    let metrics = common::metrics(&proxy).await;
    assert!(closed_for(&metrics, "evicted") >= 1.0);
    assert!(common::metric(&metrics, "mcreg_connection_limit_reached_total") >= 1.0);
    assert!(common::metric(&metrics, "mcreg_connections") <= 8.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answer_is_cut_after_the_idle_timeout() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let data: Vec<u8> = (0..32 * 1024 * 1024_u32).map(|i| (i % 239) as u8).collect();
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[registry.host()]);
    config.server.idle_timeout = Duration::from_secs(1);
    let proxy = RunningProxy::start(&config);
    let blob = format!("{}/v2/big/blob/blobs/{digest}", proxy.url());
    let cached = reqwest::get(&blob)
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("fill");
    assert_eq!(cached.len(), data.len());
    // Until only the metrics request's own connection is left.
    let all_closed = || async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = common::metrics(&proxy).await;
            if common::metric(&metrics, "mcreg_connections ") == 1.0 {
                return metrics;
            }
            assert!(
                Instant::now() < deadline,
                "the stalled answer is still held:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    // HTTP/1.1: the client reads nothing more; its socket's buffers fill,
    // then the server's writes wait, then the server gives up.
    let mut stalled = tokio::net::TcpStream::connect(proxy.host())
        .await
        .expect("connect");
    let request = format!("GET /v2/big/blob/blobs/{digest} HTTP/1.1\r\nHost: cache\r\n\r\n");
    stalled.write_all(request.as_bytes()).await.expect("send");
    let mut first = vec![0; 1024];
    let _ = stalled.read(&mut first).await.expect("the answer starts");
    all_closed().await;
    let mut received = 0;
    let mut buffer = vec![0; 1024 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buffer)).await {
        if n == 0 {
            break;
        }
        received += n;
    }
    assert!(received < data.len(), "the whole blob was sent after all");

    // HTTP/2: the stream's window closes while the connection itself is
    // alive (pings answered); the answer is cut all the same.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let mut response = h2.get(&blob).send().await.expect("GET over HTTP/2");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert!(response.chunk().await.expect("a chunk").is_some());
    let metrics = all_closed().await;
    assert_eq!(closed_for(&metrics, "stalled"), 2.0);
    let mut rest = Ok(Some(bytes::Bytes::new()));
    let mut received = 0;
    while let Ok(Some(chunk)) = rest {
        received += chunk.len();
        rest = response.chunk().await;
    }
    assert!(
        rest.is_err() && received < data.len(),
        "the whole blob was sent after all"
    );
}

/// `mcreg_connections_closed_total` for `reason` in the cache's `/metrics` text.
fn closed_for(metrics: &str, reason: &str) -> f64 {
    common::metric(
        metrics,
        &format!("mcreg_connections_closed_total{{reason=\"{reason}\"}}"),
    )
}
