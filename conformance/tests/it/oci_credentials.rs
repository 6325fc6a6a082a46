//! The generic `oci` provider with credentials from a docker `config.json` (`auths`,
//! `identitytoken`, `credHelpers`, `credsStore`) against a real registry, and the token
//! server's OAuth2 endpoint those flows rely on.
//!
//! Hermetic: every client reads a config written to a temp dir ([`OciOption::DockerConfig`]) and
//! looks helpers up in a temp dir ([`OciOption::CredentialHelperDir`]), never `~/.docker` or `PATH`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use conformance::harness::fault_proxy::{FaultProxy, RecordedRequest};
use conformance::harness::token_server::SERVICE;
use conformance::harness::{ADMIN, AuthMode, TestRegistry, TokenRequest, USER};
use registry_client::driver::oci::OciOption;
use registry_client::{Error, ImageReference, RepositoryClient, RetryConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;

/// Every manifest type, as a pulling client would send.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// The scope the client asks for when pulling `single/oci`.
const SINGLE_OCI_PULL: &str = "repository:single/oci:pull";

/// The `client_id` registry-client sends with OAuth2 requests.
const CLIENT_ID: &str = "mcreg";

/// The message credential helpers print when they have nothing for a server.
const NOT_FOUND: &str = "credentials not found in native keychain";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A temp dir holding `config.json` and `bin/` (the helper search dir).
struct DockerDir {
    dir: tempfile::TempDir,
}

impl DockerDir {
    fn new() -> DockerDir {
        let dir = tempfile::Builder::new()
            .prefix("mcreg-oci-credentials-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir(dir.path().join("bin")).expect("bin dir");
        DockerDir { dir }
    }

    /// A dir with `config.json` = `config`.
    fn with_config(config: &Value) -> DockerDir {
        let d = DockerDir::new();
        d.write_config(&serde_json::to_vec_pretty(config).unwrap());
        d
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn counter_path(&self, helper: &str) -> PathBuf {
        self.dir.path().join(format!("{helper}.runs"))
    }

    fn write_config(&self, bytes: &[u8]) {
        std::fs::write(self.config_path(), bytes).expect("write config.json");
    }

    /// Writes `bin/docker-credential-<name>`: it appends a line to [`counter_path`] on every run,
    /// checks it was asked to `get` the server `server_url`, and answers `user`/`secret`.
    fn helper(&self, name: &str, server_url: &str, user: &str, secret: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let counter = self.counter_path(name);
        let script = format!(
            r#"#!/bin/sh
echo "$*" >> '{counter}'
[ "$1" = get ] || {{ echo "unexpected args: $*" >&2; exit 2; }}
url=$(cat)
if [ "$url" != '{server_url}' ]; then echo '{NOT_FOUND}'; exit 1; fi
printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}\n' "$url"
"#,
            counter = counter.display(),
        );
        let path = self.bin().join(format!("docker-credential-{name}"));
        std::fs::write(&path, script).expect("write helper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod helper");
    }

    /// How many times helper `name` ran.
    fn runs(&self, name: &str) -> usize {
        std::fs::read_to_string(self.counter_path(name))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// The `oci` provider reading only this dir.
    fn client(&self) -> RepositoryClient {
        self.builder().build().expect("build the oci client")
    }

    fn builder(&self) -> registry_client::RepositoryClientBuilder {
        RepositoryClient::builder("oci")
            .option(OciOption::DockerConfig, self.config_path().to_str().unwrap())
            .option(OciOption::CredentialHelperDir, self.bin().to_str().unwrap())
            .retry(
                RetryConfig::default()
                    .with_initial_backoff(Duration::from_millis(10))
                    .with_max_backoff(Duration::from_millis(50)),
            )
            // Every call below must reach the registry.
            .no_cache()
    }
}

/// A registry behind a transparent fault proxy; references use the proxy's host.
struct Env {
    registry: TestRegistry,
    proxy: FaultProxy,
}

impl Env {
    async fn start(mode: AuthMode) -> Env {
        let registry = TestRegistry::start(mode).await;
        let proxy = FaultProxy::start(Url::parse(&registry.url()).unwrap()).await;
        Env { registry, proxy }
    }

    /// The registry name in references: `127.0.0.1:<proxy port>`.
    fn host(&self) -> String {
        self.proxy.host()
    }

    fn user_password(&self) -> String {
        self.registry.credentials().expect("credentials").1
    }

    fn single_oci(&self) -> ImageReference {
        reference(&self.registry.fixtures().single_oci.reference(&self.host()))
    }

    fn single_docker(&self) -> ImageReference {
        reference(&self.registry.fixtures().single_docker.reference(&self.host()))
    }

    fn token_requests(&self) -> Vec<TokenRequest> {
        self.registry.token_server().expect("token mode").requests()
    }

    /// The `Authorization` headers the proxy saw, in order.
    fn authorizations(&self) -> Vec<String> {
        self.proxy
            .requests()
            .into_iter()
            .filter_map(|r: RecordedRequest| r.authorization)
            .collect()
    }
}

fn reference(s: &str) -> ImageReference {
    s.parse().unwrap_or_else(|e| panic!("reference {s}: {e}"))
}

/// Manifest, config and tags of `single/oci:v1`, checked against the fixture.
async fn pull_single_oci(client: &RepositoryClient, env: &Env) {
    let fixture = &env.registry.fixtures().single_oci;
    let image = env.single_oci();
    let manifest = client.get_manifest(&image).await.expect("get_manifest");
    assert_eq!(manifest.descriptor.digest, fixture.digest);
    assert_eq!(manifest.descriptor.media_type, fixture.media_type);
    assert_eq!(manifest.bytes, fixture.manifest);
    let config = client.get_config(&image).await.expect("get_config");
    assert_eq!(config.digest, fixture.config_digest);
    assert_eq!(config.bytes, fixture.config);
    let tags = client.list_tags(&image).await.expect("list_tags");
    assert_eq!(tags, vec!["v1".to_string()]);
}

/// `err`'s `Display` and `Debug` (plain and pretty).
fn shown(err: &Error) -> String {
    format!("{err} | {err:?} | {err:#?}")
}

fn assert_basic_only(env: &Env, user: &str, password: &str) {
    let expected = format!("Basic {}", b64(&format!("{user}:{password}")));
    let auths = env.authorizations();
    assert!(!auths.is_empty(), "the registry saw no credentials");
    assert!(auths.iter().all(|a| *a == expected), "{auths:?}");
}

// ---------------------------------------------------------------------------------------------
// auths
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn auths_base64_auth_in_basic_mode() {
    let env = Env::start(AuthMode::Basic).await;
    let password = env.user_password();
    let docker = DockerDir::with_config(&json!({
        "auths": { env.host(): { "auth": b64(&format!("{USER}:{password}")) } }
    }));
    pull_single_oci(&docker.client(), &env).await;
    assert_basic_only(&env, USER, &password);
}

#[tokio::test]
async fn auths_base64_auth_in_token_mode() {
    let env = Env::start(AuthMode::Token).await;
    let password = env.user_password();
    // Keyed the way `docker login` writes it for a non-Hub registry: with a scheme.
    let docker = DockerDir::with_config(&json!({
        "auths": { format!("https://{}", env.host()): { "auth": b64(&format!("{USER}:{password}")) } }
    }));
    pull_single_oci(&docker.client(), &env).await;

    let requests = env.token_requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.grant_type, None, "classic GET flow: {r:?}");
        assert_eq!(r.username.as_deref(), Some(USER), "{r:?}");
        assert_eq!(r.service.as_deref(), Some(SERVICE), "{r:?}");
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert!(
        env.registry
            .token_server()
            .unwrap()
            .issued_count_for(SINGLE_OCI_PULL)
            >= 1
    );
    // The registry itself only ever saw bearer tokens.
    let auths = env.authorizations();
    assert!(!auths.is_empty());
    assert!(auths.iter().all(|a| a.starts_with("Bearer ")), "{auths:?}");
}

#[tokio::test]
async fn auths_username_and_password_fields() {
    let env = Env::start(AuthMode::Basic).await;
    let password = env.user_password();
    let docker = DockerDir::with_config(&json!({
        "auths": { env.host(): { "username": USER, "password": password } }
    }));
    pull_single_oci(&docker.client(), &env).await;
    assert_basic_only(&env, USER, &password);
}

#[tokio::test]
async fn identitytoken_is_exchanged_with_a_refresh_token_grant() {
    let env = Env::start(AuthMode::Token).await;
    let server = env.registry.token_server().unwrap();
    let refresh = server.issue_refresh_token(USER);
    let password = env.user_password();
    let docker = DockerDir::with_config(&json!({
        "auths": { env.host(): { "auth": b64(&format!("{USER}:")), "identitytoken": refresh } }
    }));
    pull_single_oci(&docker.client(), &env).await;

    let requests = server.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        // A POST with the refresh token: never a GET, never the password grant.
        assert_eq!(r.grant_type.as_deref(), Some("refresh_token"), "{r:?}");
        assert_eq!(r.client_id.as_deref(), Some(CLIENT_ID), "{r:?}");
        assert_eq!(r.service.as_deref(), Some(SERVICE), "{r:?}");
        assert_eq!(r.username.as_deref(), Some(USER), "bound user: {r:?}");
        assert_eq!(r.status, 200, "{r:?}");
    }
    let single = requests
        .iter()
        .find(|r| r.scopes == [SINGLE_OCI_PULL])
        .expect("a token for single/oci");
    assert_eq!(single.granted.len(), 1);
    assert_eq!(single.granted[0].name, "single/oci");
    assert_eq!(single.granted[0].actions, ["pull"]);
    // The registry saw only bearer tokens; the refresh token and password went nowhere else.
    let auths = env.authorizations();
    assert!(!auths.is_empty());
    for a in &auths {
        assert!(a.starts_with("Bearer "), "{a}");
        assert!(!a.contains(&refresh), "{a}");
        assert!(!a.contains(&password), "{a}");
    }
}

#[tokio::test]
async fn unknown_identitytoken_is_unauthorized_and_not_shown() {
    let env = Env::start(AuthMode::Token).await;
    let refresh = "not-a-refresh-token-5d1e9a";
    let docker = DockerDir::with_config(&json!({
        "auths": { env.host(): { "identitytoken": refresh } }
    }));
    let err = docker.client().get_manifest(&env.single_oci()).await.unwrap_err();
    let text = shown(&err);
    assert!(matches!(err, Error::Unauthorized { .. }), "{text}");
    assert!(text.contains("authentication required"), "{text}");
    assert!(!text.contains(refresh), "{text}");

    let requests = env.token_requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.grant_type.as_deref(), Some("refresh_token"), "{r:?}");
        assert_eq!(r.username, None, "{r:?}");
        assert_eq!(r.status, 401, "{r:?}");
    }
    assert!(env.authorizations().is_empty(), "{:?}", env.authorizations());
}

