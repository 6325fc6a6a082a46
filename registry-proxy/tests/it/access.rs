//! Client access control. The private route's upstream needs the cache's
//! own credentials; the route refuses anonymous clients, even for content
//! already cached, and serves the users of the htpasswd file: with Basic
//! credentials, with a token from the cache's token endpoint, and through
//! `podman login`, `skopeo --src-creds` and `ctr --user`. The public route
//! stays anonymous.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{RunningProxy, config, http};
use conformance::harness::{AuthMode, ImageFixture, TestRegistry, fixtures};
use registry_client::Credentials;
use registry_proxy::{AuthConfig, Config};
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";

/// A cache with a private route (`/v2/private/…`, an upstream with Basic
/// auth) and a public one (`/v2/open/…`, an anonymous upstream).
struct Guarded {
    /// The private and the open upstream, kept running.
    _upstreams: (TestRegistry, TestRegistry),
    cache: RunningProxy,
    dir: tempfile::TempDir,
}

impl Guarded {
    async fn start() -> Guarded {
        let (private, open) = tokio::join!(
            TestRegistry::start(AuthMode::Basic),
            TestRegistry::start(AuthMode::None)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = dir.path().join("htpasswd");
        let hash = bcrypt::hash_with_result(PASSWORD, 4).expect("bcrypt");
        std::fs::write(
            &htpasswd,
            format!("{USER}:{}\n", hash.format_for_version(bcrypt::Version::TwoY)),
        )
        .expect("write htpasswd");
        let mut config: Config = config(&dir.path().join("cache"), &[private.host(), open.host()]);
        let (user, password) = private.credentials().expect("Basic");
        config.routes[0].credentials = Some(Credentials::basic(user, password));
        config.routes[0].prefix = Some("private".into());
        config.routes[0].default = false;
        config.routes[1].prefix = Some("open".into());
        config.routes[1].public = Some(true);
        config.auth = Some(AuthConfig {
            htpasswd,
            token_ttl: std::time::Duration::from_secs(60),
            realm: None,
            token_secret: None,
        });
        let cache = RunningProxy::start(&config);
        Guarded {
            _upstreams: (private, open),
            cache,
            dir,
        }
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/{rest}", self.cache.url())
    }

    /// `<cache>/private/<repository>:<tag>`.
    fn private_image(&self, image: &ImageFixture) -> String {
        image.reference(&format!("{}/private", self.cache.host()))
    }

    fn open_image(&self, image: &ImageFixture) -> String {
        image.reference(&format!("{}/open", self.cache.host()))
    }
}

fn as_alice(request: RequestBuilder) -> RequestBuilder {
    request.basic_auth(USER, Some(PASSWORD))
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("text").to_owned())
        .unwrap_or_default()
}

/// Asserts a `401 UNAUTHORIZED` with a bearer challenge; returns the challenge.
async fn refused(request: RequestBuilder) -> String {
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = challenge(&response);
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{body}");
    challenge
}

async fn token(guarded: &Guarded, request: impl Fn(RequestBuilder) -> RequestBuilder) -> reqwest::Response {
    let url = guarded.url("token?service=mcreg-proxy&scope=repository:private/single/oci:pull");
    request(http().get(url)).send().await.expect("token request")
}

#[tokio::test]
async fn anonymous_clients_never_get_a_private_routes_content() {
    let guarded = Guarded::start().await;
    let image = &fixtures().single_oci;
    let layer = &image.layers[0];
    let blob = guarded.url(&format!("v2/private/{}/blobs/{}", image.repository, layer.digest));
    let manifest = guarded.url(&format!("v2/private/{}/manifests/v1", image.repository));

    // Alice's request fills the cache.
    let response = as_alice(http().get(&blob)).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.expect("body"), layer.data);

    // Cached or not, an anonymous client gets a challenge, not the content.
    let challenge = refused(http().get(&blob)).await;
    let realm = format!("realm=\"{}/token\"", guarded.cache.url());
    let scope = format!("scope=\"repository:private/{}:pull\"", image.repository);
    assert!(
        challenge.contains(&realm) && challenge.contains(&scope),
        "{challenge}"
    );
    assert!(challenge.contains("service=\"mcreg-proxy\""), "{challenge}");
    let head = http().head(&blob).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::UNAUTHORIZED);
    refused(http().get(&manifest)).await;
    refused(http().get(guarded.url(&format!("v2/private/{}/tags/list", image.repository)))).await;

    // Wrong credentials are refused as such, never taken for anonymous.
    let challenge = refused(http().get(&blob).basic_auth(USER, Some("looking-glass"))).await;
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    refused(http().get(&blob).bearer_auth("not.a.token")).await;

    // Alice with Basic: a hit.
    let response = as_alice(http().get(&blob)).send().await.expect("GET");
    assert_eq!(response.headers()["x-cache"], "HIT");
    assert_eq!(response.bytes().await.expect("body"), layer.data);

    // Alice with a token from the cache.
    let answer: Value = token(&guarded, as_alice).await.json().await.expect("token JSON");
    let alice_token = answer["token"].as_str().expect("token").to_owned();
    assert_eq!(answer["access_token"], answer["token"]);
    assert!(answer["expires_in"].as_u64().is_some_and(|s| s > 0), "{answer}");
    let response = http()
        .get(&blob)
        .bearer_auth(&alice_token)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.expect("body"), layer.data);
    let wrong = token(&guarded, |r| r.basic_auth(USER, Some("nope"))).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // An anonymous token opens the public route only.
    let answer: Value = token(&guarded, |r| r).await.json().await.expect("token JSON");
    let anonymous = answer["token"].as_str().expect("token").to_owned();
    refused(http().get(&blob).bearer_auth(&anonymous)).await;
    let open = &fixtures().single_docker;
    let open_manifest = guarded.url(&format!("v2/open/{}/manifests/v1", open.repository));
    for request in [
        http().get(&open_manifest),
        http().get(&open_manifest).bearer_auth(&anonymous),
    ] {
        let response = request.send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.bytes().await.expect("body"), open.manifest);
    }

    // The version check challenges anonymous clients (some route is
    // private); the pull statistics name private images, so they are
    // for users too.
    refused(http().get(guarded.url("v2/"))).await;
    let response = as_alice(http().get(guarded.url("v2/")))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    refused(http().get(guarded.url("stats"))).await;
    let response = http()
        .get(guarded.url("stats"))
        .bearer_auth(&alice_token)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
}

