//! The provider against a fake Google OAuth2 token endpoint: hosts, token caching and
//! refresh, registry token caching in the core, failures, and explicit credentials.

use std::time::Duration;

use crate::common::{ask, full_text, provider};
use conformance::harness::cloud::google::{
    CLIENT_ID, CLIENT_SECRET, FakeOAuth, REFRESH_TOKEN, Tokens, WRONG_SECRET,
};
use conformance::harness::{AuthMode, TestRegistry};
use registry_client::{Credentials, Error, ImageReference, RepositoryClient};
use registry_gcp::{GcpOption, ID, SCOPE, USERNAME, is_gcp_host};

const HOST: &str = "europe-west1-docker.pkg.dev";

fn file_option(path: &std::path::Path) -> [(GcpOption, String); 1] {
    [(GcpOption::CredentialsFile, path.display().to_string())]
}

/// The provider reading `path`, built by its factory as the client builder does.
fn provider_for(path: &std::path::Path) -> std::sync::Arc<dyn registry_client::AbstractRegistry> {
    let [(name, value)] = file_option(path);
    provider(&[(name, &value)], None)
}

fn assert_token(credentials: Option<Credentials>, expected: &str) {
    let credentials = credentials.expect("credentials, not anonymous");
    assert_eq!(credentials.username(), Some(USERNAME));
    assert_eq!(credentials.secret(), expected);
}

#[test]
fn hosts_recognised() {
    let table = [
        ("gcr.io", true),
        ("us.gcr.io", true),
        ("eu.gcr.io", true),
        ("asia.gcr.io", true),
        ("marketplace.gcr.io", true),
        ("GCR.IO", true),
        ("gcr.io:443", true),
        ("us-docker.pkg.dev", true),
        ("europe-docker.pkg.dev", true),
        ("asia-docker.pkg.dev", true),
        ("europe-west1-docker.pkg.dev", true),
        ("northamerica-northeast2-docker.pkg.dev", true),
        ("us-central1-docker.pkg.dev:443", true),
        ("docker.pkg.dev", false),
        ("-docker.pkg.dev", false),
        ("us--docker.pkg.dev", false),
        ("1us-docker.pkg.dev", false),
        ("evil.us-docker.pkg.dev", false),
        ("evil-docker.pkg.dev.com", false),
        ("us-docker.pkg.dev.evil", false),
        ("us-maven.pkg.dev", false),
        ("pkg.dev", false),
        ("gcr.io.evil.com", false),
        ("evilgcr.io", false),
        ("evil.gcr.io", false),
        ("k8s.gcr.io", false),
        ("mirror.gcr.io", false),
        ("ghcr.io", false),
        ("docker.io", false),
        ("", false),
    ];
    for (host, expected) in table {
        assert_eq!(is_gcp_host(host), expected, "{host:?}");
    }
    let gcp = provider(&[], None);
    assert_eq!(gcp.id(), "gcp");
    let record = registry_client::driver::provider(ID).unwrap();
    assert!(record.serves("us.gcr.io") && !record.serves("gcr.io.evil.com"));
}

#[test]
fn provider_chosen_from_the_reference_alone() {
    let cases = [
        ("europe-west1-docker.pkg.dev/p/r/i:t", "gcp"),
        ("gcr.io/distroless/static:nonroot", "gcp"),
        ("marketplace.gcr.io/google/ubuntu2004", "gcp"),
        ("ghcr.io/owner/image:1", "oci"),
        ("alpine", "oci"),
    ];
    for (reference, expected) in cases {
        let reference: ImageReference = reference.parse().expect("reference");
        // A default config (no credentials found yet): building does no I/O and cannot fail.
        let client = RepositoryClient::builder_for(&reference).build().expect("client");
        assert_eq!(client.provider_id(), expected, "{reference}");
    }
    let record = registry_client::driver::provider(ID).expect("registered");
    assert!(
        record.hosts.contains(&"<location>-docker.pkg.dev"),
        "{:?}",
        record.hosts
    );
    assert!(record.hosts.contains(&"marketplace.gcr.io"), "{:?}", record.hosts);
    // Registering again at run time is harmless.
    registry_gcp::register().expect("register");
    registry_gcp::register().expect("register twice");
    assert_eq!(
        registry_client::driver::provider_for_host("us.gcr.io").expect("host"),
        "gcp"
    );
}

