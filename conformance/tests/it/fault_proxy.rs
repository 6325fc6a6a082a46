//! Tests of the fault-injecting proxy against a tiny in-process axum upstream (no registry).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use conformance::harness::fault_proxy::{Fault, FaultKind, FaultProxy, Matcher, Rule, RuleId};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use url::Url;

const BLOB_LEN: usize = 64 * 1024;

fn blob() -> Vec<u8> {
    (0..BLOB_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

const BIG_LEN: usize = 12 * 1024 * 1024;

fn big() -> Vec<u8> {
    let pattern: Vec<u8> = (0..=252u8).collect();
    pattern.iter().copied().cycle().take(BIG_LEN).collect()
}

fn digest() -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(blob())))
}

fn blob_path() -> String {
    format!("/v2/test/repo/blobs/{}", digest())
}

/// What the upstream saw.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    authorization: Option<String>,
}

#[derive(Clone)]
struct UpState {
    url: Url,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct Upstream {
    url: Url,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = UpState {
            url: url.clone(),
            seen: seen.clone(),
        };
        let app = Router::new().fallback(upstream_handler).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Upstream { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn upstream_handler(State(st): State<UpState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    st.seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        authorization: parts
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
    });
    let builder = Response::builder().header("docker-distribution-api-version", "registry/2.0");
    if path == blob_path() {
        // Honour `Range: bytes=N-` like a registry.
        let start = parts
            .headers
            .get("range")
            .and_then(|r| r.to_str().unwrap().strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .map(|n| n.parse::<usize>().unwrap());
        if let Some(start) = start {
            return builder
                .status(206)
                .header("content-length", (BLOB_LEN - start).to_string())
                .header(
                    "content-range",
                    format!("bytes {start}-{}/{BLOB_LEN}", BLOB_LEN - 1),
                )
                .body(Body::from(blob()[start..].to_vec()))
                .unwrap();
        }
        let body = if parts.method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(blob())
        };
        builder
            .status(200)
            .header("content-type", "application/octet-stream")
            .header("content-length", BLOB_LEN.to_string())
            .header("docker-content-digest", digest())
            .header("x-upstream", "tiny")
            .body(body)
            .unwrap()
    } else if path == "/v2/test/repo/redirect" {
        let location = format!("{}v2/test/repo/blobs/{}?sig=abc", st.url, digest());
        builder
            .status(307)
            .header("location", location)
            .body(Body::empty())
            .unwrap()
    } else if path == "/v2/big" {
        builder
            .status(200)
            .header("content-length", BIG_LEN.to_string())
            .body(Body::from(big()))
            .unwrap()
    } else if path == "/v2/" {
        builder
            .status(401)
            .header(
                "www-authenticate",
                r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:test/repo:pull""#,
            )
            .body(Body::empty())
            .unwrap()
    } else if path == "/v2/echo" {
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        builder
            .status(201)
            .header("x-query", parts.uri.query().unwrap_or(""))
            .body(Body::from(bytes))
            .unwrap()
    } else {
        builder
            .status(404)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"nope"}]}"#,
            ))
            .unwrap()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn at(base: &Url, path: &str) -> Url {
    base.join(path.trim_start_matches('/')).unwrap()
}

async fn setup() -> (Upstream, FaultProxy) {
    let up = Upstream::start().await;
    let proxy = FaultProxy::start(up.url.clone()).await;
    (up, proxy)
}

/// Queues `fault` for the blob GETs through `proxy`.
fn on_blob_gets(proxy: &FaultProxy, fault: Fault) -> RuleId {
    proxy.inject(Rule::new(Matcher::blob_gets(), fault))
}

/// GET of the test blob through `proxy`.
async fn get_blob(c: &reqwest::Client, proxy: &FaultProxy) -> reqwest::Response {
    c.get(at(&proxy.url(), &blob_path())).send().await.unwrap()
}

