//! Application Default Credentials from the metadata server (GCE, GKE, Cloud Run), against a
//! fake one on loopback that google-cloud-auth finds through `GCE_METADATA_HOST`.
//!
//! Environment variables belong to the whole process, so the test runs alone in a process of
//! its own ([`alone_in_process`]) and sets them before it starts any thread of its own.

use conformance::harness::cloud::google::FakeMetadata;
use conformance::harness::{AuthMode, TestRegistry, alone_in_process};
use registry_client::driver::auth::{AuthScheme, Challenge};
use registry_client::{AuthRequest, Error, ImageReference, ProviderConfig, RepositoryClient};
use registry_gcp::{SCOPE, USERNAME};

const TOKEN: &str = "ya29.metadata-Access-token";

#[test]
fn metadata_server_credentials() {
    if !alone_in_process(module_path!(), "metadata_server_credentials") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // A HOME without gcloud's application_default_credentials.json, so ADC falls back to the
    // metadata server, whatever the developer's own machine has.
    let home = tempfile::tempdir().expect("home");
    // SAFETY: this test is alone in its process, and nothing else in the process reads or
    // writes the environment concurrently: the test harness's main thread only waits for this
    // test, and the server thread and the tokio runtime are started below, after this block.
    unsafe {
        std::env::set_var("GCE_METADATA_HOST", addr.to_string());
        std::env::set_var("HOME", home.path());
        std::env::remove_var("GOOGLE_APPLICATION_CREDENTIALS");
        std::env::remove_var("GOOGLE_CLOUD_QUOTA_PROJECT");
    }
    let metadata = FakeMetadata::serve(listener, TOKEN);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(check(&metadata));
}

async fn check(metadata: &FakeMetadata) {
    // Pulls through a real registry that accepts only the metadata server's token.
    let registry = TestRegistry::start_as(AuthMode::Token, USERNAME, TOKEN).await;
    let fixtures = registry.fixtures();
    let first: ImageReference = fixtures
        .single_oci
        .reference("us-docker.pkg.dev")
        .parse()
        .expect("ref");
    let client = RepositoryClient::builder_for(&first)
        .endpoint(registry.url())
        .no_cache()
        .build()
        .expect("client");
    assert_eq!(client.provider_id(), "gcp");
    for _ in 0..3 {
        for fixture in [&fixtures.single_oci, &fixtures.nested] {
            let reference: ImageReference = fixture.reference("us-docker.pkg.dev").parse().expect("ref");
            let manifest = client.get_manifest(&reference).await.expect("manifest");
            assert_eq!(manifest.descriptor.digest.to_string(), fixture.digest);
            client.get_config(&reference).await.expect("config");
        }
    }
    let tokens = registry.token_server().expect("token server");
    assert_eq!(tokens.issued_count(), 2, "one registry token per repository");
    assert!(
        tokens
            .requests()
            .iter()
            .all(|r| r.username.as_deref() == Some(USERNAME)),
        "{:?}",
        tokens.requests()
    );
    assert_eq!(metadata.calls(), 1, "one metadata request for all pulls");
    assert_eq!(metadata.scopes(), vec![Some(SCOPE.to_owned())]);

    // The provider itself, with a default config (as `builder_for` builds it).
    let record = registry_client::driver::provider("gcp").expect("registered");
    let gcp = record.build(&ProviderConfig::default()).expect("factory");
    let challenge = Challenge {
        scheme: AuthScheme::Basic,
        params: vec![("realm".into(), "gcr".into())],
    };
    let request = AuthRequest {
        host: "gcr.io",
        challenge: &challenge,
        scope: None,
    };
    for _ in 0..5 {
        let credentials = gcp.credentials(&request).await.expect("ok").expect("credentials");
        assert_eq!(credentials.username(), Some(USERNAME));
        assert_eq!(credentials.secret(), TOKEN);
    }
    assert_eq!(metadata.calls(), 2, "one more for the new provider, cached");

    // No default service account: a provider error naming the failure, no token in it.
    metadata.set_failing(true);
    let gcp = record.build(&ProviderConfig::default()).expect("factory");
    let err = gcp.credentials(&request).await.expect_err("no token");
    assert!(
        matches!(&err, Error::Provider { provider, .. } if provider == "gcp"),
        "{err:?}"
    );
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(" | {s}"));
        source = s.source();
    }
    assert!(text.contains("failed to fetch token"), "{text}");
    assert!(text.contains("404"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(metadata.calls(), 3);
}
