//! Cases for authentication: bad credentials, secrets kept out of output,
//! and bearer tokens cached per scope, honouring expiry, refreshed once on a 401.

use std::time::Duration;

use base64::Engine;
use registry_client::{Credentials, Error, RepositoryClient};

use super::env::SuiteEnv;
use crate::harness::TokenServer;
use crate::harness::fault_proxy::{Fault, Matcher};

const WRONG_PASSWORD: &str = "wrong-Pa55word-never-shown";

fn user(env: &SuiteEnv) -> String {
    env.target
        .credentials
        .clone()
        .expect("an auth mode with a user")
        .0
}

fn token_server(env: &SuiteEnv) -> &TokenServer {
    env.registry.token_server().expect("token auth mode")
}

/// A wrong password is `Unauthorized`, asked once, and never shown.
pub async fn wrong_credentials(_client: &RepositoryClient, env: &SuiteEnv) {
    let client = env
        .builder()
        .credentials(Credentials::basic(user(env), WRONG_PASSWORD))
        .build()
        .expect("client");
    let err = client
        .get_manifest(&env.image(&env.fixtures().single_oci))
        .await
        .expect_err("wrong password");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.is_auth() && !err.is_retryable());
    let shown = format!("{err} {err:?} {client:?}");
    assert!(!shown.contains(WRONG_PASSWORD), "{shown}");
    let at_registry = env.proxy.requests().len();
    assert!(
        at_registry <= 2,
        "{at_registry} requests: one challenge and at most one answer"
    );
}

/// No password, `Authorization` value or token appears in any log line
/// (at TRACE, all crates) or in the `Debug` of the client and its errors.
pub async fn secrets_never_shown(_client: &RepositoryClient, env: &SuiteEnv) {
    let (name, password) = env.target.credentials.clone().expect("credentials");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
    let log = crate::harness::logs::capture();

    let client = env.client();
    let fixture = &env.fixtures().single_oci;
    let reference = env.image(fixture);
    client.ping(&env.target.registry_name).await.expect("ping");
    client.get_config(&reference).await.expect("config");
    client.list_tags(&reference).await.expect("tags");
    env.proxy.inject_when(Matcher::manifests(), Fault::status(503, 1));
    client
        .head_manifest(&reference.with_tag("t-missing").expect("ref"))
        .await
        .ok();
    let wrong = env
        .builder()
        .credentials(Credentials::basic(name.clone(), WRONG_PASSWORD))
        .build()
        .expect("client");
    let err = wrong.get_manifest(&reference).await.expect_err("wrong password");

    let text = log.text();
    // Every response is logged at debug; many lines, so the capture is proven.
    assert!(text.contains("response"), "the log captured the session:\n{text}");
    let shown = format!(
        "{text}\n{client:?}\n{wrong:?}\n{err}\n{err:?}\n{:?}",
        env.builder()
    );
    for secret in [password.as_str(), WRONG_PASSWORD, basic.as_str(), "eyJ"] {
        assert!(!shown.contains(secret), "{secret:?} appeared in:\n{shown}");
    }
}

/// A token is fetched once per scope, reused while valid, and fetched
/// again only once its (short) lifetime has run out.
pub async fn token_cache_honours_expiry(_client: &RepositoryClient, env: &SuiteEnv) {
    let tokens = token_server(env);
    tokens.set_token_lifetime(Duration::from_secs(2));
    let client = env.builder().no_cache().build().expect("client");
    let reference = env.image(&env.fixtures().single_oci);
    let scope = format!("repository:{}:pull", reference.repository());

    for _ in 0..3 {
        client.head_manifest(&reference).await.expect("head");
    }
    assert_eq!(tokens.issued_count_for(&scope), 1, "cached across calls");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    client.head_manifest(&reference).await.expect("head");
    client.head_manifest(&reference).await.expect("head");
    assert_eq!(tokens.issued_count_for(&scope), 2, "refetched after expiry, once");
    assert_eq!(tokens.issued_count(), 2);
}

/// A token refused before its advertised expiry is replaced once, and only once.
pub async fn token_refreshed_once_on_401(_client: &RepositoryClient, env: &SuiteEnv) {
    let tokens = token_server(env);
    let client = env.builder().no_cache().build().expect("client");
    let reference = env.image(&env.fixtures().single_oci);
    client.head_manifest(&reference).await.expect("head");
    assert_eq!(tokens.issued_count(), 1);

    // The registry refuses the cached token once: one fresh token, then success.
    env.proxy
        .inject_when(Matcher::manifests(), Fault::DropAuthorization { times: 1 });
    client
        .head_manifest(&reference)
        .await
        .expect("head after refresh");
    assert_eq!(tokens.issued_count(), 2);

    // Refused again after the refresh: give up with Unauthorized, no loop.
    env.proxy
        .inject_when(Matcher::manifests(), Fault::DropAuthorization { times: 2 });
    let err = client.head_manifest(&reference).await.expect_err("refused twice");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(tokens.issued_count(), 3);

    client.head_manifest(&reference).await.expect("works again");
    assert_eq!(tokens.issued_count(), 3, "the fresh token is reused");
}

/// Tokens are per scope: each repository and the catalog get their own.
pub async fn tokens_per_scope(client: &RepositoryClient, env: &SuiteEnv) {
    let tokens = token_server(env);
    let f = env.fixtures();
    for _ in 0..2 {
        for fixture in [&f.single_oci, &f.single_docker, &f.nested] {
            client.get_config(&env.image(fixture)).await.expect("config");
        }
        client.catalog(&env.target.registry_name).await.expect("catalog");
    }
    assert_eq!(
        tokens.issued_count(),
        4,
        "three repositories and the catalog: {:#?}",
        tokens.requests()
    );
    assert_eq!(tokens.issued_count_for("registry:catalog:*"), 1);
    assert_eq!(tokens.issued_count_for("repository:a/b/c/d:pull"), 1);
}
