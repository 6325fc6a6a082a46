//! A cloud registry as an upstream: the route's client is the cloud
//! provider's, with the cloud's own credentials, against a real Distribution
//! registry standing in for the cloud's.
//!
//! - ECR, emulated by moto: the `aws` provider (chosen by the registry's
//!   host) gets a token from moto's `GetAuthorizationToken` and presents it
//!   as `AWS` / `<account>-auth-token` to a Basic-auth registry.
//! - Artifact Registry: the `gcp` provider exchanges an `authorized_user`
//!   file's refresh token at a fake Google OAuth2 endpoint, and the access
//!   token at the registry's token server as `oauth2accesstoken`.
//! - Alibaba ACR (Enterprise Edition): the `ali` provider gets a temporary
//!   user and password from a fake `cr` API that verifies its ACS3 signature,
//!   date and nonce, and presents them at the registry's token server.
//!
//! The Google and Alibaba fakes are the harness's
//! (`conformance::harness::cloud`), the same the provider crates' own tests
//! run against. Those routes' upstreams sit behind a recording proxy, so a
//! second pull can be seen to fetch no blob.

use crate::common;
use crate::common::{RunningProxy, config_with_routes, fetched_blobs, recorded};
use conformance::harness::cloud::{alibaba, google};
use conformance::harness::fault_proxy::FaultProxy;
use conformance::harness::{AuthMode, ImageFixture, TestRegistry, moto_url};
use registry_ali::AliOption;
use registry_aws::AwsOption;
use registry_proxy::RouteConfig;

/// The password in moto's token for its default account 123456789012.
const MOTO_PASSWORD: &str = "123456789012-auth-token";
const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const ARTIFACT_REGISTRY: &str = "us-docker.pkg.dev";
/// The Enterprise Edition instance `mcreg` that the fake `cr` API knows.
const ACR: &str = "mcreg-registry.cn-hangzhou.cr.aliyuncs.com";

#[tokio::test]
async fn an_ecr_upstream_authenticates_with_the_aws_provider() {
    let registry = TestRegistry::start_as(AuthMode::Basic, "AWS", MOTO_PASSWORD).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut route = RouteConfig::for_registry(ECR).expect("route");
    route.default = true;
    // ECR content: served to anyone only because the route says so.
    route.public = Some(true);
    route.region = Some("us-east-1".into());
    // The registry is on loopback; the ECR API is moto.
    route.endpoint = Some(registry.url());
    for (name, value) in [
        (AwsOption::EndpointUrl, moto_url()),
        (AwsOption::AccessKeyId, "AKIDMCREGMOTO"),
        (AwsOption::SecretAccessKey, "mcreg-moto-secret"),
    ] {
        route.options.insert(name.into(), value.into());
    }
    let proxy = RunningProxy::start(&config_with_routes(dir.path(), vec![route]));

    let image = &registry.fixtures().single_oci;
    // The registry takes nothing but `AWS` and moto's token: the pull
    // proves the route's client was the aws provider's.
    assert_eq!(common::pull_through(&proxy, "single/oci:v1").await, image.digest);
}

