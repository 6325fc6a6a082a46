//! Cases for the metadata API: ping, manifests, configs, platforms, tags, catalog, cache.

use std::collections::BTreeSet;
use std::time::Duration;

use registry_client::error::Resource;
use registry_client::{Error, ManifestKind, RepositoryClient};

use super::env::SuiteEnv;
use crate::harness::fault_proxy::RecordedRequest;
use crate::harness::{ImageFixture, IndexFixture};

pub async fn ping(client: &RepositoryClient, env: &SuiteEnv) {
    client.ping(&env.target.registry_name).await.expect("ping");
    let pings = env.proxy.count(|r| r.path == "/v2/" && r.status == Some(200));
    assert_eq!(pings, 1, "one successful GET /v2/ reached the registry");
}

async fn check_head(client: &RepositoryClient, env: &SuiteEnv, fixture: &ImageFixture) {
    let head = client
        .head_manifest(&env.image(fixture))
        .await
        .expect("HEAD manifest");
    assert_eq!(head.digest, fixture.digest);
    assert_eq!(head.media_type, fixture.media_type);
    assert_eq!(head.size, fixture.manifest.len() as u64);
    assert_eq!(
        env.proxy.count(|r| r.method == "GET" && r.is_manifest()),
        0,
        "HEAD only"
    );
}

pub async fn head_manifest_oci(client: &RepositoryClient, env: &SuiteEnv) {
    check_head(client, env, &env.fixtures().single_oci).await;
}

pub async fn head_manifest_docker(client: &RepositoryClient, env: &SuiteEnv) {
    check_head(client, env, &env.fixtures().single_docker).await;
}

async fn check_image_manifest(client: &RepositoryClient, env: &SuiteEnv, fixture: &ImageFixture) {
    let reference = env.image(fixture);
    let manifest = client.get_manifest(&reference).await.expect("GET manifest");
    assert_eq!(manifest.bytes, fixture.manifest, "exact bytes as served");
    assert_eq!(manifest.descriptor.digest, fixture.digest);
    assert_eq!(manifest.descriptor.media_type, fixture.media_type);
    let ManifestKind::Image(image) = &manifest.kind else {
        panic!("{reference} parsed as an index");
    };
    assert_eq!(image.config().digest().to_string(), fixture.config_digest);
    assert_eq!(image.config().media_type().to_string(), fixture.config_media_type);
    let layers: Vec<(String, u64)> = image
        .layers()
        .iter()
        .map(|l| (l.digest().to_string(), l.size()))
        .collect();
    let expected: Vec<(String, u64)> = fixture
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.size))
        .collect();
    assert_eq!(layers, expected);
}

pub async fn get_manifest_oci(client: &RepositoryClient, env: &SuiteEnv) {
    check_image_manifest(client, env, &env.fixtures().single_oci).await;
}

pub async fn get_manifest_docker(client: &RepositoryClient, env: &SuiteEnv) {
    check_image_manifest(client, env, &env.fixtures().single_docker).await;
}

pub async fn get_manifest_many_layers(client: &RepositoryClient, env: &SuiteEnv) {
    let fixture = &env.fixtures().many_layers;
    assert!(fixture.layers.len() >= 30);
    check_image_manifest(client, env, fixture).await;
}

pub async fn get_manifest_nested_name(client: &RepositoryClient, env: &SuiteEnv) {
    let fixture = &env.fixtures().nested;
    assert_eq!(fixture.repository, "a/b/c/d");
    check_image_manifest(client, env, fixture).await;
}

pub async fn get_manifest_by_digest(client: &RepositoryClient, env: &SuiteEnv) {
    let fixture = &env.fixtures().single_oci;
    let reference = env
        .image(fixture)
        .with_digest(&fixture.digest)
        .expect("digest reference");
    let manifest = client.get_manifest(&reference).await.expect("GET by digest");
    assert_eq!(manifest.bytes, fixture.manifest);
    let head = client.head_manifest(&reference).await.expect("HEAD by digest");
    assert_eq!(head.digest, fixture.digest);
    let asked = env
        .proxy
        .count(|r| r.is_manifest() && r.path.ends_with(&fixture.digest));
    assert!(asked >= 1, "the registry was asked by digest");
}

async fn check_index(client: &RepositoryClient, env: &SuiteEnv, fixture: &IndexFixture) {
    let manifest = client.get_manifest(&env.index(fixture)).await.expect("GET index");
    assert_eq!(manifest.bytes, fixture.manifest);
    assert_eq!(manifest.descriptor.digest, fixture.digest);
    assert_eq!(manifest.descriptor.media_type, fixture.media_type);
    let ManifestKind::Index(index) = &manifest.kind else {
        panic!("{} parsed as an image", fixture.repository);
    };
    let digests: Vec<String> = index.manifests().iter().map(|d| d.digest().to_string()).collect();
    let expected: Vec<String> = fixture.children.iter().map(|c| c.digest.clone()).collect();
    assert_eq!(digests, expected);
}

