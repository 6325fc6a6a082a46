//! Cases for referrers: the signature and SBOM of `referred/image` listed in
//! order, filtered by artifact type, and found by the referrers API where the
//! endpoint serves it.

use registry_client::{Discovery, Referrers, RepositoryClient};

use super::env::SuiteEnv;

async fn listed(client: &RepositoryClient, env: &SuiteEnv, artifact_type: Option<&str>) -> Referrers {
    let referred = &env.fixtures().referred;
    let found = client
        .referrers(&env.image(&referred.image), artifact_type)
        .await
        .expect("referrers");
    assert_eq!(found.subject, referred.image.digest);
    found
}

fn digests(found: &Referrers) -> Vec<String> {
    found.descriptors.iter().map(|d| d.digest().to_string()).collect()
}

/// Every referrer, in the registry's order, each with its artifact type; and
/// only the SBOM when asked for SBOMs. By the API or the fallback tag, whichever
/// the endpoint has.
pub async fn referrers_listed(client: &RepositoryClient, env: &SuiteEnv) {
    let referred = &env.fixtures().referred;
    let all = listed(client, env, None).await;
    let expected: Vec<String> = referred.referrers.iter().map(|a| a.digest.clone()).collect();
    assert_eq!(digests(&all), expected);
    for (descriptor, artifact) in all.descriptors.iter().zip(&referred.referrers) {
        assert_eq!(
            descriptor
                .artifact_type()
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some(artifact.artifact_type)
        );
    }
    let sbom = &referred.referrers[0];
    let sboms = listed(client, env, Some(sbom.artifact_type)).await;
    assert_eq!(digests(&sboms), std::slice::from_ref(&sbom.digest));
}

/// The endpoint serves the referrers API: the client finds the list there, not by
/// the fallback tag.
pub async fn referrers_api(client: &RepositoryClient, env: &SuiteEnv) {
    let found = listed(client, env, None).await;
    assert_eq!(found.discovery, Discovery::Api);
    assert_eq!(found.descriptors.len(), env.fixtures().referred.referrers.len());
}
