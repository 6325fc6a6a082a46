//! The cache's `/v2/` protocol checked directly with reqwest and raw sockets, as the
//! distribution spec words it: the API version header on every answer, manifest and blob
//! answers with their cache states, `HEAD`, refused writes with their `Allow`, bad names
//! and digests with their exact error codes, tag-list pages, Docker Hub names and virtual
//! hosts choosing routes, content kept under its repository.

use crate::common::{RunningProxy, http, route, wait_for_hit};
use crate::upstream::{Cached, Upstream, blob_digests, error_code, hand_made, header, hub_route};
use conformance::harness::fixtures;
use registry_proxy::UpstreamConfig;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LINK};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use url::Url;

/// `GET /v2/` and `HEAD /v2/`: the API version check.
#[tokio::test]
async fn version_check() {
    let cached = Cached::start().await;
    for request in [http().get(cached.url("")), http().head(cached.url(""))] {
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(response.headers(), "docker-distribution-api-version").as_deref(),
            Some("registry/2.0"),
            "{:?}",
            response.headers()
        );
    }
}

/// `Docker-Distribution-API-Version: registry/2.0` is on every answer, not
/// only `/v2/`: manifests (`GET`, `HEAD`), blobs, tag lists, and each kind
/// of error (404, 405, 400, the endpoints the cache does not serve).
#[tokio::test]
async fn every_answer_carries_the_api_version() {
    let cached = Cached::start().await;
    let client = http();
    let layer = &fixtures().single_oci.layers[0].digest;
    let cases = [
        (client.get(cached.url("single/oci/manifests/v1")), 200, None),
        (client.head(cached.url("single/oci/manifests/v1")), 200, None),
        (
            client.get(cached.url(&format!("single/oci/blobs/{layer}"))),
            200,
            None,
        ),
        (client.get(cached.url("tags/many/tags/list")), 200, None),
        (
            client.get(cached.url("single/oci/manifests/nope")),
            404,
            Some("MANIFEST_UNKNOWN"),
        ),
        (
            client.put(cached.url("single/oci/manifests/v2")).body("{}"),
            405,
            Some("UNSUPPORTED"),
        ),
        (
            client.get(cached.url("Single/oci/manifests/v1")),
            400,
            Some("NAME_INVALID"),
        ),
        (client.get(cached.url("_catalog")), 404, Some("UNSUPPORTED")),
        (
            client.get(format!("{}/not-the-api", cached.cache.url())),
            404,
            Some("NOT_FOUND"),
        ),
    ];
    for (request, status, code) in cases {
        let request = request.build().expect("request");
        let what = format!("{} {}", request.method(), request.url());
        let response = client.execute(request).await.expect("send");
        assert_eq!(
            header(response.headers(), "docker-distribution-api-version").as_deref(),
            Some("registry/2.0"),
            "{what}: {:?}",
            response.headers()
        );
        // The answer is the one meant: the header is not only on successes.
        match code {
            Some(code) => assert_eq!(
                error_code(response).await,
                (StatusCode::from_u16(status).expect("status"), code.to_owned()),
                "{what}"
            ),
            None => assert_eq!(response.status().as_u16(), status, "{what}"),
        }
    }
}