#[tokio::test]
async fn an_artifact_registry_upstream_authenticates_with_the_gcp_provider_and_its_oauth_token() {
    use google::{CLIENT_ID, FakeOAuth, Tokens};
    use registry_gcp::{GcpOption, SCOPE, USERNAME};
    const ACCESS_TOKEN: &str = "ya29.proxy-Access-token";

    let oauth = FakeOAuth::start(Tokens::Fixed(ACCESS_TOKEN), 3600);
    // The token server takes nothing but `oauth2accesstoken` and the fake's token.
    let registry = TestRegistry::start_as(AuthMode::Token, USERNAME, ACCESS_TOKEN).await;
    let upstream = recorded(&registry.url()).await;
    let mut route = cloud_route(ARTIFACT_REGISTRY, "gcp", &upstream);
    route.options.insert(
        GcpOption::CredentialsFile.into(),
        oauth.credentials_file().display().to_string(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config_with_routes(dir.path(), vec![route]));

    let image = &registry.fixtures().single_oci;
    pull_twice(&proxy, image, &upstream).await;

    // The fake checked the client id, secret and refresh token, and answered
    // one exchange: the access token lives an hour, both pulls shared it.
    let requests = oauth.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(requests[0].client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(requests[0].scope.as_deref(), Some(SCOPE));
    assert_eq!(requests[0].status, 200);
    assert_registry_tokens_for(&registry, USERNAME);
}

#[tokio::test]
async fn an_acr_upstream_authenticates_with_the_ali_provider_and_a_signed_cr_api_call() {
    use alibaba::{MCREG_INSTANCE_ID, TEMP_TOKEN, TEMP_USER};
    // An AccessKey of this test's own: the fake's call log is per key.
    let account = alibaba::fake().account("proxy-cloud");
    // The token server takes nothing but the temporary user and password
    // the fake hands out.
    let registry = TestRegistry::start_as(AuthMode::Token, TEMP_USER, TEMP_TOKEN).await;
    let upstream = recorded(&registry.url()).await;
    let mut route = cloud_route(ACR, "ali", &upstream);
    // The fake's URL, the AccessKey, and the Enterprise instance.
    for (name, value) in [
        (AliOption::CrEndpoint, alibaba::fake().url()),
        (AliOption::AccessKeyId, account.id.clone()),
        (AliOption::AccessKeySecret, account.secret.clone()),
        (AliOption::InstanceId, MCREG_INSTANCE_ID.to_owned()),
    ] {
        route.options.insert(name.into(), value);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config_with_routes(dir.path(), vec![route]));

    let image = &registry.fixtures().single_oci;
    pull_twice(&proxy, image, &upstream).await;

    // One call, whose signature, date, nonce and content hash the fake
    // verified (a refused call is logged with its error code); the password
    // lives an hour, both pulls shared it.
    let calls = account.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].error, None, "{calls:#?}");
    assert_eq!(
        (calls[0].action.as_str(), calls[0].version.as_str()),
        ("GetAuthorizationToken", "2018-12-01")
    );
    assert_eq!(
        calls[0].params.get("InstanceId").map(String::as_str),
        Some(MCREG_INSTANCE_ID)
    );
    assert_registry_tokens_for(&registry, TEMP_USER);
}

/// The default route for the cloud registry `registry` with `provider`'s
/// client, whose API is at `upstream` (on loopback, not at its name).
fn cloud_route(registry: &str, provider: &str, upstream: &FaultProxy) -> RouteConfig {
    let mut route = RouteConfig::for_registry(registry).expect("route");
    route.default = true;
    route.provider = Some(provider.into());
    // Cloud content: served to anyone only because the route says so.
    route.public = Some(true);
    route.endpoint = Some(upstream.url().to_string());
    route
}

/// Pulls `image` through the cache twice: both times the upstream's digest;
/// the first fetches each blob from the upstream once, the second none.
async fn pull_twice(proxy: &RunningProxy, image: &ImageFixture, upstream: &FaultProxy) {
    let name = format!("{}:{}", image.repository, image.tag.as_deref().expect("a tag"));
    assert_eq!(common::pull_through(proxy, &name).await, image.digest);
    let mut expected: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
    expected.push(&image.config_digest);
    expected.sort();
    assert_eq!(fetched_blobs(upstream), expected, "each blob fetched once");

    assert_eq!(common::pull_through(proxy, &name).await, image.digest);
    assert_eq!(
        fetched_blobs(upstream),
        expected,
        "the second pull fetched no blob"
    );
}

/// The registry's token server was asked, and only ever as `user` (the
/// provider's credentials), and issued every token asked for.
fn assert_registry_tokens_for(registry: &TestRegistry, user: &str) {
    let requests = registry.token_server().expect("token mode").requests();
    assert!(
        !requests.is_empty(),
        "the registry's token server was never asked"
    );
    for request in &requests {
        assert_eq!(request.username.as_deref(), Some(user), "{requests:#?}");
        assert_eq!(request.status, 200, "{requests:#?}");
    }
}
