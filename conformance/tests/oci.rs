//! The generic `oci` provider runs the whole conformance suite in every auth mode.

use conformance::harness::AuthMode;
use conformance::suite::Target;
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

conformance::conformance_tests!(registry = None, builder = builder);