/// Manifests by tag and by digest: the registry's media type, digest,
/// length and bytes; `X-Cache` MISS, then HIT; `HEAD` the same headers and
/// no body; unknown query parameters ignored.
#[tokio::test]
async fn manifest_answers() {
    let cached = Cached::start().await;
    let client = http();
    for image in [&fixtures().single_oci, &fixtures().single_docker] {
        let tag = image.tag.as_deref().expect("a tag");
        let by_tag = cached.url(&format!("{}/manifests/{tag}", image.repository));
        let by_digest = cached.url(&format!("{}/manifests/{}", image.repository, image.digest));
        let check = |headers: &HeaderMap, cache: &str, what: &str| {
            assert_eq!(
                header(headers, "content-type").as_deref(),
                Some(image.media_type),
                "{what}"
            );
            assert_eq!(
                header(headers, "docker-content-digest").as_deref(),
                Some(image.digest.as_str()),
                "{what}"
            );
            assert_eq!(
                header(headers, "content-length"),
                Some(image.manifest.len().to_string()),
                "{what}"
            );
            assert_eq!(header(headers, "x-cache").as_deref(), Some(cache), "{what}");
        };
        for (cache, url) in [("MISS", &by_tag), ("HIT", &by_tag), ("HIT", &by_digest)] {
            let response = client.get(url).send().await.expect("GET");
            assert_eq!(response.status(), StatusCode::OK, "GET {url}");
            check(response.headers(), cache, &format!("GET {url}"));
            let body = response.bytes().await.expect("body");
            assert_eq!(body.as_ref(), image.manifest.as_ref(), "GET {url}");
        }
        for url in [&by_tag, &by_digest, &format!("{by_tag}?foo=bar&n=1&last=zz")] {
            let response = client.head(url).send().await.expect("HEAD");
            assert_eq!(response.status(), StatusCode::OK, "HEAD {url}");
            check(response.headers(), "HIT", &format!("HEAD {url}"));
            assert!(response.bytes().await.expect("body").is_empty());
        }
        let response = client
            .get(format!("{by_tag}?foo=bar&digest=sha256:00&ns="))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "unknown parameters");
        check(response.headers(), "HIT", "unknown parameters");
    }

    // A HEAD on a cold cache: the registry's answer, nothing fetched.
    let multi = &fixtures().multi_oci;
    let child = multi.child("linux/arm64/v8");
    for (url, media_type, digest, manifest) in [
        (
            cached.url("multi/oci/manifests/v1"),
            multi.media_type,
            &multi.digest,
            &multi.manifest,
        ),
        (
            cached.url(&format!("multi/oci/manifests/{}", child.digest)),
            child.media_type,
            &child.digest,
            &child.manifest,
        ),
    ] {
        let response = client.head(&url).send().await.expect("HEAD");
        assert_eq!(response.status(), StatusCode::OK, "HEAD {url}");
        let headers = response.headers();
        assert_eq!(header(headers, "x-cache").as_deref(), Some("MISS"), "HEAD {url}");
        assert_eq!(
            header(headers, "content-type").as_deref(),
            Some(media_type),
            "HEAD {url}"
        );
        assert_eq!(
            header(headers, "docker-content-digest").as_ref(),
            Some(digest),
            "HEAD {url}"
        );
        assert_eq!(
            header(headers, "content-length"),
            Some(manifest.len().to_string()),
            "HEAD {url}"
        );
        assert!(response.bytes().await.expect("body").is_empty());
    }
    let child_get = cached.url(&format!("multi/oci/manifests/{}", child.digest));
    let response = client.get(&child_get).send().await.expect("GET");
    assert_eq!(header(response.headers(), "x-cache").as_deref(), Some("MISS"));
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        child.manifest.as_ref()
    );
    let gets = cached
        .up
        .via_cache
        .count(|r| r.method == reqwest::Method::GET && r.is_manifest());
    assert_eq!(
        gets, 3,
        "one GET per manifest, for single/oci, single/docker and a child"
    );

    // Not there: the spec's error.
    let response = client
        .get(cached.url("single/oci/manifests/nope"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
}

/// Blobs: bytes, digest and length; MISS then HIT; `HEAD`; a `Range`.
#[tokio::test]
async fn blob_answers() {
    let cached = Cached::start().await;
    let client = http();
    let layer = &fixtures().single_oci.layers[0];
    let url = cached.url(&format!("single/oci/blobs/{}", layer.digest));

    let response = client.head(&url).send().await.expect("HEAD");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "x-cache").as_deref(), Some("MISS"));
    assert_eq!(
        header(response.headers(), "content-length"),
        Some(layer.size.to_string())
    );
    assert_eq!(
        cached.up.blob_gets(),
        Vec::<String>::new(),
        "a HEAD downloads nothing"
    );

    for cache in ["MISS", "HIT"] {
        if cache == "HIT" {
            // The first answer may end before the fill's commit does.
            wait_for_hit(&url).await;
        }
        let response = client.get(&url).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(header(&headers, "x-cache").as_deref(), Some(cache));
        assert_eq!(
            header(&headers, "docker-content-digest").as_deref(),
            Some(layer.digest.as_str())
        );
        assert_eq!(header(&headers, "content-length"), Some(layer.size.to_string()));
        assert_eq!(response.bytes().await.expect("body"), layer.data);
    }
    assert_eq!(cached.up.blob_gets(), vec![layer.digest.clone()], "fetched once");

    let response = client
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(response.headers(), CONTENT_RANGE.as_str()),
        Some(format!("bytes 10-19/{}", layer.size))
    );
    assert_eq!(
        header(response.headers(), CONTENT_LENGTH.as_str()).as_deref(),
        Some("10")
    );
    assert_eq!(response.bytes().await.expect("body"), layer.data.slice(10..20));

    let response = client.head(&url).send().await.expect("HEAD");
    assert_eq!(header(response.headers(), "x-cache").as_deref(), Some("HIT"));

    let missing = format!("sha256:{}", "0".repeat(64));
    let response = client
        .get(cached.url(&format!("single/oci/blobs/{missing}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into())
    );
}

/// Push and delete: `405 UNSUPPORTED`, and nothing reaches the registry.
#[tokio::test]
async fn writes_are_refused() {
    let cached = Cached::start().await;
    let client = http();
    let digest = &fixtures().single_oci.digest;
    let layer = &fixtures().single_oci.layers[0].digest;
    let requests = [
        client
            .put(cached.url("single/oci/manifests/v2"))
            .header(CONTENT_TYPE, fixtures().single_oci.media_type)
            .body(fixtures().single_oci.manifest.clone()),
        client.delete(cached.url(&format!("single/oci/manifests/{digest}"))),
        client.delete(cached.url(&format!("single/oci/blobs/{layer}"))),
        client.post(cached.url("single/oci/blobs/uploads/")),
        client.post(cached.url(&format!(
            "single/oci/blobs/uploads/?mount={layer}&from=single/docker"
        ))),
        client.patch(cached.url("single/oci/blobs/uploads/some-session")),
        client.put(cached.url(&format!("single/oci/blobs/uploads/some-session?digest={layer}"))),
        client.post(cached.url("single/oci/tags/list")),
        client.delete(cached.url("")),
    ];
    for request in requests {
        let request = request.build().expect("request");
        let what = format!("{} {}", request.method(), request.url());
        let response = client.execute(request).await.expect("send");
        assert_eq!(
            error_code(response).await,
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into()),
            "{what}"
        );
    }
    let asked = cached.up.via_cache.requests();
    assert!(asked.is_empty(), "a refused write reached upstream: {asked:#?}");
}

