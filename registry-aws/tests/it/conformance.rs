//! The whole conformance suite, with ECR's side emulated by `moto`: the
//! provider gets its token from moto's `GetAuthorizationToken` and presents
//! it as `AWS` / `123456789012-auth-token` to a real Distribution registry.
//!
//! moto answers `{"authorizationData": [{"authorizationToken":
//! "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu", "expiresAt": 1420070400,
//! "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}]}`:
//! base64 of `AWS:123456789012-auth-token`, expiring 2015-01-01T00:00:00Z. So
//! every token arrives expired, is used once and never cached: every request
//! that needs credentials asks moto.

use conformance::harness::AuthMode;
use conformance::harness::moto_url;
use conformance::suite::{BoxFuture, DISTRIBUTION, Endpoint, SuiteEnv, Target};
use registry_aws::AwsOption;
use registry_client::{AuthRequest, Challenge, ProviderConfig, RepositoryClient, RepositoryClientBuilder};

/// The password in moto's token for its default account 123456789012.
const MOTO_PASSWORD: &str = "123456789012-auth-token";
const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// The `aws` client: registry requests to the target, the ECR API to moto.
fn builder(target: &Target) -> RepositoryClientBuilder {
    RepositoryClient::builder("aws")
        .endpoint(target.endpoint.as_str())
        .region("us-east-1")
        .option(AwsOption::EndpointUrl, moto_url())
        .option(AwsOption::AccessKeyId, "AKIDMCREGMOTO")
        .option(AwsOption::SecretAccessKey, "mcreg-moto-secret")
}

#[tokio::test]
async fn moto_token_is_basic_aws_with_the_accounts_password() {
    let mut config = ProviderConfig::default();
    config.region = Some("us-east-1".into());
    for (name, value) in [
        (AwsOption::EndpointUrl, moto_url()),
        (AwsOption::AccessKeyId, "AKIDMCREGMOTO"),
        (AwsOption::SecretAccessKey, "mcreg-moto-secret"),
    ] {
        config.options.insert(name.into(), value.into());
    }
    let provider = registry_client::driver::provider("aws")
        .unwrap()
        .build(&config)
        .unwrap();
    let challenge = &Challenge::parse_all("Basic realm=\"ecr\"")[0];
    let request = AuthRequest {
        host: REGISTRY,
        challenge,
        scope: Some("repository:x:pull"),
    };
    for _ in 0..2 {
        let credentials = provider.credentials(&request).await.unwrap().expect("a token");
        assert_eq!(credentials.username(), Some("AWS"));
        assert_eq!(credentials.secret(), MOTO_PASSWORD);
    }
}

const ENDPOINT: Endpoint = Endpoint {
    name: "aws (moto ECR auth, Distribution)",
    capabilities: DISTRIBUTION,
};

fn start(mode: AuthMode) -> BoxFuture<'static, SuiteEnv> {
    Box::pin(SuiteEnv::start_as(
        mode,
        Some(REGISTRY),
        builder,
        Some(("AWS", MOTO_PASSWORD)),
    ))
}

conformance::conformance_tests!(endpoint = ENDPOINT, start = start, modes = [Basic]);