pub async fn get_index_oci(client: &RepositoryClient, env: &SuiteEnv) {
    check_index(client, env, &env.fixtures().multi_oci).await;
}

pub async fn get_manifest_list_docker(client: &RepositoryClient, env: &SuiteEnv) {
    check_index(client, env, &env.fixtures().multi_docker).await;
}

/// Every fixture platform, asked for under its usual aliases, picks the right child.
pub async fn platform_selection(_client: &RepositoryClient, env: &SuiteEnv) {
    let asked = [
        ("linux/x86_64", 0),
        ("linux/aarch64", 1),
        ("linux/arm64/v8", 1),
        ("linux/arm", 2),
    ];
    for index in [&env.fixtures().multi_oci, &env.fixtures().multi_docker] {
        for (platform, child) in asked {
            let expected = &index.children[child];
            let client = env.builder().platform(platform).build().expect("client");
            let reference = env.index(index);
            let manifest = client
                .get_image_manifest(&reference)
                .await
                .expect("platform manifest");
            assert_eq!(
                manifest.descriptor.digest, expected.digest,
                "{platform} of {reference}"
            );
            let config = client.get_config(&reference).await.expect("platform config");
            assert_eq!(config.digest, expected.config_digest);
            assert_eq!(
                config.config.architecture().to_string(),
                expected.platform.architecture
            );
            assert_eq!(
                config.config.variant().as_deref(),
                expected.platform.variant.as_deref()
            );
        }
    }
}

