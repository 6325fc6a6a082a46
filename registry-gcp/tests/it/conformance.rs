//! The whole conformance suite in token mode, with the registry's token server accepting only
//! `oauth2accesstoken` and the access token that a fake Google OAuth2 endpoint issued. The
//! provider gets that token itself: from an `authorized_user` file, through google-cloud-auth.

use std::sync::OnceLock;

use conformance::harness::AuthMode;
use conformance::harness::cloud::google::{FakeOAuth, Tokens};
use conformance::suite::{BoxFuture, DISTRIBUTION, Endpoint, SuiteEnv, Target};
use registry_client::{RepositoryClient, RepositoryClientBuilder};
use registry_gcp::{GcpOption, USERNAME};

const ISSUED_TOKEN: &str = "ya29.conformance-Access-token";

/// One fake for the whole test process, on its own thread; the credentials file points at it.
fn credentials_file() -> &'static str {
    static FAKE: OnceLock<(FakeOAuth, String)> = OnceLock::new();
    let (_, path) = FAKE.get_or_init(|| {
        let fake = FakeOAuth::start(Tokens::Fixed(ISSUED_TOKEN), 3600);
        let path = fake.credentials_file().display().to_string();
        (fake, path)
    });
    path
}

fn builder(target: &Target) -> RepositoryClientBuilder {
    // The suite knows the registry's user; the provider must find the same one on its own.
    assert_eq!(
        target.credentials,
        Some((USERNAME.to_owned(), ISSUED_TOKEN.to_owned()))
    );
    RepositoryClient::builder("gcp")
        .endpoint(target.endpoint.as_str())
        .option(GcpOption::CredentialsFile, credentials_file())
}

const ENDPOINT: Endpoint = Endpoint {
    name: "gcp (fake Google OAuth2, Distribution)",
    capabilities: DISTRIBUTION,
};

fn start(mode: AuthMode) -> BoxFuture<'static, SuiteEnv> {
    Box::pin(SuiteEnv::start_as(
        mode,
        Some("us-docker.pkg.dev"),
        builder,
        Some(("oauth2accesstoken", ISSUED_TOKEN)),
    ))
}

conformance::conformance_tests!(endpoint = ENDPOINT, start = start, modes = [Token]);