#[tokio::test]
async fn transparent_by_default() {
    let (up, proxy) = setup().await;
    let c = client();

    let direct = c.get(at(&up.url, &blob_path())).send().await.unwrap();
    let via = c
        .get(at(&proxy.url(), &blob_path()))
        .header("authorization", "Bearer tok")
        .send()
        .await
        .unwrap();
    assert_eq!(via.status(), direct.status());
    for h in [
        "content-type",
        "content-length",
        "docker-content-digest",
        "x-upstream",
        "docker-distribution-api-version",
    ] {
        assert_eq!(via.headers().get(h), direct.headers().get(h), "header {h}");
    }
    assert_eq!(via.headers()["content-length"], "65536");
    let direct_body = direct.bytes().await.unwrap();
    let via_body = via.bytes().await.unwrap();
    assert_eq!(via_body.len(), BLOB_LEN);
    assert_eq!(via_body, direct_body);
    assert_eq!(&via_body[..], &blob()[..]);

    // HEAD keeps Content-Length, no body.
    let head = c.head(at(&proxy.url(), &blob_path())).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "65536");
    assert!(head.bytes().await.unwrap().is_empty());

    // Body, query and Authorization are forwarded.
    let echo = c
        .post(at(&proxy.url(), "/v2/echo?a=1&b=two"))
        .header("authorization", "Basic dTpw")
        .body("hello upstream")
        .send()
        .await
        .unwrap();
    assert_eq!(echo.status(), 201);
    assert_eq!(echo.headers()["x-query"], "a=1&b=two");
    assert_eq!(echo.text().await.unwrap(), "hello upstream");

    // 404 passes through with its body.
    let missing = c.get(at(&proxy.url(), "/v2/nothing/here")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("NAME_UNKNOWN"));

    // Location pointing at the upstream is rewritten to the proxy; not followed.
    let redirect = c
        .get(at(&proxy.url(), "/v2/test/repo/redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 307);
    let expected = format!("http://{}/v2/test/repo/blobs/{}?sig=abc", proxy.host(), digest());
    assert_eq!(redirect.headers()["location"], expected.as_str());

    let seen = up.seen();
    // direct GET, proxied GET, HEAD, POST, 404, redirect: the proxy never followed the 307.
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer tok"));
    assert_eq!(seen[2].method, Method::HEAD);
    assert_eq!(seen[3].query.as_deref(), Some("a=1&b=two"));
    assert_eq!(seen[3].authorization.as_deref(), Some("Basic dTpw"));
    assert_eq!(seen[5].path, "/v2/test/repo/redirect");

    let log = proxy.requests();
    assert_eq!(log.len(), 5);
    assert!(log[0].is_blob_get() && log[0].had_authorization && log[0].forwarded);
    assert_eq!(log[0].authorization.as_deref(), Some("Bearer tok"));
    assert_eq!(log[0].status, Some(200));
    assert_eq!(log[1].method, Method::HEAD);
    assert!(!log[1].had_authorization);
    assert_eq!(log[2].query.as_deref(), Some("a=1&b=two"));
    assert_eq!(log[3].status, Some(404));
    assert_eq!(log[4].status, Some(307));
    assert_eq!(proxy.upstream_blob_gets(), 1);
    assert_eq!(proxy.count(|r| r.fault.is_some()), 0);
    assert!(proxy.faults().is_empty());
}

#[tokio::test]
async fn status_with_retry_after_then_recovers() {
    let (up, proxy) = setup().await;
    let c = client();
    let rule = on_blob_gets(&proxy, Fault::rate_limited(2, "1"));
    assert_eq!(proxy.remaining(rule), 2);

    // A manifest request does not match the blob rule.
    let other = c
        .get(at(&proxy.url(), "/v2/test/repo/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    for _ in 0..2 {
        let r = get_blob(&c, &proxy).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["ratelimit-limit"], "100;w=21600");
        assert_eq!(r.headers()["ratelimit-remaining"], "0;w=21600");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    }
    assert_eq!(proxy.remaining(rule), 0);
    assert_eq!(proxy.pending_rules(), 0);

    let ok = get_blob(&c, &proxy).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap().len(), BLOB_LEN);

    // Only the manifest request and the recovered GET reached the upstream.
    assert_eq!(up.seen().len(), 2);
    assert_eq!(proxy.upstream_blob_gets(), 1);
    assert_eq!(proxy.count(|r| r.status == Some(429)), 2);
    assert_eq!(proxy.count(|r| r.is_blob_get()), 3);
    assert_eq!(proxy.fired(FaultKind::Status), 2);
    assert_eq!(proxy.fired_rule(rule), 2);

    // A plain 503 with an HTTP-date Retry-After, on HEAD only, with the default JSON body.
    proxy.inject(Rule::new(
        Matcher::any().method(Method::HEAD),
        Fault::Status {
            status: 503,
            times: 1,
            retry_after: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            headers: vec![("x-extra".into(), "1".into())],
            body: None,
        },
    ));
    let get = get_blob(&c, &proxy).await;
    assert_eq!(get.status(), 200);
    let head = c.head(at(&proxy.url(), &blob_path())).send().await.unwrap();
    assert_eq!(head.status(), 503);
    assert_eq!(head.headers()["retry-after"], "Wed, 21 Oct 2015 07:28:00 GMT");
    assert_eq!(head.headers()["x-extra"], "1");
    assert_eq!(head.headers()["docker-distribution-api-version"], "registry/2.0");
    let get503 = proxy.inject(Rule::new(
        Matcher::path_contains("/blobs/"),
        Fault::status(503, 1),
    ));
    let r = get_blob(&c, &proxy).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    assert_eq!(proxy.fired_rule(get503), 1);
    assert_eq!(proxy.fired(FaultKind::Status), 4);
}