// ---------------------------------------------------------------------------------------------
// credential helpers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cred_helpers_run_once_per_host() {
    let env = Env::start(AuthMode::Basic).await;
    let password = env.user_password();
    let docker = DockerDir::with_config(&json!({
        // credHelpers win over auths: this wrong password must never be sent.
        "auths": { env.host(): { "auth": b64(&format!("{USER}:wrong-auths-password")) } },
        "credHelpers": { env.host(): "fake", "other.example:5000": "not-installed" },
    }));
    docker.helper("fake", &env.host(), USER, &password);

    let client = docker.client();
    let image = env.single_oci();
    let fixture = &env.registry.fixtures().single_oci;
    for _ in 0..2 {
        let manifest = client.get_manifest(&image).await.unwrap();
        assert_eq!(manifest.descriptor.digest, fixture.digest);
    }
    assert_eq!(
        client.get_config(&image).await.unwrap().digest,
        fixture.config_digest
    );
    assert_eq!(client.list_tags(&image).await.unwrap(), ["v1"]);
    let docker_manifest = client.get_manifest(&env.single_docker()).await.unwrap();
    assert_eq!(
        docker_manifest.descriptor.digest,
        env.registry.fixtures().single_docker.digest
    );

    assert_eq!(docker.runs("fake"), 1, "the helper ran once for one host");
    assert_eq!(
        std::fs::read_to_string(docker.counter_path("fake")).unwrap(),
        "get\n"
    );
    assert_basic_only(&env, USER, &password);
    // Five calls, each authenticated.
    assert!(env.authorizations().len() >= 5, "{:?}", env.authorizations());
}