/// Runs a tool; its output whatever the outcome.
fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} could not run ({e}): run scripts/install-test-tools.sh"))
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the tool failed because it was not let in.
fn unauthorized(output: &Output) {
    let said = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(!output.status.success(), "an anonymous pull succeeded");
    assert!(
        [
            "unauthorized",
            "authentication required",
            "invalid username/password",
            "401"
        ]
        .iter()
        .any(|refusal| said.contains(refusal)),
        "{said}"
    );
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// podman with its own storage, an empty `registries.conf` and `authfile`.
fn podman(dir: &Path, authfile: &str, args: &[&str]) -> Command {
    let authfile = dir.join(authfile);
    if !authfile.exists() {
        std::fs::write(&authfile, "{}").expect("auth file");
    }
    let mut command = conformance::harness::tools::podman(dir, None);
    command.env("REGISTRY_AUTH_FILE", authfile).args(args);
    command
}

fn skopeo(dir: &Path, args: &[&str]) -> Command {
    let mut command = conformance::harness::tools::skopeo(dir);
    command.args(args);
    command
}

#[tokio::test]
async fn podman_skopeo_and_ctr_log_in_to_a_private_route() {
    let guarded = Guarded::start().await;
    let dir = guarded.dir.path().join("clients");
    std::fs::create_dir_all(&dir).expect("dir");
    let cache = guarded.cache.host();
    let image = &fixtures().single_oci;
    let private = guarded.private_image(image);

    // podman: refused until it logs in.
    unauthorized(&output(&mut podman(
        &dir,
        "anonymous.json",
        &["pull", "--quiet", "--tls-verify=false", &private],
    )));
    succeeded(&output(&mut podman(
        &dir,
        "alice.json",
        &["login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, &cache],
    )));
    succeeded(&output(&mut podman(
        &dir,
        "alice.json",
        &["pull", "--quiet", "--tls-verify=false", &private],
    )));
    let digest = succeeded(&output(&mut podman(
        &dir,
        "alice.json",
        &["image", "inspect", "--format", "{{.Digest}}", &private],
    )));
    assert_eq!(digest.trim(), image.digest);
    // A wrong password does not log in.
    unauthorized(&output(&mut podman(
        &dir,
        "mallory.json",
        &["login", "--tls-verify=false", "-u", USER, "-p", "nope", &cache],
    )));
    // The public route: anonymous.
    let open = &fixtures().single_docker;
    succeeded(&output(&mut podman(
        &dir,
        "anonymous.json",
        &["pull", "--quiet", "--tls-verify=false", &guarded.open_image(open)],
    )));

    // skopeo with and without --src-creds.
    let layout = |name: &str| format!("oci:{}:v1", utf8(&dir.join(name)));
    let source = format!("docker://{private}");
    unauthorized(&output(&mut skopeo(
        &dir,
        &["copy", "--src-tls-verify=false", &source, &layout("anonymous")],
    )));
    let creds = format!("{USER}:{PASSWORD}");
    succeeded(&output(&mut skopeo(
        &dir,
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &source,
            &layout("alice"),
        ],
    )));
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("alice/index.json")).expect("index.json"))
            .expect("JSON");
    assert_eq!(index["manifests"][0]["digest"], image.digest.as_str());

    // containerd: POSTs for an OAuth2 token first, then falls back to GET.
    let containerd = conformance::harness::Containerd::start();
    let ctr = |args: &[&str]| {
        let mut command = containerd.ctr_command();
        command.args(["content", "fetch", "--plain-http"]).args(args);
        output(&mut command)
    };
    unauthorized(&ctr(&[&private]));
    succeeded(&ctr(&["--user", &creds, &private]));
}