pub async fn no_matching_platform(_client: &RepositoryClient, env: &SuiteEnv) {
    let client = env.builder().platform("linux/s390x").build().expect("client");
    let err = client
        .get_image_manifest(&env.index(&env.fixtures().multi_oci))
        .await
        .expect_err("no s390x child");
    match &err {
        Error::NoMatchingPlatform { requested, available } => {
            assert_eq!(requested, "linux/s390x");
            assert_eq!(available, &["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
        }
        other => panic!("expected NoMatchingPlatform, got {other:?}"),
    }
    assert!(err.to_string().contains("linux/arm64/v8"), "{err}");
}

pub async fn get_config(client: &RepositoryClient, env: &SuiteEnv) {
    for fixture in [&env.fixtures().single_oci, &env.fixtures().single_docker] {
        let config = client.get_config(&env.image(fixture)).await.expect("config");
        assert_eq!(config.digest, fixture.config_digest);
        assert_eq!(config.bytes, fixture.config);
        assert_eq!(config.config.os().to_string(), fixture.platform.os);
        assert_eq!(
            config.config.architecture().to_string(),
            fixture.platform.architecture
        );
        let diff_ids: Vec<&String> = config.config.rootfs().diff_ids().iter().collect();
        let expected: Vec<&String> = fixture.layers.iter().map(|l| &l.diff_id).collect();
        assert_eq!(diff_ids, expected);
    }
}

pub async fn manifest_not_found(client: &RepositoryClient, env: &SuiteEnv) {
    let missing_tag = env.reference("single/oci:no-such-tag");
    match client.get_manifest(&missing_tag).await {
        Err(Error::NotFound {
            what,
            name,
            reference,
        }) => {
            assert_eq!(
                (what, name.as_str(), reference.as_str()),
                (Resource::Manifest, "single/oci", "no-such-tag")
            );
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let missing_repo = env.reference("no/such/repo:v1");
    let err = client
        .head_manifest(&missing_repo)
        .await
        .expect_err("no such repository");
    assert!(err.is_not_found(), "{err:?}");
    let digest = format!("sha256:{}", "0".repeat(64));
    let missing_digest = env
        .image(&env.fixtures().single_oci)
        .with_digest(&digest)
        .expect("ref");
    let err = client
        .get_manifest(&missing_digest)
        .await
        .expect_err("no such digest");
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains(&digest), "{err}");
    let not_found_requests = env.proxy.count(|r| r.status == Some(404));
    assert_eq!(not_found_requests, 3, "a 404 is never retried");
}

pub async fn list_tags(client: &RepositoryClient, env: &SuiteEnv) {
    let tags = client
        .list_tags(&env.image(&env.fixtures().single_oci))
        .await
        .expect("tags");
    assert_eq!(tags, ["v1"]);
    let many = &env.fixtures().tags;
    let mut tags = client
        .list_tags(&env.reference(&format!("{}:x", many.repository)))
        .await
        .expect("tags");
    tags.sort();
    assert_eq!(tags, many.tags);
    let err = client
        .list_tags(&env.reference("no/such/repo:v1"))
        .await
        .expect_err("missing repo");
    assert!(err.is_not_found(), "{err:?}");
}

/// Tags a page at a time: asked for the 25 tags of `tags/many` in pages of 10
/// (`?n=10`), the endpoint answers 10 and a `Link` to the next page; the client,
/// with a page size of 10, follows the links and lists every tag once. The raw
/// request carries the target's credentials as Basic auth, enough for the
/// endpoints with this capability today (the cache, without auth).
pub async fn tags_paginated(_client: &RepositoryClient, env: &SuiteEnv) {
    let many = &env.fixtures().tags;
    let url = env
        .target
        .endpoint
        .join(&format!("v2/{}/tags/list?n=10", many.repository))
        .expect("URL");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    let mut request = http.get(url);
    if let Some((user, password)) = &env.target.credentials {
        request = request.basic_auth(user, Some(password));
    }
    let first = request.send().await.expect("GET tags/list?n=10");
    assert_eq!(first.status(), 200, "GET tags/list?n=10");
    let link = first
        .headers()
        .get("link")
        .map(|v| v.to_str().expect("an ASCII Link").to_owned())
        .unwrap_or_default();
    assert!(link.contains("rel=\"next\""), "a Link to the next page: {link:?}");
    let page: serde_json::Value = first.json().await.expect("a JSON tag list");
    let on_page = page["tags"].as_array().map_or(0, Vec::len);
    assert_eq!(on_page, 10, "the first page: {page}");

    let client = env.builder().page_size(10).build().expect("client");
    let mut tags = client
        .list_tags(&env.reference(&format!("{}:x", many.repository)))
        .await
        .expect("tags");
    tags.sort();
    assert_eq!(tags, many.tags, "every tag once, across the pages");
}

/// The catalog in pages of 3, following `Link` headers to the end.
pub async fn catalog_paginated(_client: &RepositoryClient, env: &SuiteEnv) {
    let client = env.builder().page_size(3).build().expect("client");
    let repositories = client.catalog(&env.target.registry_name).await.expect("catalog");
    let unique: BTreeSet<&String> = repositories.iter().collect();
    assert_eq!(
        unique.len(),
        repositories.len(),
        "no repository twice: {repositories:?}"
    );
    let f = env.fixtures();
    for expected in [
        &f.single_oci.repository,
        &f.single_docker.repository,
        &f.multi_oci.repository,
        &f.multi_docker.repository,
        &f.many_layers.repository,
        &f.nested.repository,
        &f.tags.repository,
    ] {
        assert!(repositories.contains(expected), "{expected} in {repositories:?}");
    }
    let pages = env
        .proxy
        .count(|r| r.path == "/v2/_catalog" && r.status == Some(200));
    assert!(
        pages >= repositories.len().div_ceil(3),
        "{pages} pages for {} repositories",
        repositories.len()
    );
}

/// Tag lists and tag→digest answers are reused within the TTL; content by digest always.
pub async fn response_cache(_client: &RepositoryClient, env: &SuiteEnv) {
    let client = env
        .builder()
        .cache_ttl(Duration::from_millis(700))
        .build()
        .expect("client");
    let fixture = &env.fixtures().single_oci;
    let reference = env.image(fixture);
    let tag_lists = |r: &RecordedRequest| r.path.ends_with("/tags/list") && r.status == Some(200);
    let manifest_gets = |r: &RecordedRequest| r.method == "GET" && r.is_manifest() && r.status == Some(200);

    for _ in 0..3 {
        client.list_tags(&reference).await.expect("tags");
        client.get_manifest(&reference).await.expect("manifest");
    }
    assert_eq!(env.proxy.count(tag_lists), 1);
    assert_eq!(env.proxy.count(manifest_gets), 1);

    let by_digest = reference.with_digest(&fixture.digest).expect("ref");
    client.get_manifest(&by_digest).await.expect("by digest");
    assert_eq!(env.proxy.count(manifest_gets), 1, "content cached by digest");

    tokio::time::sleep(Duration::from_millis(800)).await;
    client.list_tags(&reference).await.expect("tags");
    client.get_manifest(&reference).await.expect("manifest");
    assert_eq!(env.proxy.count(tag_lists), 2, "tag list expired");
    assert_eq!(env.proxy.count(manifest_gets), 2, "tag→digest expired");
    client.get_manifest(&by_digest).await.expect("by digest");
    assert_eq!(env.proxy.count(manifest_gets), 2, "content by digest has no TTL");

    let uncached = env.builder().no_cache().build().expect("client");
    uncached.list_tags(&reference).await.expect("tags");
    uncached.list_tags(&reference).await.expect("tags");
    assert_eq!(env.proxy.count(tag_lists), 4, "no_cache asks every time");
}
