//! The whole conformance suite against a token-auth Distribution registry whose token server
//! accepts only the temporary user and password the fake `cr` API hands out. The client is
//! given no registry credentials: the provider gets them from `GetAuthorizationToken`
//! (Enterprise Edition, signed and verified), for the host written in every reference.

use crate::common::AccountExt as _;
use conformance::harness::AuthMode;
use conformance::harness::cloud::alibaba::{MCREG_INSTANCE_ID, TEMP_TOKEN, TEMP_USER, fake};
use conformance::suite::{BoxFuture, DISTRIBUTION, Endpoint, SuiteEnv, Target};
use registry_client::RepositoryClientBuilder;

fn builder(target: &Target) -> RepositoryClientBuilder {
    fake()
        .account("conformance")
        .builder()
        .option(registry_ali::AliOption::InstanceId, MCREG_INSTANCE_ID)
        .endpoint(target.endpoint.as_str())
}

const ENDPOINT: Endpoint = Endpoint {
    name: "ali (fake cr API, Distribution)",
    capabilities: DISTRIBUTION,
};

fn start(mode: AuthMode) -> BoxFuture<'static, SuiteEnv> {
    Box::pin(SuiteEnv::start_as(
        mode,
        Some("mcreg-registry.cn-hangzhou.cr.aliyuncs.com"),
        builder,
        Some((TEMP_USER, TEMP_TOKEN)),
    ))
}

conformance::conformance_tests!(endpoint = ENDPOINT, start = start, modes = [Token]);

fn counted_builder(target: &Target) -> RepositoryClientBuilder {
    fake()
        .account("conformance-counted")
        .builder()
        .option(registry_ali::AliOption::InstanceId, MCREG_INSTANCE_ID)
        .endpoint(target.endpoint.as_str())
}

/// The suite above is not vacuous: its credentials come from the fake, once per client.
#[tokio::test]
async fn suite_credentials_come_from_the_fake_api() {
    let env = SuiteEnv::start_as(
        AuthMode::Token,
        Some("mcreg-registry.cn-hangzhou.cr.aliyuncs.com"),
        counted_builder,
        Some((TEMP_USER, TEMP_TOKEN)),
    )
    .await;
    let client = env.client();
    let f = env.fixtures();
    for fixture in [&f.single_oci, &f.single_docker, &f.nested] {
        let config = client.get_config(&env.image(fixture)).await.expect("config");
        assert_eq!(config.digest, fixture.config_digest);
    }
    let account = fake().account("conformance-counted");
    let calls = account.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].action, "GetAuthorizationToken");
    assert_eq!(calls[0].version, "2018-12-01");
    assert_eq!(
        calls[0].params.get("InstanceId").map(String::as_str),
        Some(MCREG_INSTANCE_ID)
    );
    assert_eq!(calls[0].error, None);
    let tokens = env.registry.token_server().expect("token mode").requests();
    assert_eq!(tokens.len(), 3, "one registry token per repository: {tokens:#?}");
    for request in &tokens {
        assert_eq!(request.username.as_deref(), Some(TEMP_USER));
        assert_eq!(request.status, 200);
    }
}
