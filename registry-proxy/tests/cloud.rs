//! A cloud registry as an upstream: the route's client is the cloud
//! provider's, chosen by the registry's host, with the cloud's own
//! credentials. ECR's side is emulated by moto: the `aws` provider gets a
//! token from moto's `GetAuthorizationToken` and presents it as `AWS` /
//! `<account>-auth-token` to a real Distribution registry.

mod common;

use common::RunningProxy;
use conformance::harness::{AuthMode, TestRegistry, moto_url};
use registry_aws::{ACCESS_KEY_ID_OPTION, ENDPOINT_URL_OPTION, SECRET_ACCESS_KEY_OPTION};
use registry_client::oci::DOCKER_CONFIG_OPTION;
use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient};
use registry_proxy::{Config, RouteConfig};

/// The password in moto's token for its default account 123456789012.
const MOTO_PASSWORD: &str = "123456789012-auth-token";
const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

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
        (ENDPOINT_URL_OPTION, moto_url()),
        (ACCESS_KEY_ID_OPTION, "AKIDMCREGMOTO"),
        (SECRET_ACCESS_KEY_OPTION, "mcreg-moto-secret"),
    ] {
        route.options.insert(name.into(), value.into());
    }
    let config = Config::with_routes("127.0.0.1:0".parse().unwrap(), dir.path().to_owned(), vec![route]);
    let proxy = RunningProxy::start(&config);

    let image = &registry.fixtures().single_oci;
    let reference: ImageReference = image.reference(&proxy.host()).parse().expect("reference");
    let client = RepositoryClient::builder("oci")
        .option(DOCKER_CONFIG_OPTION, "/nonexistent/config.json")
        .build()
        .expect("client");
    let layout = tempfile::tempdir().expect("tempdir");
    let result = client
        .pull(&reference)
        .await
        .expect("resolve through the cache")
        .write_oci_layout(&layout.path().join("layout"), &PullOptions::default())
        .await
        .expect("pull through the cache");
    // The registry takes nothing but `AWS` and moto's token: the pull
    // proves the route's client was the aws provider's.
    assert_eq!(result.digest, image.digest);
}