#[test]
fn endpoint_is_the_host_over_https() {
    let gcp = provider(&[], None);
    assert_eq!(
        gcp.endpoint(HOST).expect("url").as_str(),
        "https://europe-west1-docker.pkg.dev/"
    );
    assert_eq!(gcp.endpoint("gcr.io").expect("url").as_str(), "https://gcr.io/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_cached_while_valid() {
    let fake = FakeOAuth::start(Tokens::Numbered("ya29.cached"), 3600);
    let gcp = provider_for(&fake.credentials_file());
    assert_eq!(fake.calls(), 0, "nothing fetched before it is needed");
    for _ in 0..5 {
        assert_token(ask(&*gcp, HOST).await.expect("token"), "ya29.cached-1");
    }
    // Concurrent callers share the cached token, too.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let gcp = gcp.clone();
        tasks.spawn(async move { ask(&*gcp, HOST).await });
    }
    for answer in tasks.join_all().await {
        assert_token(answer.expect("token"), "ya29.cached-1");
    }
    assert_token(ask(&*gcp, "gcr.io").await.expect("token"), "ya29.cached-1");
    assert_eq!(
        fake.calls(),
        1,
        "one access-token request while the token is valid"
    );

    let requests = fake.requests();
    assert_eq!(requests[0].content_type, "application/json");
    assert_eq!(requests[0].grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(requests[0].client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(requests[0].scope.as_deref(), Some(SCOPE));
    assert_eq!(requests[0].status, 200);

    let shown = format!("{gcp:?}");
    assert!(!shown.contains("ya29"), "{shown}");
    assert!(
        !shown.contains(CLIENT_SECRET) && !shown.contains(REFRESH_TOKEN),
        "{shown}"
    );
}

/// google-cloud-auth refreshes 240 s (its `NORMAL_REFRESH_SLACK`) before expiry, in the
/// background. A token that lives 243 s is therefore replaced after about 3 s.
#[tokio::test]
async fn access_token_refreshed_before_expiry() {
    let fake = FakeOAuth::start(Tokens::Numbered("ya29.short"), 243);
    let gcp = provider_for(&fake.credentials_file());
    assert_token(ask(&*gcp, HOST).await.expect("token"), "ya29.short-1");
    // The next token lives an hour, so exactly one refresh happens in this test.
    fake.set_expires_in(3600);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_token(ask(&*gcp, HOST).await.expect("token"), "ya29.short-1");
    assert_eq!(fake.calls(), 1, "still valid: cached");

    tokio::time::sleep(Duration::from_millis(3500)).await;
    for _ in 0..3 {
        assert_token(ask(&*gcp, HOST).await.expect("token"), "ya29.short-2");
    }
    assert_eq!(fake.calls(), 2, "refreshed once, before expiry");
}

/// The access token is exchanged at the registry's token server once per scope; the core
/// caches the registry tokens, and google-cloud-auth the access token.
#[tokio::test]
async fn registry_tokens_cached_by_the_core() {
    const TOKEN: &str = "ya29.registry-Access-token";
    let fake = FakeOAuth::start(Tokens::Fixed(TOKEN), 3600);
    let registry = TestRegistry::start_as(AuthMode::Token, USERNAME, TOKEN).await;
    let tokens = registry.token_server().expect("token server");
    let client = RepositoryClient::builder("gcp")
        .endpoint(registry.url())
        .option(
            GcpOption::CredentialsFile,
            fake.credentials_file().display().to_string(),
        )
        .no_cache()
        .build()
        .expect("client");
    let fixtures = registry.fixtures();
    for _ in 0..4 {
        for fixture in [&fixtures.single_oci, &fixtures.nested] {
            let reference: ImageReference = fixture.reference(HOST).parse().expect("reference");
            client.head_manifest(&reference).await.expect("head");
            client.get_config(&reference).await.expect("config");
        }
    }
    assert_eq!(tokens.issued_count_for("repository:single/oci:pull"), 1);
    assert_eq!(tokens.issued_count_for("repository:a/b/c/d:pull"), 1);
    assert_eq!(tokens.issued_count(), 2);
    let users: Vec<_> = tokens.requests().into_iter().map(|r| r.username).collect();
    assert_eq!(users, vec![Some(USERNAME.to_owned()); 2]);
    assert_eq!(fake.calls(), 1, "one access token for both scopes");
}

#[tokio::test]
async fn wrong_client_secret_is_a_provider_error_without_secrets() {
    let fake = FakeOAuth::start(Tokens::Fixed("ya29.never-issued"), 3600);
    let gcp = provider_for(&fake.credentials_file_with_secret(WRONG_SECRET));
    let err = ask(&*gcp, HOST).await.expect_err("refused");
    assert!(
        matches!(&err, Error::Provider { provider, .. } if provider == "gcp"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let text = full_text(&err);
    assert!(text.contains("invalid_grant"), "{text}");
    for secret in [WRONG_SECRET, CLIENT_SECRET, REFRESH_TOKEN] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(fake.calls(), 1);
    assert_eq!(fake.requests()[0].status, 400);

    // Not stuck on the failure: the next call asks again.
    ask(&*gcp, HOST).await.expect_err("refused again");
    assert_eq!(fake.calls(), 2);

    // Through the client and a real registry: the same error, nothing secret in sight.
    let registry = TestRegistry::start_as(AuthMode::Token, USERNAME, "ya29.never-issued").await;
    let client = RepositoryClient::builder("gcp")
        .endpoint(registry.url())
        .option(
            GcpOption::CredentialsFile,
            fake.credentials_file_with_secret(WRONG_SECRET)
                .display()
                .to_string(),
        )
        .build()
        .expect("client");
    let reference: ImageReference = registry
        .fixtures()
        .single_oci
        .reference(HOST)
        .parse()
        .expect("ref");
    let err = client.get_manifest(&reference).await.expect_err("refused");
    assert!(
        matches!(&err, Error::Provider { provider, .. } if provider == "gcp"),
        "{err:?}"
    );
    let text = format!("{} | {client:?}", full_text(&err));
    for secret in [WRONG_SECRET, CLIENT_SECRET, REFRESH_TOKEN] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(registry.token_server().expect("token server").issued_count(), 0);
}

#[tokio::test]
async fn missing_credentials_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("no-such-adc.json");
    let gcp = provider_for(&path);
    let err = ask(&*gcp, HOST).await.expect_err("no credentials");
    assert!(
        matches!(&err, Error::Provider { provider, .. } if provider == "gcp"),
        "{err:?}"
    );
    let text = full_text(&err);
    assert!(
        text.contains(&format!("credentials file {}", path.display())),
        "{text}"
    );
    assert!(text.contains("No such file or directory"), "{text}");
}

#[tokio::test]
async fn broken_credentials_files_are_clear_errors_without_secrets() {
    let dir = tempfile::tempdir().expect("dir");
    let cases = [
        // Not JSON, with a secret in it: the message names a position, not the content.
        (
            "garbage.json",
            format!("{{\"client_secret\": \"{CLIENT_SECRET}\" oops"),
            "expected",
        ),
        (
            "unknown.json",
            r#"{"type": "gdch_service_account", "private_key": "k"}"#.to_owned(),
            "unsupported credential type Some(\"gdch_service_account\")",
        ),
        (
            "untyped.json",
            "{}".to_owned(),
            "unsupported credential type None",
        ),
        (
            "incomplete.json",
            format!(r#"{{"type": "authorized_user", "client_id": "c", "refresh_token": "{REFRESH_TOKEN}"}}"#),
            "client_secret",
        ),
    ];
    for (name, content, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        let err = ask(&*provider_for(&path), HOST).await.expect_err(name);
        assert!(
            matches!(&err, Error::Provider { provider, .. } if provider == "gcp"),
            "{err:?}"
        );
        let text = full_text(&err);
        assert!(text.contains(expected), "{name}: {text}");
        assert!(text.contains(name), "{name}: {text}");
        assert!(
            !text.contains(CLIENT_SECRET) && !text.contains(REFRESH_TOKEN),
            "{text}"
        );
    }
}

#[tokio::test]
async fn explicit_credentials_are_used_as_is() {
    // The credentials file does not exist: it must not even be looked at.
    let explicit = Credentials::basic("someone", "explicit-Password");
    let gcp = provider(
        &[(GcpOption::CredentialsFile, "/nonexistent/adc.json")],
        Some(explicit),
    );
    let got = ask(&*gcp, "gcr.io")
        .await
        .expect("explicit")
        .expect("credentials");
    assert_eq!(got.username(), Some("someone"));
    assert_eq!(got.secret(), "explicit-Password");
    let shown = format!("{gcp:?}");
    assert!(!shown.contains("explicit-Password"), "{shown}");
    assert!(shown.contains("/nonexistent/adc.json"), "{shown}");
}

/// google-cloud-auth refreshes on a task of the runtime that built the credentials; once that
/// runtime is gone, waiting for an expired token's replacement would never end (it panics).
/// A provider shared across runtimes (a client in a static, used by several `#[tokio::test]`s)
/// therefore builds them again in each runtime.
#[test]
fn survives_the_runtime_that_built_the_credentials() {
    let fake = FakeOAuth::start(Tokens::Numbered("ya29.runtime"), 1);
    let gcp = provider_for(&fake.credentials_file());
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let first = runtime().block_on(ask(&*gcp, HOST)).expect("token");
    assert_token(first, "ya29.runtime-1");
    // That runtime is dropped; its token expires.
    std::thread::sleep(Duration::from_millis(1500));
    let second = runtime().block_on(ask(&*gcp, HOST)).expect("token");
    assert_token(second, "ya29.runtime-2");
    assert_eq!(fake.calls(), 2);
}
