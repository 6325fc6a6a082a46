//! The harness itself works: a real Distribution registry in each auth mode, the token
//! server, and the fixtures. Plain reqwest only.

use conformance::harness::fixtures::OCI_MANIFEST;
use conformance::harness::{AuthMode, Fixtures, ImageFixture, TestRegistry, sha256_digest};
use reqwest::StatusCode;
use std::collections::HashMap;
use std::time::Duration;

/// Every manifest type, as a pulling client would send.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn manifest_url(registry: &TestRegistry, repo: &str, reference: &str) -> String {
    format!("{}/v2/{repo}/manifests/{reference}", registry.url())
}

/// Asserts a manifest answer is exactly the fixture's bytes, digest and media type.
async fn assert_manifest(res: reqwest::Response, digest: &str, media_type: &str, body: &[u8]) {
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["docker-content-digest"], digest);
    assert_eq!(res.headers()["content-type"], media_type);
    assert_eq!(&res.bytes().await.unwrap()[..], body);
}

/// `key="value"` pairs of a `WWW-Authenticate` challenge after the scheme.
fn challenge_params(header: &str) -> HashMap<String, String> {
    let (_, params) = header.split_once(' ').unwrap();
    params
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Fetches a token from the token server like a client would.
async fn fetch_token(registry: &TestRegistry, scope: &str, creds: Option<(&str, &str)>) -> reqwest::Response {
    let server = registry.token_server().unwrap();
    let mut req = client()
        .get(server.realm())
        .query(&[("service", server.service()), ("scope", scope)]);
    if let Some((user, password)) = creds {
        req = req.basic_auth(user, Some(password));
    }
    req.send().await.unwrap()
}

/// The token server's JSON answer for the plain user.
async fn token_answer(registry: &TestRegistry, scope: &str) -> serde_json::Value {
    let (user, password) = registry.credentials().unwrap();
    let res = fetch_token(registry, scope, Some((&user, &password))).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn token_for(registry: &TestRegistry, scope: &str) -> String {
    let answer = token_answer(registry, scope).await;
    answer["token"].as_str().unwrap().to_string()
}

/// GET the `single/oci:v1` manifest with a bearer token.
async fn get_with_token(registry: &TestRegistry, token: &str) -> reqwest::Response {
    client()
        .get(manifest_url(registry, "single/oci", "v1"))
        .header("accept", ACCEPT)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn none_serves_every_fixture_with_its_digest() {
    let registry = TestRegistry::start(AuthMode::None).await;
    assert_eq!(registry.auth_mode(), AuthMode::None);
    assert!(registry.credentials().is_none() && registry.token_server().is_none());
    let fx = registry.fixtures();
    let get = |repo: &str, reference: &str| {
        client()
            .get(manifest_url(&registry, repo, reference))
            .header("accept", ACCEPT)
            .send()
    };

    let single = &fx.single_oci;
    let res = get("single/oci", "v1").await.unwrap();
    assert_manifest(res, &single.digest, OCI_MANIFEST, &single.manifest).await;

    let tagged = [&fx.single_docker, &fx.many_layers, &fx.nested, &fx.tags.image];
    for image in tagged {
        let res = get(&image.repository, image.tag.as_deref().unwrap())
            .await
            .unwrap();
        assert_manifest(res, &image.digest, image.media_type, &image.manifest).await;
    }
    for index in [&fx.multi_oci, &fx.multi_docker] {
        let res = get(&index.repository, &index.tag).await.unwrap();
        assert_manifest(res, &index.digest, index.media_type, &index.manifest).await;
        for child in &index.children {
            let res = get(&child.repository, &child.digest).await.unwrap();
            assert_manifest(res, &child.digest, child.media_type, &child.manifest).await;
        }
    }
    for tag in &fx.tags.tags {
        let res = get(&fx.tags.repository, tag).await.unwrap();
        assert_eq!(
            res.headers()["docker-content-digest"],
            fx.tags.image.digest.as_str()
        );
    }

    // Blobs are served and sit where root_dir()/blob_path() say (the fault proxy reads them).
    let layer = &single.layers[0];
    let url = format!("{}/v2/single/oci/blobs/{}", registry.url(), layer.digest);
    let body = client().get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(body, layer.data);
    assert!(registry.blob_path(&layer.digest).starts_with(registry.root_dir()));
    assert_eq!(
        std::fs::read(registry.blob_path(&layer.digest)).unwrap(),
        layer.data
    );
}

#[tokio::test]
async fn catalog_lists_every_repository_and_paginates() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let expected = registry.fixtures().repositories();
    let mut url = format!("{}/v2/_catalog?n=3", registry.url());
    let mut seen = Vec::new();
    for _ in 0..10 {
        let res = client().get(&url).send().await.unwrap();
        let next = res.headers().get("link").map(|l| l.to_str().unwrap().to_string());
        let body: serde_json::Value = res.json().await.unwrap();
        for repo in body["repositories"].as_array().unwrap() {
            seen.push(repo.as_str().unwrap().to_string());
        }
        let Some(link) = next else { break };
        let path = link.trim_start_matches('<').split('>').next().unwrap();
        url = format!("{}{path}", registry.url());
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn basic_rejects_anonymous_and_accepts_the_user() {
    let registry = TestRegistry::start(AuthMode::Basic).await;
    let url = manifest_url(&registry, "single/oci", "v1");
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");

    let (user, password) = registry.credentials().unwrap();
    let res = client()
        .get(&url)
        .basic_auth(&user, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = client()
        .get(&url)
        .header("accept", ACCEPT)
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    let fx = &registry.fixtures().single_oci;
    assert_manifest(res, &fx.digest, OCI_MANIFEST, &fx.manifest).await;

    // No password in Debug output.
    assert!(!format!("{registry:?}").contains(&password));
}

#[tokio::test]
async fn token_challenge_then_token_then_success() {
    let registry = TestRegistry::start(AuthMode::Token).await;
    let server = registry.token_server().unwrap();
    let res = client()
        .get(manifest_url(&registry, "single/oci", "v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let params = challenge_params(challenge);
    assert_eq!(params["realm"], server.realm());
    assert_eq!(params["service"], server.service());
    assert_eq!(params["scope"], "repository:single/oci:pull");

    let (user, password) = registry.credentials().unwrap();
    let res = fetch_token(&registry, &params["scope"], Some((&user, &password))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));

    let res = get_with_token(&registry, body["token"].as_str().unwrap()).await;
    let fx = &registry.fixtures().single_oci;
    assert_manifest(res, &fx.digest, OCI_MANIFEST, &fx.manifest).await;

    assert_eq!(server.issued_count(), 1);
    assert_eq!(server.issued_count_for("repository:single/oci:pull"), 1);
    assert_eq!(server.issued_count_for("repository:other:pull"), 0);
    let log = server.requests();
    assert_eq!(log[0].username.as_deref(), Some(user.as_str()));
    assert_eq!(log[0].granted[0].actions, ["pull"]);
    server.reset();
    assert_eq!(server.issued_count(), 0);
}

#[tokio::test]
async fn token_server_refuses_bad_credentials_and_anonymous_by_default() {
    let registry = TestRegistry::start(AuthMode::Token).await;
    let server = registry.token_server().unwrap();
    let (user, _) = registry.credentials().unwrap();
    let scope = "repository:single/oci:pull";
    let res = fetch_token(&registry, scope, Some((&user, "wrong"))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = fetch_token(&registry, scope, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.issued_count(), 0);
    assert_eq!(server.requests().len(), 2);

    // Anonymous tokens grant nothing, so the registry still refuses them.
    server.set_allow_anonymous(true);
    let res = fetch_token(&registry, scope, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let token: serde_json::Value = res.json().await.unwrap();
    let res = get_with_token(&registry, token["token"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(server.requests()[2].granted.is_empty());
}

#[tokio::test]
async fn token_grants_catalog_and_admin_push() {
    let registry = TestRegistry::start(AuthMode::Token).await;
    let token = token_for(&registry, "registry:catalog:*").await;
    let res = client()
        .get(format!("{}/v2/_catalog", registry.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // The plain user gets pull only; the admin gets push too.
    let server = registry.token_server().unwrap();
    let (user, password) = registry.credentials().unwrap();
    let (admin, admin_password) = registry.admin_credentials().unwrap();
    let scope = "repository:new/repo:pull,push";
    fetch_token(&registry, scope, Some((&user, &password))).await;
    fetch_token(&registry, scope, Some((&admin, &admin_password))).await;
    let log = server.requests();
    assert_eq!(log[1].granted[0].actions, ["pull"]);
    assert_eq!(log[2].granted[0].actions, ["pull", "push"]);
}

/// Distribution allows 60 s of leeway past `exp`, so a 1 s token cannot be shown to expire
/// quickly; the clock-skew knob backdates the JWT instead.
#[tokio::test]
async fn expired_tokens_are_rejected_after_the_leeway() {
    let registry = TestRegistry::start(AuthMode::Token).await;
    let server = registry.token_server().unwrap();
    server.set_token_lifetime(Duration::from_secs(1));

    let token = token_for(&registry, "repository:single/oci:pull").await;
    let claims = jwt_claims(&token);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        1
    );
    assert_eq!(claims["aud"], server.service());

    // exp 4 s ago: still inside the leeway.
    server.set_clock_skew(Duration::from_secs(5));
    let token = token_for(&registry, "repository:single/oci:pull").await;
    assert_eq!(get_with_token(&registry, &token).await.status(), StatusCode::OK);

    // exp 64 s ago: past it.
    server.set_clock_skew(Duration::from_secs(65));
    let body = token_answer(&registry, "repository:single/oci:pull").await;
    // The JSON answer stays truthful; only the JWT is backdated.
    assert_eq!(body["expires_in"], 1);
    let res = get_with_token(&registry, body["token"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[tokio::test]
async fn fixture_digests_are_stable() {
    let (a, b) = (Fixtures::build(), Fixtures::build());
    let digests = |f: &Fixtures| -> Vec<String> {
        let mut all: Vec<String> = f.images().map(|i| i.digest.clone()).collect();
        all.extend([f.multi_oci.digest.clone(), f.multi_docker.digest.clone()]);
        all
    };
    assert_eq!(digests(&a), digests(&b));

    // Pinned across runs (and machines). The tar bytes depend only on the `tar` crate; the
    // gzip and so the manifest digest also on flate2's compressor: if a dependency bump
    // changes them, update the values here.
    let single = &a.single_oci;
    let tar_digest = "sha256:c25fe906bfa0cb1884c46c2a3663c2f0670d40b85c7b3bc627d94d33bf1c07d0";
    let manifest_digest = "sha256:c836ed8c7d155f194ea64c39c9b1955e972a771b97d663f9949df9a01603a170";
    assert_eq!(single.layers[0].diff_id, tar_digest);
    assert_eq!(single.digest, manifest_digest);

    // Every recorded digest and size matches its bytes.
    for image in a.images() {
        check_image(image);
    }
    for index in [&a.multi_oci, &a.multi_docker] {
        assert_eq!(index.digest, sha256_digest(&index.manifest));
        let platforms: Vec<String> = index.children.iter().map(|c| c.platform.to_string()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
        let arm = index.child("linux/arm/v7");
        let config: serde_json::Value = serde_json::from_slice(&arm.config).unwrap();
        assert_eq!(
            (config["architecture"].as_str(), config["variant"].as_str()),
            (Some("arm"), Some("v7"))
        );
    }
    assert_eq!(a.many_layers.layers.len(), 32);
    assert_eq!(a.tags.tags.len(), 25);
}

fn check_image(image: &ImageFixture) {
    assert_eq!(image.digest, sha256_digest(&image.manifest));
    assert_eq!(image.config_digest, sha256_digest(&image.config));
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    assert_eq!(manifest["mediaType"], image.media_type);
    for (layer, desc) in image.layers.iter().zip(manifest["layers"].as_array().unwrap()) {
        assert_eq!(layer.digest, sha256_digest(&layer.data));
        assert_eq!(layer.size, layer.data.len() as u64);
        assert_eq!(desc["digest"], layer.digest.as_str());
    }
}

#[tokio::test]
async fn two_registries_run_at_once() {
    let (a, b) = tokio::join!(
        TestRegistry::start(AuthMode::None),
        TestRegistry::start(AuthMode::Basic)
    );
    assert_ne!(a.port(), b.port());
    assert_ne!(a.root_dir(), b.root_dir());
    let (user, password) = b.credentials().unwrap();
    for (registry, creds) in [(&a, None), (&b, Some((user, password)))] {
        let mut req = client()
            .get(manifest_url(registry, "a/b/c/d", "v1"))
            .header("accept", ACCEPT);
        if let Some((u, p)) = creds {
            req = req.basic_auth(u, Some(p));
        }
        let res = req.send().await.unwrap();
        assert_eq!(
            res.headers()["docker-content-digest"],
            registry.fixtures().nested.digest.as_str()
        );
    }
}

#[tokio::test]
async fn empty_registry_has_no_repositories() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let url = manifest_url(&registry, "single/oci", "v1");
    let res = client().get(url).header("accept", ACCEPT).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