#[tokio::test]
async fn creds_store_is_the_fallback() {
    let env = Env::start(AuthMode::Basic).await;
    let password = env.user_password();
    let docker = DockerDir::with_config(&json!({
        // What `docker login` writes when the store holds the secret: an empty entry.
        "auths": { env.host(): {} },
        "credsStore": "teststore",
        "credHelpers": { "other.example:5000": "not-installed" },
    }));
    docker.helper("teststore", &env.host(), USER, &password);

    pull_single_oci(&docker.client(), &env).await;
    assert_eq!(docker.runs("teststore"), 1);
    assert_basic_only(&env, USER, &password);
}

// ---------------------------------------------------------------------------------------------
// what must not happen
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn credentials_never_go_to_another_host() {
    let env = Env::start(AuthMode::Basic).await;
    // The *right* password, but filed under other hosts: none of them is this registry.
    let password = env.user_password();
    let auth = b64(&format!("{USER}:{password}"));
    let docker = DockerDir::with_config(&json!({
        "auths": {
            "other.example:5000": { "auth": auth },
            "127.0.0.1": { "auth": auth },
            "https://127.0.0.1:1/v2/": { "username": USER, "password": password },
            format!("{}.evil.example", env.host()): { "auth": auth },
        },
        "credHelpers": { "helper.example:5000": "counted" },
    }));
    docker.helper("counted", "helper.example:5000", USER, &password);

    let err = docker.client().get_manifest(&env.single_oci()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unauthorized { host, .. } if *host == env.host()),
        "{}",
        shown(&err)
    );
    assert!(!shown(&err).contains(&password));

    let requests = env.proxy.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.status == Some(401)), "{requests:?}");
    let with_auth: Vec<_> = requests.iter().filter(|r| r.had_authorization).collect();
    assert!(with_auth.is_empty(), "credentials were sent: {with_auth:?}");
    assert_eq!(docker.runs("counted"), 0, "another host's helper ran");
}