#[tokio::test]
async fn rules_apply_first_match_in_order_and_clear() {
    let (_up, proxy) = setup().await;
    let c = client();
    let first = on_blob_gets(&proxy, Fault::status(500, 1));
    let second = proxy.inject(Rule::new(Matcher::any(), Fault::status(502, 1)));
    let r1 = get_blob(&c, &proxy).await;
    let r2 = get_blob(&c, &proxy).await;
    let r3 = get_blob(&c, &proxy).await;
    assert_eq!(
        (r1.status(), r2.status(), r3.status()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::OK
        )
    );
    assert_eq!((proxy.fired_rule(first), proxy.fired_rule(second)), (1, 1));

    proxy.inject(Rule::new(Matcher::any(), Fault::status(500, usize::MAX)));
    assert_eq!(proxy.pending_rules(), 1);
    proxy.clear();
    assert_eq!(proxy.pending_rules(), 0);
    let r4 = get_blob(&c, &proxy).await;
    assert_eq!(r4.status(), 200);

    // Predicate and token matchers.
    proxy.inject(Rule::new(
        Matcher::predicate(|r| r.query == Some("boom=1")),
        Fault::status(418, 1),
    ));
    proxy.inject(Rule::new(Matcher::token_requests(), Fault::status(401, 1)));
    let r5 = c
        .get(at(&proxy.url(), "/v2/x/manifests/latest?boom=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r5.status(), 418);
    let r6 = c
        .get(at(&proxy.url(), "/token?service=s&scope=repository:x:pull"))
        .send()
        .await
        .unwrap();
    assert_eq!(r6.status(), 401);
    assert_eq!(proxy.count(|r| r.is_token()), 1);

    proxy.clear_log();
    assert!(proxy.requests().is_empty());
    assert!(proxy.faults().is_empty());
}

#[tokio::test]
async fn reset_after_breaks_the_body_after_k_bytes() {
    const K: usize = 10_000;
    let (_up, proxy) = setup().await;
    let c = client();
    on_blob_gets(
        &proxy,
        Fault::ResetAfter {
            bytes: K as u64,
            times: 1,
        },
    );

    let resp = get_blob(&c, &proxy).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "65536");
    let mut received = Vec::new();
    let mut error = None;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => received.extend_from_slice(&b),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(error.is_some(), "the body must fail, not end cleanly");
    assert_eq!(received.len(), K);
    assert_eq!(&received[..], &blob()[..K]);

    // Used up: the next GET is complete; `bytes()` on a reset body fails too.
    let ok = get_blob(&c, &proxy).await;
    assert_eq!(ok.bytes().await.unwrap().len(), BLOB_LEN);
    on_blob_gets(&proxy, Fault::ResetAfter { bytes: 0, times: 1 });
    let broken = get_blob(&c, &proxy).await;
    assert!(broken.bytes().await.is_err());
    assert_eq!(proxy.fired(FaultKind::ResetAfter), 2);
    assert_eq!(
        proxy.count(|r| r.fault == Some(FaultKind::ResetAfter) && r.status == Some(200)),
        2
    );
}

/// GET `path` over a raw socket with a small receive buffer, stalling for `pause` once more
/// than `pause_after` body bytes arrived. Returns (head, body, content-length).
async fn slow_raw_get(
    addr: std::net::SocketAddr,
    path: &str,
    pause_after: usize,
    pause: Duration,
) -> (String, Vec<u8>, usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut conn = socket.connect(addr).await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut data = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut head_len = None;
    let mut paused = false;
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        data.extend_from_slice(&buf[..n]);
        if head_len.is_none() {
            head_len = data.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        }
        if let Some(h) = head_len
            && !paused
            && data.len() - h > pause_after
        {
            paused = true;
            tokio::time::sleep(pause).await;
        }
    }
    let h = head_len.expect("response head");
    let head = String::from_utf8(data[..h].to_vec()).unwrap();
    let content_length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    (head, data[h..].to_vec(), content_length)
}