/// A raw HTTP/1.1 `GET` of `target`, exactly as written (HTTP clients
/// resolve `..` and `%2e%2e` before sending): the status and body.
async fn raw_get(host: &str, target: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The code of a raw answer's JSON error body (chunked or not: the JSON is
/// one chunk).
fn raw_error_code(body: &str) -> String {
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) if start < end => &body[start..=end],
        _ => panic!("no JSON error in {body:?}"),
    };
    let value: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    value["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
}

/// Bad digests are `400 DIGEST_INVALID`; names and tags that climb out of
/// the repository (`..`, encoded or not) are `400 NAME_INVALID` or
/// `TAG_INVALID`, and are never sent upstream.
#[tokio::test]
async fn bad_digests_and_names() {
    let cached = Cached::start().await;
    let client = http();
    for path in [
        "single/oci/blobs/sha256:xyz",
        "single/oci/blobs/sha256:ABCDEF",
        "single/oci/blobs/md5:00",
        "single/oci/blobs/sha256:..%2F..%2Fetc%2Fpasswd",
        "single/oci/manifests/sha256:xyz",
    ] {
        let response = client.get(cached.url(path)).send().await.expect("GET");
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()),
            "{path}"
        );
    }

    // Sent raw, so nothing resolves the `..` first; axum does not
    // normalise the path either, so every one of them reaches the name
    // checks: a `..` component is a bad name, a `..` reference a bad tag.
    let blob = &fixtures().single_oci.layers[0].digest;
    let host = cached.cache.host();
    for (target, code) in [
        ("/v2/../../etc/manifests/v1".to_owned(), "NAME_INVALID"),
        ("/v2/a/%2e%2e/b/manifests/v1".to_owned(), "NAME_INVALID"),
        ("/v2/a/../b/manifests/v1".to_owned(), "NAME_INVALID"),
        (
            "/v2/single/oci/../../single/oci/manifests/v1".to_owned(),
            "NAME_INVALID",
        ),
        (
            "/v2/%2e%2e/%2e%2e/etc/passwd/manifests/v1".to_owned(),
            "NAME_INVALID",
        ),
        ("/v2/..%2f..%2fetc/manifests/v1".to_owned(), "NAME_INVALID"),
        (format!("/v2/../single/oci/blobs/{blob}"), "NAME_INVALID"),
        (format!("/v2/single/%2E%2E/oci/blobs/{blob}"), "NAME_INVALID"),
        ("/v2/../single/oci/tags/list".to_owned(), "NAME_INVALID"),
        ("/v2/single/oci/manifests/..%2f..%2fetc".to_owned(), "TAG_INVALID"),
        ("/v2/single/oci/manifests/..".to_owned(), "TAG_INVALID"),
        // A bogus digest that climbs is a bad digest, whatever its path.
        (
            "/v2/single/oci/blobs/sha256:..%2f..%2fetc%2fpasswd".to_owned(),
            "DIGEST_INVALID",
        ),
        (
            "/v2/single/oci/blobs/sha256:../../etc".to_owned(),
            "DIGEST_INVALID",
        ),
    ] {
        let (status, body) = raw_get(&host, &target).await;
        assert_eq!(
            (status, raw_error_code(&body)),
            (400, code.to_owned()),
            "GET {target}: {body}"
        );
    }
    let asked: Vec<_> = cached
        .up
        .via_cache
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("..") || r.path.to_ascii_lowercase().contains("%2e"))
        .collect();
    assert!(asked.is_empty(), "a climbing name reached upstream: {asked:#?}");
}

