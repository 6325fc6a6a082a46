//! Referrers on Distribution 2.8, which has no referrers API (it answers it `404`): the
//! client falls back to the tag schema, the index at `sha256-<hex>` that lists a
//! subject's signatures and SBOMs, filters it by artifact type, and refuses a fallback
//! tag that is not an index; a manifest pushed with a `subject` is added to that index.

use conformance::harness::fault_proxy::FaultProxy;
use conformance::harness::fixtures::OCI_MANIFEST;
use conformance::harness::{AuthMode, ImageFixture, Pusher, TestRegistry, fixtures};
use registry_client::driver::oci::OciOption;
use registry_client::{Discovery, ImageReference, RepositoryClient};
use url::Url;

const SBOM: &str = "application/spdx+json";
const SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

fn client() -> RepositoryClient {
    RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .build()
        .expect("client")
}

fn reference(host: &str, image: &ImageFixture) -> ImageReference {
    image.reference(host).parse().expect("reference")
}

/// A registry of its own (the tests write to it) holding `single/oci`.
async fn registry_with_an_image() -> (TestRegistry, Pusher, &'static ImageFixture) {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let image = &fixtures().single_oci;
    pusher.image(image).await;
    (registry, pusher, image)
}

/// Puts `image`'s own manifest under its fallback tag, where an index belongs;
/// returns the tag.
async fn fallback_tag_holding_the_image(pusher: &Pusher, image: &ImageFixture) -> String {
    let tag = image.digest.replacen(':', "-", 1);
    pusher
        .manifest(&image.repository, &tag, image.media_type, &image.manifest)
        .await;
    tag
}

/// The seeded `referred/image` and its SBOM and signature (listed by its fallback tag).
#[tokio::test]
async fn without_the_api_the_fallback_tag_lists_the_referrers() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let referred = &registry.fixtures().referred;
    let (image, other) = (&referred.image, &registry.fixtures().single_docker);
    let proxy = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    let client = client();

    // By tag: resolved to its digest, the API asked first (404), then the tag.
    let all = client
        .referrers(&reference(&proxy.host(), image), None)
        .await
        .expect("referrers");
    assert_eq!(all.subject, image.digest);
    assert_eq!(all.discovery, Discovery::FallbackTag);
    let digests: Vec<String> = all.descriptors.iter().map(|d| d.digest().to_string()).collect();
    let expected: Vec<String> = referred.referrers.iter().map(|a| a.digest.clone()).collect();
    assert_eq!(digests, expected);
    let api = format!("/v2/{}/referrers/{}", image.repository, image.digest);
    assert_eq!(proxy.count(|r| r.path == api && r.status == Some(404)), 1);
    let tag = format!(
        "/v2/{}/manifests/{}",
        image.repository,
        image.digest.replacen(':', "-", 1)
    );
    assert_eq!(proxy.count(|r| r.path == tag && r.status == Some(200)), 1);

    // Filtered by artifact type, by the client (the tag schema cannot filter).
    let sbom = &referred.referrers[0];
    let sboms = client
        .referrers(&reference(&proxy.host(), image), Some(sbom.artifact_type))
        .await
        .expect("SBOMs");
    assert_eq!(sboms.descriptors.len(), 1);
    assert_eq!(sboms.descriptors[0].digest().to_string(), sbom.digest);
    assert_eq!(
        sboms.descriptors[0]
            .artifact_type()
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some(sbom.artifact_type)
    );

    // A subject nobody refers to: no fallback tag, no referrers.
    let none = client
        .referrers(&reference(&proxy.host(), other), None)
        .await
        .expect("no referrers");
    assert!(none.descriptors.is_empty(), "{none:?}");
    assert_eq!(none.subject, other.digest);
}

#[tokio::test]
async fn a_fallback_tag_that_is_not_an_index_is_refused() {
    let (registry, pusher, image) = registry_with_an_image().await;
    let tag = fallback_tag_holding_the_image(&pusher, image).await;
    let err = client()
        .referrers(&reference(&registry.host(), image), None)
        .await
        .expect_err("not an index");
    let text = err.to_string();
    assert!(text.contains("not an OCI image index"), "{text}");
    assert!(text.contains(&tag), "names the tag: {text}");
}

#[tokio::test]
async fn a_pushed_referrer_is_added_to_the_fallback_index_once() {
    let (registry, pusher, image) = registry_with_an_image().await;
    let client = client();
    let subject = reference(&registry.host(), image);
    let put = |manifest: Vec<u8>| {
        let client = &client;
        let at = subject
            .with_digest(&conformance::harness::sha256_digest(&manifest))
            .expect("by digest");
        async move {
            client
                .put_manifest(&at, OCI_MANIFEST, manifest.into())
                .await
                .expect("put the artifact")
        }
    };
    let sbom = pusher
        .artifact_manifest(&image.repository, &image.descriptor(), SBOM, b"sbom")
        .await;
    let signature = pusher
        .artifact_manifest(&image.repository, &image.descriptor(), SIGNATURE, b"signature")
        .await;
    let sbom_digest = put(sbom.clone()).await;
    let signature_digest = put(signature).await;
    // Pushed again: not listed twice.
    put(sbom).await;

    let found = client.referrers(&subject, None).await.expect("referrers");
    assert_eq!(found.discovery, Discovery::FallbackTag);
    let listed: Vec<(String, Option<String>)> = found
        .descriptors
        .iter()
        .map(|d| {
            (
                d.digest().to_string(),
                d.artifact_type().as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (sbom_digest, Some(SBOM.to_owned())),
            (signature_digest, Some(SIGNATURE.to_owned()))
        ]
    );
}

#[tokio::test]
async fn a_referrer_pushed_over_a_fallback_tag_that_is_not_an_index_is_an_error_naming_it() {
    let (registry, pusher, image) = registry_with_an_image().await;
    let tag = fallback_tag_holding_the_image(&pusher, image).await;
    let sbom = pusher
        .artifact_manifest(&image.repository, &image.descriptor(), SBOM, b"sbom")
        .await;
    let at = reference(&registry.host(), image)
        .with_digest(&conformance::harness::sha256_digest(&sbom))
        .expect("by digest");
    let err = client()
        .put_manifest(&at, OCI_MANIFEST, sbom.into())
        .await
        .expect_err("the fallback tag is an image");
    let text = err.to_string();
    assert!(
        text.contains("not an OCI image index") && text.contains(&tag),
        "{text}"
    );
}
