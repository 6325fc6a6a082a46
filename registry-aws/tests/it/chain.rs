//! The standard AWS chain, read by `aws-config` from the environment: keys,
//! region and `AWS_ENDPOINT_URL_ECR`. The test runs alone in a process of its
//! own ([`alone_in_process`]), so that setting the environment races with nothing.

use std::time::Duration;

use conformance::harness::cloud::aws::{
    ACCESS_KEY_ID, Answer, Call, ECR_TARGET, FakeEcr, SECRET_KEY, SESSION_TOKEN,
};
use conformance::harness::{AuthMode, TestRegistry, alone_in_process};
use registry_aws as _; // links the provider
use registry_client::{ImageReference, RepositoryClient};

const PASSWORD: &str = "chain-Token-Password";

#[tokio::test]
async fn keys_region_and_endpoint_from_the_environment() {
    if !alone_in_process(module_path!(), "keys_region_and_endpoint_from_the_environment") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_url = format!("http://{}", listener.local_addr().unwrap());
    // SAFETY: alone in its process, before it starts any thread.
    unsafe {
        for (name, value) in [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN),
            ("AWS_REGION", "ap-northeast-2"),
            ("AWS_ENDPOINT_URL_ECR", &fake_url),
            ("AWS_CONFIG_FILE", "/nonexistent/aws/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws/credentials"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            std::env::set_var(name, value);
        }
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_ENDPOINT_URL");
    }
    let fake = FakeEcr::start_on(
        listener,
        Answer::Token {
            password: PASSWORD.to_owned(),
            lifetime: Duration::from_secs(600),
        },
    )
    .await;
    let registry = TestRegistry::start_as(AuthMode::Basic, "AWS", PASSWORD).await;
    let call = |region: &str| Call {
        target: ECR_TARGET.to_owned(),
        access_key_id: ACCESS_KEY_ID.to_owned(),
        region: region.to_owned(),
        service: "ecr".to_owned(),
        session_token: Some(SESSION_TOKEN.to_owned()),
    };

    // A host without a region: the chain's.
    let fixture = &registry.fixtures().single_oci;
    let local: ImageReference = fixture.reference(&registry.host()).parse().unwrap();
    let client = RepositoryClient::builder("aws").build().unwrap();
    assert_eq!(client.head_manifest(&local).await.unwrap().digest, fixture.digest);
    assert_eq!(fake.calls(), vec![call("ap-northeast-2")]);

    // An ECR host: its own region.
    let ecr: ImageReference = fixture
        .reference("123456789012.dkr.ecr.sa-east-1.amazonaws.com")
        .parse()
        .unwrap();
    let client = RepositoryClient::builder_for(&ecr)
        .endpoint(registry.url())
        .build()
        .unwrap();
    assert_eq!(client.head_manifest(&ecr).await.unwrap().digest, fixture.digest);
    assert_eq!(fake.calls(), vec![call("ap-northeast-2"), call("sa-east-1")]);
}
