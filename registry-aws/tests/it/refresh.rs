//! ECR tokens against a fake ECR API of our own and a real registry that
//! accepts `AWS` / the token's password: caching, refresh at half-life,
//! keeping a valid token when a refresh fails, regions, ECR Public, and the
//! mapping of API errors.

use std::time::Duration;

use conformance::harness::cloud::aws::{
    ACCESS_KEY_ID, Answer, Call, ECR_PUBLIC_TARGET, ECR_TARGET, FakeEcr, SECRET_KEY, SESSION_TOKEN,
};
use conformance::harness::{AuthMode, TestRegistry};
use registry_aws::AwsOption;
use registry_client::{
    Credentials, Error, ImageReference, RepositoryClient, RepositoryClientBuilder, RetryConfig,
};

const ECR_HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const PASSWORD: &str = "ecr-Token-Password-never-shown";

fn token(lifetime: Duration) -> Answer {
    Answer::Token {
        password: PASSWORD.to_owned(),
        lifetime,
    }
}

fn reference(registry: &TestRegistry, host: &str) -> ImageReference {
    registry.fixtures().single_oci.reference(host).parse().unwrap()
}

/// The `aws` client for `reference`, its registry requests sent to `registry`,
/// its ECR API calls to `fake`, signed with the fake's keys.
fn builder(reference: &ImageReference, registry: &TestRegistry, fake: &FakeEcr) -> RepositoryClientBuilder {
    RepositoryClient::builder_for(reference)
        .endpoint(registry.url())
        .option(AwsOption::EndpointUrl, fake.url())
        .option(AwsOption::AccessKeyId, ACCESS_KEY_ID)
        .option(AwsOption::SecretAccessKey, SECRET_KEY)
        .option(AwsOption::SessionToken, SESSION_TOKEN)
        .no_cache()
        .retry(RetryConfig::disabled())
}

fn ecr_call(region: &str) -> Call {
    Call {
        target: ECR_TARGET.to_owned(),
        access_key_id: ACCESS_KEY_ID.to_owned(),
        region: region.to_owned(),
        service: "ecr".to_owned(),
        session_token: Some(SESSION_TOKEN.to_owned()),
    }
}

#[tokio::test]
async fn token_reused_until_half_life_then_refreshed() {
    let registry = TestRegistry::start_as(AuthMode::Basic, "AWS", PASSWORD).await;
    let fake = FakeEcr::start(token(Duration::from_secs(3))).await;
    let reference = reference(&registry, ECR_HOST);
    // The host names eu-west-1; it wins over the builder's region.
    let client = builder(&reference, &registry, &fake)
        .region("us-west-2")
        .build()
        .unwrap();
    assert_eq!(client.provider_id(), "aws");
    let digest = &registry.fixtures().single_oci.digest;

    for _ in 0..3 {
        assert_eq!(&client.head_manifest(&reference).await.unwrap().digest, digest);
    }
    assert_eq!(
        fake.calls(),
        vec![ecr_call("eu-west-1")],
        "one token for three requests"
    );

    // Past half of its 3 s lifetime: refreshed once, then reused.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(&client.head_manifest(&reference).await.unwrap().digest, digest);
    assert_eq!(fake.call_count(), 2, "refreshed after half-life");
    client.get_config(&reference).await.unwrap();
    assert_eq!(fake.call_count(), 2, "the refreshed token is reused");
}