#[tokio::test]
async fn malformed_config_fails_build_naming_the_path_not_the_secret() {
    let secret = "s3cret-in-config-71c0";
    let cases: [(&str, String); 3] = [
        (
            "truncated",
            format!(r#"{{"auths": {{"ghcr.io": {{"auth": "{secret}""#),
        ),
        (
            "unquoted",
            format!(r#"{{"auths": {{"ghcr.io": {{"password": {secret}}}}}}}"#),
        ),
        ("wrong type", format!(r#"{{"auths": {{"ghcr.io": "{secret}"}}}}"#)),
    ];
    for (what, content) in cases {
        let docker = DockerDir::new();
        docker.write_config(content.as_bytes());
        let err = docker.builder().build().unwrap_err();
        let text = shown(&err);
        assert!(matches!(err, Error::InvalidConfig(_)), "{what}: {text}");
        let path = docker.config_path().display().to_string();
        assert!(err.to_string().contains(&path), "{what}: {text}");
        assert!(!text.contains(secret), "{what}: {text}");
    }
}

#[tokio::test]
async fn auth_that_is_not_base64_fails_naming_the_entry_not_the_value() {
    let env = Env::start(AuthMode::Basic).await;
    let value = "not*base64*s3cret-4b9f";
    let docker = DockerDir::with_config(&json!({ "auths": { env.host(): { "auth": value } } }));
    let err = docker.client().get_manifest(&env.single_oci()).await.unwrap_err();
    let text = shown(&err);
    assert!(matches!(err, Error::InvalidConfig(_)), "{text}");
    assert!(
        text.contains(&docker.config_path().display().to_string()),
        "{text}"
    );
    assert!(text.contains(&env.host()), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(env.authorizations().is_empty());
}

#[tokio::test]
async fn wrong_password_in_basic_mode_is_unauthorized_and_not_shown() {
    let env = Env::start(AuthMode::Basic).await;
    let wrong = "wrong-password-9e27c1";
    let docker = DockerDir::with_config(&json!({
        "auths": { env.host(): { "auth": b64(&format!("{USER}:{wrong}")) } }
    }));
    let err = docker.client().get_manifest(&env.single_oci()).await.unwrap_err();
    let text = shown(&err);
    assert!(
        matches!(&err, Error::Unauthorized { host, .. } if *host == env.host()),
        "{text}"
    );
    assert!(!text.contains(wrong), "{text}");
    assert!(!text.contains(&b64(&format!("{USER}:{wrong}"))), "{text}");
    // Refused credentials are not tried again: one anonymous attempt, one with the password.
    assert_eq!(
        env.authorizations(),
        [format!("Basic {}", b64(&format!("{USER}:{wrong}")))]
    );
}

#[tokio::test]
async fn wrong_password_in_token_mode_is_unauthorized_and_not_shown() {
    let env = Env::start(AuthMode::Token).await;
    let wrong = "wrong-password-0f5a3d";
    let docker = DockerDir::with_config(&json!({
        "auths": { env.host(): { "username": USER, "password": wrong } }
    }));
    let err = docker.client().get_manifest(&env.single_oci()).await.unwrap_err();
    let text = shown(&err);
    let realm_host = env.registry.token_server().unwrap().addr().to_string();
    assert!(
        matches!(&err, Error::Unauthorized { host, .. } if *host == realm_host),
        "{text}"
    );
    assert!(!text.contains(wrong), "{text}");

    let requests = env.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].grant_type, None);
    assert_eq!(requests[0].username.as_deref(), Some(USER));
    assert_eq!(requests[0].status, 401);
    assert!(env.authorizations().is_empty(), "{:?}", env.authorizations());
}

#[tokio::test]
async fn empty_credential_helper_dir_is_rejected() {
    let docker = DockerDir::new();
    let err = docker
        .builder()
        .option(OciOption::CredentialHelperDir, "")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    assert!(
        err.to_string().contains(OciOption::CredentialHelperDir.name()),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The token server's OAuth2 endpoint, with plain reqwest
// ---------------------------------------------------------------------------------------------

async fn post_token(registry: &TestRegistry, form: &(impl serde::Serialize + ?Sized)) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(registry.token_server().unwrap().realm())
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// GET a manifest straight from the registry with a bearer token.
async fn manifest_with_token(registry: &TestRegistry, repo: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/v2/{repo}/manifests/v1", registry.url()))
        .header("accept", ACCEPT)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn error_code(body: &Value) -> (&str, &str) {
    let e = &body["errors"][0];
    (
        e["code"].as_str().unwrap_or(""),
        e["detail"].as_str().unwrap_or(""),
    )
}

#[tokio::test]
async fn oauth_password_grant_then_refresh_grant() {
    let registry = TestRegistry::start(AuthMode::Token).await;
    let server = registry.token_server().unwrap();
    let (_, password) = registry.credentials().unwrap();
    let fixtures = registry.fixtures();

    let (status, body) = post_token(
        &registry,
        &[
            ("grant_type", "password"),
            ("username", USER),
            ("password", &password),
            ("service", SERVICE),
            ("scope", SINGLE_OCI_PULL),
            ("client_id", "oauth-test"),
            ("access_type", "offline"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], SINGLE_OCI_PULL);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'), "{body}");
    assert!(
        body.get("token").is_none(),
        "OAuth2 answers carry access_token only: {body}"
    );
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh.len(), 32);
    let res = manifest_with_token(&registry, "single/oci", access).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["docker-content-digest"],
        fixtures.single_oci.digest.as_str()
    );

    // The refresh token gets tokens for other scopes, and is handed back.
    let scope = "repository:single/docker:pull";
    let (status, body) = post_token(
        &registry,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", SERVICE),
            ("scope", scope),
            ("client_id", "oauth-test"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], scope);
    assert_eq!(body["refresh_token"], refresh.as_str());
    let res = manifest_with_token(&registry, "single/docker", body["access_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["docker-content-digest"],
        fixtures.single_docker.digest.as_str()
    );

    let requests = server.requests();
    let grants: Vec<_> = requests.iter().map(|r| r.grant_type.as_deref()).collect();
    assert_eq!(grants, [Some("password"), Some("refresh_token")]);
    for r in &requests {
        assert_eq!(r.client_id.as_deref(), Some("oauth-test"));
        assert_eq!(r.username.as_deref(), Some(USER));
        assert_eq!(r.status, 200);
    }
    assert_eq!(requests[0].scopes, [SINGLE_OCI_PULL]);
    assert_eq!(requests[1].scopes, [scope]);
    assert_eq!(server.issued_count(), 2);
}

#[tokio::test]
async fn oauth_online_password_grant_has_no_refresh_token_and_checks_the_password() {
    let registry = TestRegistry::start(AuthMode::Token).await;
    let (_, password) = registry.credentials().unwrap();
    let form = |password: &str| {
        vec![
            ("grant_type", "password".to_owned()),
            ("username", USER.to_owned()),
            ("password", password.to_owned()),
            ("service", SERVICE.to_owned()),
            ("scope", SINGLE_OCI_PULL.to_owned()),
            ("client_id", "oauth-test".to_owned()),
        ]
    };
    let (status, body) = post_token(&registry, &form(&password)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["scope"], SINGLE_OCI_PULL);

    let (status, body) = post_token(&registry, &form("not-the-password")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), ("UNAUTHORIZED", "invalid credentials"));
    assert!(!body.to_string().contains("not-the-password"));

    let requests = registry.token_server().unwrap().requests();
    let statuses: Vec<_> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401]);
    assert_eq!(requests[1].username.as_deref(), Some(USER));
}

#[tokio::test]
async fn oauth_refresh_tokens_are_bound_to_their_user() {
    let registry = TestRegistry::start(AuthMode::Token).await;
    let server = registry.token_server().unwrap();
    let user_token = server.issue_refresh_token(USER);
    let admin_token = server.issue_refresh_token(ADMIN);
    assert_ne!(user_token, admin_token);
    assert_ne!(
        server.issue_refresh_token(USER),
        user_token,
        "refresh tokens are random"
    );
    let push = "repository:single/oci:pull,push";
    let refresh = |token: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", token.to_owned()),
            ("service", SERVICE.to_owned()),
            ("scope", push.to_owned()),
            ("client_id", "oauth-test".to_owned()),
        ]
    };

    let (status, body) = post_token(&registry, &refresh(&user_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], SINGLE_OCI_PULL, "a user gets pull only");

    let (status, body) = post_token(&registry, &refresh(&admin_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], push, "the admin gets push too");

    let (status, body) = post_token(&registry, &refresh("unknown-refresh-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), ("UNAUTHORIZED", "invalid refresh token"));
    assert_eq!(body["errors"][0]["message"], "authentication required");

    let users: Vec<_> = server
        .requests()
        .into_iter()
        .map(|r| (r.username, r.status))
        .collect();
    assert_eq!(
        users,
        [
            (Some(USER.to_owned()), 200),
            (Some(ADMIN.to_owned()), 200),
            (None, 401)
        ]
    );
}

#[tokio::test]
async fn oauth_rejects_incomplete_requests() {
    let registry = TestRegistry::start(AuthMode::Token).await;
    let server = registry.token_server().unwrap();
    let refresh = server.issue_refresh_token(USER);
    let base = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", SERVICE),
        ("client_id", "oauth-test"),
    ];
    let without = |field: &str| {
        base.iter()
            .copied()
            .filter(|(k, _)| *k != field)
            .collect::<Vec<_>>()
    };

    for field in ["grant_type", "service", "client_id", "refresh_token"] {
        let (status, body) = post_token(&registry, &without(field)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "without {field}: {body}");
        assert_eq!(
            error_code(&body),
            ("MISSING_REQUIRED_FIELD", format!("missing {field}").as_str())
        );
    }
    let mut unknown = without("grant_type");
    unknown.push(("grant_type", "authorization_code"));
    let (status, body) = post_token(&registry, &unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), ("UNSUPPORTED_VALUE", "unknown grant_type"));

    let mut bad_access = base.to_vec();
    bad_access.push(("access_type", "forever"));
    let (status, body) = post_token(&registry, &bad_access).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), ("UNSUPPORTED_VALUE", "unknown access_type"));

    // Not a form.
    let response = reqwest::Client::new()
        .post(server.realm())
        .json(&json!({"grant_type": "refresh_token", "refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Without a scope: a token that grants nothing.
    let (status, body) = post_token(&registry, &base).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "");

    let statuses: Vec<_> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 400, 400, 400, 400, 400, 400, 200]);
    assert_eq!(server.issued_count(), 1);
}

#[tokio::test]
async fn classic_get_is_unchanged_and_logged_without_a_grant_type() {
    let registry = TestRegistry::start(AuthMode::Token).await;
    let server = registry.token_server().unwrap();
    let (user, password) = registry.credentials().unwrap();
    let response = reqwest::Client::new()
        .get(server.realm())
        .query(&[("service", SERVICE), ("scope", SINGLE_OCI_PULL)])
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body.get("refresh_token").is_none());
    assert!(body.get("scope").is_none());
    let res = manifest_with_token(&registry, "single/oci", body["token"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].grant_type, None);
    assert_eq!(requests[0].client_id, None);
    assert_eq!(requests[0].username.as_deref(), Some(USER));
    assert_eq!(requests[0].scopes, [SINGLE_OCI_PULL]);
}

#[test]
#[should_panic(expected = "no user")]
fn refresh_tokens_are_only_for_known_users() {
    let server = conformance::harness::TokenServer::start("pw1", "pw2");
    server.issue_refresh_token("nobody");
}