#[tokio::test]
async fn reset_after_is_exact_for_a_stalled_reader_of_a_large_body() {
    // A multi-MB body and a reader that stalls with a small receive buffer: the proxy's socket
    // and write buffers fill up, and it must still deliver exactly K bytes before aborting
    // (it waits for its last bytes to be flushed rather than dropping its write buffer).
    const K: usize = 8 * 1024 * 1024 + 123;
    let (_up, proxy) = setup().await;
    proxy.inject(Rule::new(
        Matcher::path_contains("/v2/big"),
        Fault::ResetAfter {
            bytes: K as u64,
            times: 1,
        },
    ));
    let (head, body, content_length) =
        slow_raw_get(proxy.addr(), "/v2/big", 1024 * 1024, Duration::from_millis(500)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(content_length, BIG_LEN);
    assert_eq!(
        body.len(),
        K,
        "received exactly K bytes, then the connection ended"
    );
    assert!(body[..] == big()[..K]);
    assert_eq!(proxy.fired(FaultKind::ResetAfter), 1);
}

#[tokio::test]
async fn throttle_slows_the_body_and_keeps_it_whole() {
    let (_up, proxy) = setup().await;
    let c = client();
    // 64 KiB at 128 KiB/s: about half a second, its first bytes long before its last.
    on_blob_gets(
        &proxy,
        Fault::Throttle {
            bytes_per_second: 128 * 1024,
            times: 1,
        },
    );

    let started = Instant::now();
    let resp = get_blob(&c, &proxy).await;
    assert_eq!(resp.headers()["content-length"], "65536");
    let mut stream = resp.bytes_stream();
    let mut got = stream.next().await.unwrap().unwrap().to_vec();
    let first = started.elapsed();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    let whole = started.elapsed();
    assert_eq!(got, blob());
    assert!(whole >= Duration::from_millis(400), "{whole:?}");
    assert!(
        whole - first >= Duration::from_millis(300),
        "{first:?} then {whole:?}"
    );

    // Used up: the next GET is not slowed.
    let started = Instant::now();
    let again = get_blob(&c, &proxy).await;
    assert_eq!(again.bytes().await.unwrap().as_ref(), blob().as_slice());
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(proxy.fired(FaultKind::Throttle), 1);
}

#[tokio::test]
async fn corrupt_byte_flips_exactly_one_byte() {
    const OFFSET: usize = 40_000;
    let (_up, proxy) = setup().await;
    let c = client();
    on_blob_gets(
        &proxy,
        Fault::CorruptByte {
            offset: OFFSET as u64,
            times: 1,
        },
    );

    let resp = get_blob(&c, &proxy).await;
    assert_eq!(resp.headers()["content-length"], "65536");
    let got = resp.bytes().await.unwrap();
    let want = blob();
    assert_eq!(got.len(), BLOB_LEN);
    let diffs: Vec<usize> = (0..BLOB_LEN).filter(|&i| got[i] != want[i]).collect();
    assert_eq!(diffs, vec![OFFSET]);
    assert_eq!(got[OFFSET], want[OFFSET] ^ 0xFF);

    let clean = get_blob(&c, &proxy).await.bytes().await.unwrap();
    assert_eq!(&clean[..], &want[..]);
    assert_eq!(proxy.fired(FaultKind::CorruptByte), 1);
}

#[tokio::test]
async fn delay_delays_and_triggers_client_timeouts() {
    let (up, proxy) = setup().await;
    let c = client();
    on_blob_gets(
        &proxy,
        Fault::Delay {
            duration: Duration::from_millis(600),
            times: 2,
        },
    );

    let start = Instant::now();
    let r = get_blob(&c, &proxy).await;
    assert_eq!(r.bytes().await.unwrap().len(), BLOB_LEN);
    let slow = start.elapsed();
    assert!(slow >= Duration::from_millis(600), "took {slow:?}");

    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = impatient
        .get(at(&proxy.url(), &blob_path()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    // Used up: no delay any more.
    let start = Instant::now();
    let r = get_blob(&c, &proxy).await;
    assert_eq!(r.bytes().await.unwrap().len(), BLOB_LEN);
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(proxy.fired(FaultKind::Delay), 2);
    assert_eq!(proxy.count(|r| r.fault == Some(FaultKind::Delay)), 2);
    // The timed-out request may still be forwarded after its delay; the first and last were.
    assert!(up.seen().len() >= 2);
}

#[tokio::test]
async fn drop_authorization_strips_the_header() {
    let (up, proxy) = setup().await;
    let c = client();
    on_blob_gets(&proxy, Fault::DropAuthorization { times: 1 });
    for _ in 0..2 {
        let r = c
            .get(at(&proxy.url(), &blob_path()))
            .header("authorization", "Bearer secret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].authorization, None);
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer secret"));
    // The proxy log records what the client sent, and which request lost it.
    let log = proxy.requests();
    assert!(log.iter().all(|r| r.had_authorization));
    assert_eq!(log[0].fault, Some(FaultKind::DropAuthorization));
    assert_eq!(log[1].fault, None);
    assert_eq!(proxy.fired(FaultKind::DropAuthorization), 1);
}

/// A Distribution storage root holding the test blob.
fn storage_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let hex = digest().trim_start_matches("sha256:").to_owned();
    let blob_dir = dir
        .path()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex);
    std::fs::create_dir_all(&blob_dir).unwrap();
    std::fs::write(blob_dir.join("data"), blob()).unwrap();
    dir
}

#[tokio::test]
async fn redirect_blobs_to_a_second_host() {
    let (up, _) = setup().await;
    let storage = storage_root();
    let proxy = FaultProxy::builder(up.url.clone())
        .blob_dir(storage.path())
        .start()
        .await;
    assert_ne!(proxy.redirect_host(), "127.0.0.1");
    let c = client();
    on_blob_gets(&proxy, Fault::RedirectBlobs { times: 3 });

    // A manifest GET is not redirected (it is not a blob), and does not use up the rule.
    let m = c
        .get(at(&proxy.url(), "/v2/test/repo/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 404);

    let r = c
        .get(at(&proxy.url(), &blob_path()))
        .header("authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let location = Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.host_str(), Some("127.0.0.2"));
    assert_eq!(location.port(), Some(proxy.redirect_addr().port()));
    assert_eq!(location.path(), format!("/blobs/{}", digest()));
    assert!(location.query().is_some());
    assert_eq!(
        up.seen().len(),
        1,
        "the redirected GET must not reach the upstream"
    );

    // Fetching with Authorization is recorded as such.
    let with = c
        .get(location.clone())
        .header("authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    assert_eq!(with.headers()["content-length"], "65536");
    assert_eq!(&with.bytes().await.unwrap()[..], &blob()[..]);
    // Without, it is not.
    let without = c.get(location.clone()).send().await.unwrap();
    assert_eq!(without.status(), 200);
    assert_eq!(without.bytes().await.unwrap().len(), BLOB_LEN);

    // Range: bytes=N- and bytes=N-M give 206 with the right slice; past the end gives 416.
    let ranges = [
        ("bytes=1000-", 206, "bytes 1000-65535/65536", Some(1000..BLOB_LEN)),
        ("bytes=100-199", 206, "bytes 100-199/65536", Some(100..200)),
        ("bytes=70000-", 416, "bytes */65536", None),
    ];
    for (range, status, content_range, slice) in ranges {
        let part = c
            .get(location.clone())
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), status, "{range}");
        assert_eq!(part.headers()["content-range"], content_range, "{range}");
        if let Some(slice) = slice {
            assert_eq!(
                part.headers()["content-length"],
                slice.len().to_string(),
                "{range}"
            );
            assert_eq!(&part.bytes().await.unwrap()[..], &blob()[slice], "{range}");
        }
    }

    let rec = proxy.redirect_requests();
    assert_eq!(rec.len(), 5);
    assert!(rec[0].had_authorization);
    assert_eq!(rec[0].authorization.as_deref(), Some("Bearer secret"));
    assert!(!rec[1].had_authorization);
    assert_eq!(rec[2].range.as_deref(), Some("bytes=1000-"));
    assert_eq!(
        rec.iter().map(|r| r.status.unwrap()).collect::<Vec<_>>(),
        vec![200, 200, 206, 206, 416]
    );
    assert_eq!(proxy.redirect_count(|r| r.had_authorization), 1);

    // A redirect-following reqwest client does not carry Authorization to the other host.
    let follow = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = follow
        .get(at(&proxy.url(), &blob_path()))
        .header("authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], &blob()[..]);
    let last = proxy.redirect_requests().pop().unwrap();
    assert!(!last.had_authorization);
    assert_eq!(last.status, Some(200));

    assert_eq!(proxy.fired(FaultKind::RedirectBlobs), 2);
    assert_eq!(proxy.count(|r| r.status == Some(307)), 2);
    assert_eq!(proxy.upstream_blob_gets(), 0);
}

#[tokio::test]
async fn redirect_without_blob_dir_fetches_from_upstream_and_can_reject_auth() {
    let up = Upstream::start().await;
    let proxy = FaultProxy::builder(up.url.clone())
        .redirect_rejects_authorization(true)
        .start()
        .await;
    let c = client();
    on_blob_gets(&proxy, Fault::RedirectBlobs { times: 1 });
    let r = c
        .get(at(&proxy.url(), &blob_path()))
        .header("authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let location = Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();

    let rejected = c
        .get(location.clone())
        .header("authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 400);
    let part = c
        .get(location.clone())
        .header("range", "bytes=65000-")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(&part.bytes().await.unwrap()[..], &blob()[65000..]);

    // The target used the redirected request's credentials, like a presigned URL.
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, blob_path());
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer secret"));
    let rec = proxy.redirect_requests();
    assert_eq!(
        rec.iter()
            .map(|r| (r.had_authorization, r.status, r.forwarded))
            .collect::<Vec<_>>(),
        vec![(true, Some(400), false), (false, Some(206), true)]
    );
}

/// Blocking HTTP/1.1 GET over std's TcpStream; returns the status line.
fn blocking_get_status(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn runs_on_its_own_runtime_and_stops_when_dropped() {
    let (_up, proxy) = setup().await;
    proxy.inject(Rule::new(Matcher::manifests(), Fault::status(503, 1)));
    // This blocks the test's only runtime thread: the proxy must answer anyway.
    let status = blocking_get_status(proxy.addr(), "/v2/test/repo/manifests/latest");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(proxy.count(|r| r.is_manifest() && r.status == Some(503)), 1);

    let addr = proxy.addr();
    drop(proxy);
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still listening after drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rewrite_points_the_token_realm_elsewhere() {
    let up = Upstream::start().await;
    let proxy = FaultProxy::builder(up.url.clone())
        .rewrite("http://127.0.0.1:1/token", "http://127.0.0.1:2/token")
        .rewrite("sig=abc", "sig=xyz")
        .start()
        .await;
    let c = client();
    let ping = c.get(at(&proxy.url(), "/v2/")).send().await.unwrap();
    assert_eq!(ping.status(), 401);
    assert_eq!(
        ping.headers()["www-authenticate"],
        r#"Bearer realm="http://127.0.0.1:2/token",service="reg",scope="repository:test/repo:pull""#
    );
    let redirect = c
        .get(at(&proxy.url(), "/v2/test/repo/redirect"))
        .send()
        .await
        .unwrap();
    let expected = format!("http://{}/v2/test/repo/blobs/{}?sig=xyz", proxy.host(), digest());
    assert_eq!(redirect.headers()["location"], expected.as_str());
}