#[tokio::test]
async fn failed_refresh_keeps_the_valid_token() {
    let registry = TestRegistry::start_as(AuthMode::Basic, "AWS", PASSWORD).await;
    let fake = FakeEcr::start(token(Duration::from_secs(3))).await;
    let reference = reference(&registry, ECR_HOST);
    let client = builder(&reference, &registry, &fake).build().unwrap();
    let digest = &registry.fixtures().single_oci.digest;
    client.head_manifest(&reference).await.unwrap();
    assert_eq!(fake.call_count(), 1);

    let denied = Answer::Error {
        status: 400,
        code: "AccessDeniedException",
        message: "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:GetAuthorizationToken",
    };
    fake.answer(denied);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        &client.head_manifest(&reference).await.unwrap().digest,
        digest,
        "the refresh failed, the old token is still valid"
    );
    assert_eq!(fake.call_count(), 2, "a refresh was tried");

    // Expired now: the failure shows.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = client.head_manifest(&reference).await.unwrap_err();
    assert!(
        matches!(err.underlying(), Error::Denied { host, .. } if host == ECR_HOST),
        "{err:?}"
    );
    assert_eq!(err.provider_id(), Some("aws"));
    assert_eq!(fake.call_count(), 3);

    fake.answer(token(Duration::from_secs(60)));
    assert_eq!(&client.head_manifest(&reference).await.unwrap().digest, digest);
    assert_eq!(fake.call_count(), 4, "works again with a fresh token");
}

#[tokio::test]
async fn token_expired_on_arrival_is_used_once_not_cached() {
    let registry = TestRegistry::start_as(AuthMode::Basic, "AWS", PASSWORD).await;
    let fake = FakeEcr::start(Answer::Expired {
        password: PASSWORD.to_owned(),
    })
    .await;
    let reference = reference(&registry, ECR_HOST);
    let client = builder(&reference, &registry, &fake).build().unwrap();
    for _ in 0..3 {
        client.head_manifest(&reference).await.unwrap();
    }
    assert_eq!(fake.call_count(), 3, "fetched for every request");
}

#[tokio::test]
async fn ecr_public_uses_its_own_api_in_us_east_1() {
    let registry = TestRegistry::start_as(AuthMode::Basic, "AWS", PASSWORD).await;
    let fake = FakeEcr::start(token(Duration::from_secs(600))).await;
    let reference = reference(&registry, "public.ecr.aws");
    let client = builder(&reference, &registry, &fake)
        .region("eu-west-1")
        .build()
        .unwrap();
    assert_eq!(client.provider_id(), "aws");
    client.get_config(&reference).await.unwrap();
    client.head_manifest(&reference).await.unwrap();
    let expected = Call {
        target: ECR_PUBLIC_TARGET.to_owned(),
        service: "ecr-public".to_owned(),
        ..ecr_call("us-east-1")
    };
    assert_eq!(fake.calls(), vec![expected]);
}

#[tokio::test]
async fn other_hosts_use_the_builders_region() {
    let registry = TestRegistry::start_as(AuthMode::Basic, "AWS", PASSWORD).await;
    let fake = FakeEcr::start(token(Duration::from_secs(600))).await;
    let reference = reference(&registry, &registry.host());
    let client = RepositoryClient::builder("aws")
        .region("ap-south-1")
        .option(AwsOption::EndpointUrl, fake.url())
        .option(AwsOption::AccessKeyId, ACCESS_KEY_ID)
        .option(AwsOption::SecretAccessKey, SECRET_KEY)
        .option(AwsOption::SessionToken, SESSION_TOKEN)
        .build()
        .unwrap();
    client.head_manifest(&reference).await.unwrap();
    assert_eq!(fake.calls(), vec![ecr_call("ap-south-1")]);
}

#[tokio::test]
async fn explicit_registry_credentials_skip_the_api() {
    let registry = TestRegistry::start_as(AuthMode::Basic, "AWS", PASSWORD).await;
    let fake = FakeEcr::start(token(Duration::from_secs(600))).await;
    let reference = reference(&registry, ECR_HOST);
    let client = builder(&reference, &registry, &fake)
        .credentials(Credentials::basic("AWS", PASSWORD))
        .build()
        .unwrap();
    client.head_manifest(&reference).await.unwrap();
    assert_eq!(fake.call_count(), 0);

    let wrong = builder(&reference, &registry, &fake)
        .credentials(Credentials::basic("AWS", "wrong"))
        .build()
        .unwrap();
    let err = wrong.head_manifest(&reference).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(fake.call_count(), 0);
}

/// What an API error became, shown every way it can be.
fn shown(err: &Error, client: &RepositoryClient) -> String {
    let source = std::error::Error::source(err)
        .map(ToString::to_string)
        .unwrap_or_default();
    format!("{err} | {err:?} | {source} | {client:?}")
}

