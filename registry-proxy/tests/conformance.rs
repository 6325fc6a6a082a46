//! The SDK pulls through the cache as if it were the registry: the
//! conformance suite's cases that need nothing but a registry (every
//! fixture, multi-platform indexes, Docker and OCI media types, many layers,
//! nested names, by tag and by digest, each output format).

mod common;

use common::{RunningProxy, config};
use conformance::harness::AuthMode;
use conformance::suite::{SuiteEnv, Target};
use registry_client::driver::oci::OciOption;
use registry_client::{RepositoryClient, RepositoryClientBuilder};

fn builder(_: &Target) -> RepositoryClientBuilder {
    RepositoryClient::builder("oci").option(OciOption::DockerConfig, "/nonexistent/config.json")
}

/// A registry behind the suite's fault proxy, a cache in front of that, and
/// the suite's environment pointed at the cache.
async fn through_the_cache() -> (SuiteEnv, RunningProxy, tempfile::TempDir) {
    let env = SuiteEnv::start(AuthMode::None, None, builder).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = RunningProxy::start(&config(dir.path(), &[env.proxy.host()]));
    let env = env.through(url::Url::parse(&proxy.url()).expect("URL"));
    (env, proxy, dir)
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (env, _proxy, _dir) = through_the_cache().await;
                conformance::suite::$case(&env.client(), &env).await;
            }
        )*
    };
}

cases!(
    head_manifest_oci,
    head_manifest_docker,
    get_manifest_oci,
    get_manifest_docker,
    get_manifest_many_layers,
    get_manifest_nested_name,
    get_manifest_by_digest,
    get_index_oci,
    get_manifest_list_docker,
    platform_selection,
    no_matching_platform,
    get_config,
    manifest_not_found,
    list_tags,
    pull_docker_archive,
    pull_by_digest,
    pull_each_platform,
    pull_many_layers_rootfs,
    pull_rootfs_keeps_types,
    pull_oci_layout,
    pull_not_found,
    pull_with_layer_cache,
    pull_progress_events,
);
