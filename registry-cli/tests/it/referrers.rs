//! `mcreg referrers`: an image's signature, SBOM and attestation, and a signature of
//! the SBOM, found through the fallback tags of Distribution 2.8 and shown as a tree;
//! and the same tree through `mcreg serve`, again with the registry stopped.

use crate::common::Sandbox;
use crate::serve::Server;
use conformance::harness::{AuthMode, Pusher, TestRegistry, fixtures};
use serde_json::Value;

const SBOM: &str = "application/spdx+json";
const SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const ATTESTATION: &str = "application/vnd.in-toto+json";

fn digest(descriptor: &Value) -> &str {
    descriptor["digest"].as_str().expect("digest")
}

/// The referrers pushed by [`push_tree`].
struct Tree {
    signature: Value,
    sbom: Value,
    attestation: Value,
    sbom_signature: Value,
}

/// `single/oci:v1` with a signature, an SBOM and an attestation, and a signature of the
/// SBOM, each listed by its subject's fallback tag.
async fn push_tree(registry: &TestRegistry) -> Tree {
    let pusher = Pusher::new(&registry.url());
    let image = &fixtures().single_oci;
    let repository = image.repository.as_str();
    pusher.image(image).await;
    let subject = image.descriptor();
    let signature = pusher
        .artifact(repository, &subject, SIGNATURE, b"image signature")
        .await;
    let sbom = pusher
        .artifact(repository, &subject, SBOM, br#"{"spdxVersion":"SPDX-2.3"}"#)
        .await;
    let attestation = pusher
        .artifact(
            repository,
            &subject,
            ATTESTATION,
            br#"{"_type":"https://in-toto.io/Statement/v1"}"#,
        )
        .await;
    let sbom_signature = pusher
        .artifact(repository, &sbom, SIGNATURE, b"SBOM signature")
        .await;
    pusher
        .fallback_index(
            repository,
            &image.digest,
            &[signature.clone(), sbom.clone(), attestation.clone()],
        )
        .await;
    pusher
        .fallback_index(repository, digest(&sbom), std::slice::from_ref(&sbom_signature))
        .await;
    Tree {
        signature,
        sbom,
        attestation,
        sbom_signature,
    }
}

#[tokio::test]
async fn referrers_shows_the_tree_of_signatures_sboms_and_attestations() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let Tree {
        signature,
        sbom,
        attestation,
        sbom_signature,
    } = push_tree(&registry).await;
    let (image, repository) = (&fixtures().single_oci, fixtures().single_oci.repository.as_str());
    let sandbox = Sandbox::new();
    let reference = image.reference(&registry.host());

    let report = sandbox.mcreg(&["referrers", &reference, "--json"]).ok().json();
    assert_eq!(report["subject"], image.digest.as_str());
    assert_eq!(report["discovery"], "fallback-tag");
    let top = report["referrers"].as_array().expect("referrers");
    let listed: Vec<(&str, &str)> = top
        .iter()
        .map(|r| (r["digest"].as_str().unwrap(), r["artifactType"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (digest(&signature), SIGNATURE),
            (digest(&sbom), SBOM),
            (digest(&attestation), ATTESTATION)
        ]
    );
    assert_eq!(top[1]["referrers"][0]["digest"], digest(&sbom_signature));
    assert_eq!(top[1]["referrers"][0]["artifactType"], SIGNATURE);
    assert_eq!(top[0]["referrers"], Value::Array(Vec::new()));

    let tree = sandbox.mcreg(&["referrers", &reference]).ok().stdout_text();
    let expected = format!(
        "{host}/{repository}@{image}\n\
         ├── {signature}  {SIGNATURE}  {signature_size} bytes\n\
         ├── {sbom}  {SBOM}  {sbom_size} bytes\n\
         │   └── {sbom_signature}  {SIGNATURE}  {sbom_signature_size} bytes\n\
         └── {attestation}  {ATTESTATION}  {attestation_size} bytes\n",
        host = registry.host(),
        image = image.digest,
        signature = digest(&signature),
        signature_size = signature["size"],
        sbom = digest(&sbom),
        sbom_size = sbom["size"],
        sbom_signature = digest(&sbom_signature),
        sbom_signature_size = sbom_signature["size"],
        attestation = digest(&attestation),
        attestation_size = attestation["size"],
    );
    assert_eq!(tree, expected);

    // Only the SBOMs, with what is below them.
    let sboms = sandbox
        .mcreg(&["referrers", &reference, "--artifact-type", SBOM, "--json"])
        .ok()
        .json();
    let top = sboms["referrers"].as_array().expect("referrers");
    assert_eq!(top.len(), 1);
    assert_eq!(top[0]["digest"], digest(&sbom));
    assert_eq!(top[0]["referrers"][0]["digest"], digest(&sbom_signature));
}

#[tokio::test]
async fn a_referrer_listed_below_itself_is_an_error_naming_it() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let image = &fixtures().single_oci;
    let repository = image.repository.as_str();
    pusher.image(image).await;
    let sbom = pusher
        .artifact(repository, &image.descriptor(), SBOM, b"sbom")
        .await;
    pusher
        .fallback_index(repository, &image.digest, std::slice::from_ref(&sbom))
        .await;
    // The SBOM's fallback tag lists the SBOM itself: a loop.
    pusher
        .fallback_index(repository, digest(&sbom), std::slice::from_ref(&sbom))
        .await;
    let run = Sandbox::new().mcreg(&["referrers", &image.reference(&registry.host())]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("referrers loop"), "{}", run.stderr);
    assert!(run.stderr.contains(digest(&sbom)), "{}", run.stderr);
}

/// `mcreg serve` in front of the registry: the tree walked once through it, then
/// again with the registry stopped, answered from the cache alone.
#[tokio::test]
async fn the_cache_serves_the_tree_with_the_upstream_stopped() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let Tree { sbom, .. } = push_tree(&registry).await;
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox, &["--upstream", &registry.host()], &[]);
    let through = format!("{}/{}:v1", server.host(), fixtures().single_oci.repository);

    let before = sandbox.mcreg(&["referrers", &through, "--json"]).ok().json();
    assert_eq!(before["discovery"], "api", "the cache serves the referrers API");
    assert_eq!(before["referrers"][1]["digest"], digest(&sbom));
    let text_before = sandbox.mcreg(&["referrers", &through]).ok().stdout_text();

    drop(registry);
    let after = sandbox.mcreg(&["referrers", &through, "--json"]).ok().json();
    assert_eq!(after["referrers"], before["referrers"]);
    assert_eq!(after["subject"], before["subject"]);
    let text_after = sandbox.mcreg(&["referrers", &through]).ok().stdout_text();
    assert_eq!(text_after, text_before);

    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("/referrers/") && l.contains("cache=HIT")),
        "no referrers HIT in:\n{log}"
    );
}
