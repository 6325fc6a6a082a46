//! Referrers through the cache: `GET /v2/<name>/referrers/<digest>` answered as the
//! distribution spec's API answers (an OCI index, `OCI-Filters-Applied` when filtered),
//! from an upstream without the API (Distribution 2.8) through its fallback tag, kept
//! for the tag TTL and served stale when the upstream is down; the SDK pointed at the
//! cache finds them by the API.

use std::time::Duration;

use crate::common::{RunningProxy, config, header, http, recorded};
use conformance::harness::fault_proxy::{Fault, Matcher};
use conformance::harness::fixtures::OCI_INDEX;
use conformance::harness::{AuthMode, TestRegistry};
use registry_client::driver::oci::OciOption;
use registry_client::{Discovery, ImageReference, RepositoryClient};
use serde_json::Value;

fn digests(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|d| d["digest"].as_str().expect("digest").to_owned())
        .collect()
}

#[tokio::test]
async fn the_cache_answers_the_referrers_api_from_the_upstreams_fallback_tag() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let referred = &registry.fixtures().referred;
    let (image, other) = (&referred.image, &registry.fixtures().single_docker);
    let (sbom, signature) = (
        referred.referrers[0].descriptor(),
        referred.referrers[1].descriptor(),
    );
    let (sbom_type, signature_type) = (
        referred.referrers[0].artifact_type,
        referred.referrers[1].artifact_type,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = recorded(&registry.url()).await;
    let cache = RunningProxy::start(&config(&dir.path().join("cache"), &[upstream.host()]));
    let url = |image: &str, digest: &str| format!("{}/v2/{image}/referrers/{digest}", cache.url());

    let response = http()
        .get(url(&image.repository, &image.digest))
        .send()
        .await
        .expect("GET referrers");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), OCI_INDEX);
    assert!(response.headers().get("oci-filters-applied").is_none());
    assert_eq!(header(&response, "x-cache"), "MISS");
    let index: Value = response.json().await.expect("JSON");
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        digests(&index),
        [&sbom["digest"], &signature["digest"]].map(|d| d.as_str().unwrap().to_owned())
    );
    assert_eq!(index["manifests"][0]["artifactType"], sbom_type);
    // Within the tag TTL, the next request (filtered or not) is answered from the cache.
    let asked = upstream.requests().len();

    // Filtered by artifact type, and says so.
    let response = http()
        .get(url(&image.repository, &image.digest))
        .query(&[("artifactType", sbom_type)])
        .send()
        .await
        .expect("GET filtered");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "oci-filters-applied"), "artifactType");
    assert_eq!(header(&response, "x-cache"), "HIT");
    assert_eq!(upstream.requests().len(), asked, "a HIT asks nothing upstream");
    let index: Value = response.json().await.expect("JSON");
    assert_eq!(digests(&index), [sbom["digest"].as_str().unwrap()]);

    // A subject without referrers: an empty index, as the API answers.
    let response = http()
        .get(url(&other.repository, &other.digest))
        .send()
        .await
        .expect("GET none");
    assert_eq!(response.status(), 200);
    let index: Value = response.json().await.expect("JSON");
    assert_eq!(digests(&index), Vec::<String>::new());

    // A bogus digest: the spec's error, nothing asked upstream.
    let response = http()
        .get(url(&image.repository, "sha256:nothex"))
        .send()
        .await
        .expect("GET bogus");
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("JSON error");
    assert_eq!(error["errors"][0]["code"], "DIGEST_INVALID");

    // The SDK asks the cache's API, and filters nothing again.
    let subject: ImageReference = format!("{}/{}@{}", cache.host(), image.repository, image.digest)
        .parse()
        .expect("reference");
    let found = RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .build()
        .expect("client")
        .referrers(&subject, Some(signature_type))
        .await
        .expect("referrers through the cache");
    assert_eq!(found.discovery, Discovery::Api);
    assert_eq!(found.descriptors.len(), 1);
    assert_eq!(
        found.descriptors[0].digest().to_string(),
        signature["digest"].as_str().unwrap()
    );
}

#[tokio::test]
async fn referrers_past_the_tag_ttl_are_asked_again_and_served_stale_when_the_upstream_is_down() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let referred = &registry.fixtures().referred;
    let (image, other) = (&referred.image, &registry.fixtures().single_docker);
    let sbom = referred.referrers[0].descriptor();
    let upstream = recorded(&registry.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(&dir.path().join("cache"), &[upstream.host()]);
    config.routes[0].tag_ttl = Duration::ZERO;
    config.routes[0].upstream_timeout = Duration::from_secs(5);
    let cache = RunningProxy::start(&config);
    let url = |image: &str, digest: &str| format!("{}/v2/{image}/referrers/{digest}", cache.url());
    let get = |url: String| async move { http().get(url).send().await.expect("GET referrers") };

    let first = get(url(&image.repository, &image.digest)).await;
    assert_eq!(header(&first, "x-cache"), "MISS");
    // Past the TTL: asked again.
    let again = get(url(&image.repository, &image.digest)).await;
    assert_eq!(header(&again, "x-cache"), "MISS");

    // The upstream down: the last list, marked stale.
    upstream.inject_when(Matcher::any(), Fault::status(503, usize::MAX));
    let stale = get(url(&image.repository, &image.digest)).await;
    assert_eq!(stale.status(), 200);
    assert_eq!(header(&stale, "x-cache"), "STALE");
    let index: Value = stale.json().await.expect("JSON");
    assert_eq!(
        digests(&index),
        [
            sbom["digest"].as_str().unwrap(),
            referred.referrers[1].digest.as_str()
        ]
    );
    // A subject never listed has nothing to fall back on: an error, not an empty list.
    let unknown = get(url(&other.repository, &other.digest)).await;
    assert!(unknown.status().is_server_error(), "{}", unknown.status());
}