fn assert_no_secret(shown: &str) {
    for secret in [SECRET_KEY, SESSION_TOKEN, PASSWORD] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[tokio::test]
async fn api_errors_map_to_error_kinds_without_secrets() {
    let registry = TestRegistry::start_as(AuthMode::Basic, "AWS", PASSWORD).await;
    let fake = FakeEcr::start(token(Duration::from_secs(600))).await;
    let reference = reference(&registry, ECR_HOST);

    // Keys the API does not know.
    let client = builder(&reference, &registry, &fake)
        .option(AwsOption::AccessKeyId, "AKIDUNKNOWN")
        .build()
        .unwrap();
    let err = client.head_manifest(&reference).await.unwrap_err();
    let Error::Unauthorized { host, message } = err.underlying() else {
        panic!("{err:?}")
    };
    assert_eq!(err.provider_id(), Some("aws"));
    assert_eq!(host, ECR_HOST);
    assert_eq!(
        message,
        "aws GetAuthorizationToken: UnrecognizedClientException: \
         The security token included in the request is invalid."
    );
    assert!(err.is_auth() && !err.is_retryable());
    assert_no_secret(&shown(&err, &client));
    assert_eq!(fake.call_count(), 1, "not retried");

    let client = builder(&reference, &registry, &fake).build().unwrap();
    fake.answer(Answer::Error {
        status: 400,
        code: "AccessDeniedException",
        message: "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:GetAuthorizationToken",
    });
    let err = client.head_manifest(&reference).await.unwrap_err();
    let Error::Denied { host, message } = err.underlying() else {
        panic!("{err:?}")
    };
    assert_eq!(err.provider_id(), Some("aws"));
    assert_eq!(host, ECR_HOST);
    assert_eq!(
        message,
        "aws GetAuthorizationToken: AccessDeniedException: \
         User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:GetAuthorizationToken"
    );
    assert_no_secret(&shown(&err, &client));
    assert_eq!(fake.call_count(), 2);

    fake.answer(Answer::Error {
        status: 400,
        code: "InvalidParameterException",
        message: "Invalid parameter at 'registryIds'",
    });
    let err = client.head_manifest(&reference).await.unwrap_err();
    let Error::Provider { provider, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(provider, "aws");
    assert_eq!(
        source.to_string(),
        "aws GetAuthorizationToken: InvalidParameterException: Invalid parameter at 'registryIds'"
    );
    assert_eq!(err.to_string(), "provider aws failed");
    assert_no_secret(&shown(&err, &client));
    assert_eq!(fake.call_count(), 3);

    // Throttling is retried by the SDK (3 attempts), then reported as such.
    fake.answer(Answer::Error {
        status: 400,
        code: "ThrottlingException",
        message: "Rate exceeded",
    });
    let err = client.head_manifest(&reference).await.unwrap_err();
    assert!(
        matches!(err.underlying(), Error::RateLimited { host, retry_after: None, .. } if host == ECR_HOST),
        "{err:?}"
    );
    assert!(err.is_rate_limited() && err.provider_id() == Some("aws"));
    assert_no_secret(&shown(&err, &client));
    assert_eq!(fake.call_count(), 6);

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = builder(&reference, &registry, &fake)
        .option(AwsOption::EndpointUrl, dead)
        .build()
        .unwrap();
    let err = client.head_manifest(&reference).await.unwrap_err();
    assert!(
        matches!(&err, Error::Provider { provider, .. } if provider == "aws"),
        "{err:?}"
    );
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .starts_with("GetAuthorizationToken: dispatch failure"),
        "{err:?}"
    );
    assert_no_secret(&shown(&err, &client));
}

#[test]
fn half_given_keys_are_a_configuration_error() {
    let err = RepositoryClient::builder("aws")
        .option(AwsOption::AccessKeyId, ACCESS_KEY_ID)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: options \"aws_access_key_id\" and \"aws_secret_access_key\" go together"
    );
}
