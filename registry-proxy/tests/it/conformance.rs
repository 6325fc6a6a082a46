//! The SDK pulls through the cache as if it were the registry: the
//! conformance suite, run for what the cache can do (every fixture,
//! multi-platform indexes, Docker and OCI media types, many layers, nested
//! names, by tag and by digest, each output format); the rest is reported
//! skipped by capability.

use crate::common::{RunningProxy, config};
use conformance::harness::AuthMode;
use conformance::suite::Capability::*;
use conformance::suite::{BoxFuture, Endpoint, SuiteEnv, Target};
use registry_client::driver::oci::OciOption;
use registry_client::{RepositoryClient, RepositoryClientBuilder};

fn builder(_: &Target) -> RepositoryClientBuilder {
    RepositoryClient::builder("oci").option(OciOption::DockerConfig, "/nonexistent/config.json")
}

/// What the cache offers a client: reads, tag lists a page at a time and the
/// referrers API (where its Distribution upstream has neither). It answers requests itself (from
/// its store, or after its own upstream request), so it is not transparent:
/// the cases that count requests or inject faults between client and
/// registry do not apply.
const CACHE: Endpoint = Endpoint {
    name: "mcreg serve (pull-through cache)",
    capabilities: &[Pull, TagPagination, Referrers],
};

/// A registry behind the suite's fault proxy, a cache in front of that, and
/// the suite's environment pointed at the cache.
fn through_the_cache(mode: AuthMode) -> BoxFuture<'static, SuiteEnv> {
    Box::pin(async move {
        let env = SuiteEnv::start(mode, None, builder).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy = RunningProxy::start(&config(dir.path(), &[env.proxy.host()]));
        let url = url::Url::parse(&proxy.url()).expect("URL");
        env.through(url).keeping(proxy).keeping(dir)
    })
}

conformance::conformance_tests!(endpoint = CACHE, start = through_the_cache, modes = [None]);
