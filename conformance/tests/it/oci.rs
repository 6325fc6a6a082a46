//! The generic `oci` provider against Distribution runs the whole conformance suite in
//! every auth mode: it can do everything the suite asks.

use conformance::harness::AuthMode;
use conformance::suite::{BoxFuture, DISTRIBUTION, Endpoint, SuiteEnv, Target};
use registry_client::driver::oci::OciOption;
use registry_client::{Credentials, RepositoryClient, RepositoryClientBuilder};

fn builder(target: &Target) -> RepositoryClientBuilder {
    // Never the developer's own docker config: the tests must be hermetic.
    let builder =
        RepositoryClient::builder("oci").option(OciOption::DockerConfig, "/nonexistent/config.json");
    match (&target.credentials, target.auth_mode) {
        (Some((user, password)), AuthMode::Basic | AuthMode::Token) => {
            builder.credentials(Credentials::basic(user.clone(), password.clone()))
        }
        _ => builder,
    }
}

const OCI: Endpoint = Endpoint {
    name: "oci (Distribution)",
    capabilities: DISTRIBUTION,
};

fn start(mode: AuthMode) -> BoxFuture<'static, SuiteEnv> {
    Box::pin(SuiteEnv::start(mode, None, builder))
}

conformance::conformance_tests!(endpoint = OCI, start = start, modes = [None, Basic, Token]);