/// `?ns=` naming a registry the cache has no route for: `404 NAME_UNKNOWN`,
/// not the default route; the namespace is echoed in `OCI-Namespace`.
#[tokio::test]
async fn unknown_namespace() {
    let cached = Cached::start().await;
    let client = http();
    let fixture = &fixtures().single_oci;
    for path in [
        "single/oci/manifests/v1".to_owned(),
        format!("single/oci/blobs/{}", fixture.layers[0].digest),
        "single/oci/tags/list".to_owned(),
    ] {
        let url = format!("{}?ns=registry.example.com", cached.url(&path));
        let response = client.get(&url).send().await.expect("GET");
        assert_eq!(
            header(response.headers(), "oci-namespace").as_deref(),
            Some("registry.example.com"),
            "{url}"
        );
        assert_eq!(
            error_code(response).await,
            (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into()),
            "{url}"
        );
    }
    let asked = cached.up.via_cache.requests();
    assert!(asked.is_empty(), "an unknown namespace went upstream: {asked:#?}");

    // The cache's own registry by ns= works, and is echoed too.
    let ns = cached.up.via_cache.host();
    let response = client
        .get(format!("{}?ns={ns}", cached.url("single/oci/manifests/v1")))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "oci-namespace"), Some(ns));
}

/// The next page's URL from a `Link: <…>; rel="next"` header, if any.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = header(headers, LINK.as_str())?;
    assert!(link.contains("rel=\"next\""), "{link}");
    let start = link.find('<').expect("<") + 1;
    let end = link.find('>').expect(">");
    Some(link[start..end].to_owned())
}

/// Follows a tag list's pages from `first` and returns each page's tags.
async fn tag_pages(cache: &str, first: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let client = http();
    let base = Url::parse(cache).expect("cache URL");
    let (mut pages, mut links) = (Vec::new(), Vec::new());
    let mut next = Some(first.to_owned());
    while let Some(url) = next.take() {
        assert!(pages.len() < 10, "too many pages");
        let response = client
            .get(base.join(&url).expect("URL"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        next = next_link(response.headers());
        links.extend(next.clone());
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["name"], "tags/many", "{url}");
        let tags = body["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .map(|t| t.as_str().expect("a tag").to_owned())
            .collect();
        pages.push(tags);
    }
    (pages, links)
}

/// Tag lists, paged by the cache (Distribution does not page them):
/// `?n=10` gives t00..t09 and a `Link` to the next page, which keeps the
/// route's prefix or `ns=`; `last` starts after a tag; a bad `n` is refused.
#[tokio::test]
async fn tag_list_pages() {
    let cached = Cached::start().await;
    let expected: Vec<Vec<String>> = fixtures().tags.tags.chunks(10).map(<[String]>::to_vec).collect();
    let cache = cached.cache.url();
    let ns = cached.up.via_cache.host();
    let prefix = ns.replace(':', "-");

    let (pages, links) = tag_pages(&cache, "/v2/tags/many/tags/list?n=10").await;
    assert_eq!(pages, expected);
    assert_eq!(
        links,
        [
            "/v2/tags/many/tags/list?n=10&last=t09",
            "/v2/tags/many/tags/list?n=10&last=t19"
        ]
    );

    let (pages, links) = tag_pages(&cache, &format!("/v2/{prefix}/tags/many/tags/list?n=10")).await;
    assert_eq!(pages, expected, "by prefix");
    assert!(
        links
            .iter()
            .all(|l| l.starts_with(&format!("/v2/{prefix}/tags/many/tags/list?"))),
        "{links:?}"
    );

    let (pages, links) = tag_pages(&cache, &format!("/v2/tags/many/tags/list?n=10&ns={ns}")).await;
    assert_eq!(pages, expected, "by ns=");
    assert!(
        links
            .iter()
            .all(|l| l.contains(&format!("ns={ns}")) || l.contains(&format!("ns={}", ns.replace(':', "%3A")))),
        "{links:?}"
    );

    let (pages, _) = tag_pages(&cache, "/v2/tags/many/tags/list").await;
    assert_eq!(pages, [fixtures().tags.tags.clone()], "no n: every tag, sorted");
    let (pages, _) = tag_pages(&cache, "/v2/tags/many/tags/list?last=t22").await;
    assert_eq!(pages, [vec!["t23".to_owned(), "t24".to_owned()]]);
    let (pages, _) = tag_pages(&cache, "/v2/tags/many/tags/list?n=5&last=t22").await;
    assert_eq!(pages, [vec!["t23".to_owned(), "t24".to_owned()]]);

    let response = http()
        .get(format!("{cache}/v2/tags/many/tags/list?n=ten"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(response).await,
        (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID".into())
    );
    let response = http()
        .get(format!("{cache}/v2/no/such/repository/tags/list"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
}

/// Names are normalised as docker references against the route's registry
/// (`alpine` on Docker Hub is `library/alpine`); a route's `hosts` select it
/// by the `Host` header, whatever its case and port.
#[tokio::test]
async fn docker_hub_names_and_virtual_hosts() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Docker Hub's route fetches through `via_cache`; the route chosen by
    // `Host: mirror.test` is the registry behind `direct`.
    let mut by_host = route(&up.direct.host());
    by_host.hosts = vec!["mirror.test".into()];
    let cache = RunningProxy::start(&hand_made(dir.path(), vec![hub_route(&up.via_cache), by_host]));
    let client = http();
    let get = |path: &str, host: Option<&str>| {
        let mut request = client.get(format!("{}/v2/{path}", cache.url()));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    let single = &fixtures().single_oci;

    for path in ["single/oci/manifests/v1", "docker.io/single/oci/manifests/v1"] {
        let response = get(path, None).await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.bytes().await.expect("body"), single.manifest, "{path}");
    }
    for path in ["alpine/manifests/latest", "library/alpine/manifests/latest"] {
        let response = get(path, None).await.expect("GET");
        assert_eq!(
            error_code(response).await,
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into()),
            "{path}"
        );
    }
    let asked: Vec<String> = up
        .via_cache
        .requests()
        .iter()
        .filter(|r| r.path.contains("alpine"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        !asked.is_empty() && asked.iter().all(|p| p == "/v2/library/alpine/manifests/latest"),
        "{asked:?}"
    );
    assert!(up.direct.requests().is_empty());

    up.via_cache.clear_log();
    for host in ["mirror.test", "MIRROR.test:5000"] {
        let response = get("single/oci/manifests/v1", Some(host)).await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "Host: {host}");
        assert_eq!(response.bytes().await.expect("body"), single.manifest);
    }
    assert!(
        up.direct.count(|r| r.is_manifest()) > 0,
        "the Host route's registry was asked"
    );
    assert!(up.via_cache.requests().is_empty(), "Docker Hub's route was asked");
}

/// A bad repository name is `NAME_INVALID`, whatever words it contains.
#[tokio::test]
async fn invalid_names_are_name_invalid() {
    let cached = Cached::start().await;
    let blob = &fixtures().single_oci.layers[0].digest;
    let mut wrong = Vec::new();
    for path in [
        "Single/oci/manifests/v1".to_owned(),
        "tags/Many/manifests/v1".to_owned(),
        "vintage/Cars/manifests/v1".to_owned(),
        "digest/Many/manifests/v1".to_owned(),
        format!("tags/Many/blobs/{blob}"),
        "tags/Many/tags/list".to_owned(),
        "tags/many/_x/tags/list".to_owned(),
    ] {
        let response = http().get(cached.url(&path)).send().await.expect("GET");
        let (status, code) = error_code(response).await;
        if (status, code.as_str()) != (StatusCode::BAD_REQUEST, "NAME_INVALID") {
            wrong.push(format!("GET /v2/{path}: {status} {code}"));
        }
    }
    assert!(wrong.is_empty(), "not 400 NAME_INVALID: {wrong:#?}");
}

/// A `405` names the methods the resource does allow (RFC 9110 §15.5.6):
/// every case here is refused with `405`, and `Allow` lists exactly the
/// resource's methods, never none. The upload endpoints answer `GET` and
/// `HEAD` (an upload's status: `404 BLOB_UPLOAD_UNKNOWN`, as Distribution
/// says of one it never started) and refuse starting or sending one.
#[tokio::test]
async fn refusals_name_the_allowed_methods() {
    let cached = Cached::start().await;
    let client = http();
    let mut wrong = Vec::new();
    for (request, allowed) in [
        (client.head(cached.url("tags/many/tags/list")), "GET"),
        (client.post(cached.url("tags/many/tags/list")), "GET"),
        (client.delete(cached.url("single/oci/manifests/v1")), "GET, HEAD"),
        (client.post(cached.url("single/oci/manifests/v1")), "GET, HEAD"),
        (client.post(cached.url("single/oci/blobs/uploads/")), "GET, HEAD"),
        (
            client.patch(cached.url("single/oci/blobs/uploads/some-session")),
            "GET, HEAD",
        ),
        (
            client.put(cached.url("single/oci/blobs/uploads/some-session?digest=sha256:00")),
            "GET, HEAD",
        ),
    ] {
        let request = request.build().expect("request");
        let what = format!("{} {}", request.method(), request.url());
        let method = request.method().as_str().to_owned();
        let response = client.execute(request).await.expect("send");
        let status = response.status();
        let allow = header(response.headers(), "allow");
        if status != StatusCode::METHOD_NOT_ALLOWED {
            wrong.push(format!("{what}: {status}, not 405"));
        } else if allow.as_deref() != Some(allowed) {
            wrong.push(format!("{what}: 405 with Allow {allow:?}, not {allowed:?}"));
        } else if allow
            .iter()
            .flat_map(|a| a.split(','))
            .any(|m| m.trim() == method)
        {
            wrong.push(format!("{what}: refused a method it says it allows"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    for path in [
        "single/oci/blobs/uploads/",
        "single/oci/blobs/uploads/some-session",
    ] {
        let response = client.get(cached.url(path)).send().await.expect("GET");
        let (status, code) = error_code(response).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            "{path}"
        );
    }
}

/// Content is served under the repositories that hold it: Distribution
/// answers `404 MANIFEST_UNKNOWN` (`BLOB_UNKNOWN`) for a digest that the
/// named repository does not have.
#[tokio::test]
async fn content_is_served_only_under_its_repository() {
    let cached = Cached::start().await;
    let client = http();
    let image = &fixtures().single_oci;
    let layer = &image.layers[0].digest;
    // Cached under single/oci.
    for path in [
        "single/oci/manifests/v1".to_owned(),
        format!("single/oci/blobs/{layer}"),
    ] {
        let response = client.get(cached.url(&path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.bytes().await.expect("body");
    }
    let mut wrong = Vec::new();
    for (path, code) in [
        (
            format!("no/such/repo/manifests/{}", image.digest),
            "MANIFEST_UNKNOWN",
        ),
        (format!("no/such/repo/blobs/{layer}"), "BLOB_UNKNOWN"),
        (
            format!("single/docker/manifests/{}", image.digest),
            "MANIFEST_UNKNOWN",
        ),
    ] {
        let response = client.get(cached.url(&path)).send().await.expect("GET");
        let (status, x_cache) = (response.status(), header(response.headers(), "x-cache"));
        if status != StatusCode::NOT_FOUND {
            wrong.push(format!(
                "GET /v2/{path}: {status}, X-Cache {x_cache:?}, not 404 {code}"
            ));
        } else {
            assert_eq!(error_code(response).await.1, code, "GET /v2/{path}");
        }
    }
    assert!(
        wrong.is_empty(),
        "served under a repository that does not hold it: {wrong:#?}"
    );
}

/// Virtual hosts by suffix: with `vhost_suffix = "cache.test"`, a request
/// with `Host: registry.test.cache.test:<port>` goes to the route of
/// `registry.test`, not to the default route. A whole pull (manifest by tag,
/// config, layers) by that name gets the registry's bytes, fetched through
/// that route's upstream; the same paths without the virtual host reach the
/// default route's upstream instead.
#[tokio::test]
async fn a_virtual_host_by_suffix_selects_its_registry_route() {
    let (up, other) = tokio::join!(Upstream::start(), Upstream::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut default = route(&other.via_cache.host());
    default.default = true;
    // A registry with a DNS name (a port cannot be part of one), whose
    // content comes from the recording proxy.
    let mut by_suffix = route("registry.test");
    by_suffix.mirror_only = true;
    by_suffix.mirrors = vec![UpstreamConfig {
        url: format!("http://{}", up.via_cache.host()),
        credentials: None,
        insecure: true,
    }];
    let mut config = hand_made(dir.path(), vec![default, by_suffix]);
    config.vhost_suffix = Some("cache.test".into());
    let cache = RunningProxy::start(&config);
    let address: std::net::SocketAddr = cache.host().parse().expect("address");
    // The client names the cache `registry.test.cache.test` (as DNS would),
    // so it sends that `Host` header itself.
    let vhost = reqwest::Client::builder()
        .no_proxy()
        .resolve("registry.test.cache.test", address)
        .build()
        .expect("HTTP client");
    let base = format!("http://registry.test.cache.test:{}/v2", address.port());
    let single = &fixtures().single_oci;

    let response = vhost
        .get(format!("{base}/single/oci/manifests/v1"))
        .header("accept", single.media_type)
        .send()
        .await
        .expect("GET the manifest");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "docker-content-digest").as_deref(),
        Some(single.digest.as_str())
    );
    let manifest: Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("a JSON manifest");
    let mut blobs = vec![manifest["config"]["digest"].as_str().expect("config").to_owned()];
    blobs.extend(
        manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("layer digest").to_owned()),
    );
    for digest in &blobs {
        let response = vhost
            .get(format!("{base}/single/oci/blobs/{digest}"))
            .send()
            .await
            .expect("GET a blob");
        assert_eq!(response.status(), StatusCode::OK, "{digest}");
        assert_eq!(
            Some(response.bytes().await.expect("body")),
            fixtures().blob(digest),
            "{digest}"
        );
    }
    assert_eq!(
        up.blob_gets(),
        blob_digests([single]),
        "fetched by the vhost's route"
    );
    assert!(
        up.via_cache
            .count(|r| r.path.starts_with("/v2/single/oci/manifests/"))
            > 0,
        "the vhost's upstream was not asked for the manifest: {:#?}",
        up.via_cache.requests()
    );
    let asked = other.via_cache.requests();
    assert!(asked.is_empty(), "the default route was used: {asked:#?}");

    // The same request by the cache's address: the default route answers.
    up.via_cache.clear_log();
    let response = http()
        .get(format!("{}/v2/single/oci/manifests/v1", cache.url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        other.via_cache.count(|r| r.is_manifest()) > 0,
        "the default route's upstream"
    );
    assert!(
        up.via_cache.requests().is_empty(),
        "the vhost route without its Host"
    );
}
