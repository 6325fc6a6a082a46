//! The conformance suite: plain `pub async fn` cases that every provider runs
//! against a real Distribution registry, behind a fault-injecting proxy.
//!
//! A provider's `tests/conformance.rs` calls [`conformance_tests!`](crate::conformance_tests)
//! with a function that makes its client builder; the macro expands to one
//! `#[tokio::test]` per case and auth mode.

mod auth;
mod metadata;
mod pull;
mod push;
mod resilience;
mod trees;

pub use auth::*;
pub use metadata::*;
pub use pull::*;
pub use push::*;
pub use resilience::*;
pub use trees::*;

use std::time::Duration;

use registry_client::{ImageReference, RepositoryClient, RepositoryClientBuilder, RetryConfig};
use url::Url;

use crate::harness::fault_proxy::FaultProxy;
use crate::harness::{AuthMode, Fixtures, ImageFixture, IndexFixture, TestRegistry};

/// Where a provider's client must point, and with which credentials.
#[derive(Debug, Clone)]
pub struct Target {
    /// The registry's URL (the fault proxy in front of it).
    pub endpoint: Url,
    /// The registry name used in image references.
    pub registry_name: String,
    pub auth_mode: AuthMode,
    /// The user and password the registry (or its token server) accepts.
    pub credentials: Option<(String, String)>,
}

/// Makes a provider's client builder for a [`Target`].
pub type MakeBuilder = fn(&Target) -> RepositoryClientBuilder;

/// A running registry with fixtures, a fault proxy in front, and the provider's builder.
pub struct SuiteEnv {
    pub registry: TestRegistry,
    pub proxy: FaultProxy,
    pub target: Target,
    make: MakeBuilder,
}

impl SuiteEnv {
    /// Starts a registry in `mode` behind a fault proxy. `registry_name` is the
    /// host written in image references; `None` uses the proxy's own `127.0.0.1:PORT`.
    pub async fn start(mode: AuthMode, registry_name: Option<&str>, make: MakeBuilder) -> SuiteEnv {
        Self::start_as(mode, registry_name, make, None).await
    }

    /// Like [`start`](Self::start), with the registry's pull user set to `user`
    /// (what a provider's emulated cloud hands out, e.g. `AWS` and a token).
    pub async fn start_as(
        mode: AuthMode,
        registry_name: Option<&str>,
        make: MakeBuilder,
        user: Option<(&str, &str)>,
    ) -> SuiteEnv {
        let registry = match user {
            Some((name, password)) => TestRegistry::start_as(mode, name, password).await,
            None => TestRegistry::start(mode).await,
        };
        let upstream = Url::parse(&registry.url()).expect("registry URL");
        let proxy = FaultProxy::builder(upstream)
            .blob_dir(registry.root_dir())
            .start()
            .await;
        let target = Target {
            endpoint: proxy.url(),
            registry_name: registry_name.map_or_else(|| proxy.host(), str::to_owned),
            auth_mode: mode,
            credentials: registry.credentials(),
        };
        SuiteEnv {
            registry,
            proxy,
            target,
            make,
        }
    }

    /// The same environment seen through something that serves the
    /// registry's API at `endpoint` (a pull-through cache): clients talk to
    /// it, and image references name it.
    pub fn through(mut self, endpoint: Url) -> SuiteEnv {
        let host = endpoint.host_str().unwrap_or_default();
        self.target.registry_name = match endpoint.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        self.target.endpoint = endpoint;
        self
    }

    /// The provider's builder, with retries fast enough for tests.
    pub fn builder(&self) -> RepositoryClientBuilder {
        (self.make)(&self.target).retry(
            RetryConfig::default()
                .with_initial_backoff(Duration::from_millis(10))
                .with_max_backoff(Duration::from_millis(50)),
        )
    }

    pub fn client(&self) -> RepositoryClient {
        self.builder().build().expect("build the provider's client")
    }

    pub fn fixtures(&self) -> &'static Fixtures {
        self.registry.fixtures()
    }

    /// The reference of an image fixture under this environment's registry name.
    pub fn image(&self, fixture: &ImageFixture) -> ImageReference {
        parse(&fixture.reference(&self.target.registry_name))
    }

    pub fn index(&self, fixture: &IndexFixture) -> ImageReference {
        parse(&fixture.reference(&self.target.registry_name))
    }

    /// `registry/repository:tag` under this environment's registry name.
    pub fn reference(&self, repository_and_tag: &str) -> ImageReference {
        parse(&format!("{}/{repository_and_tag}", self.target.registry_name))
    }
}

fn parse(reference: &str) -> ImageReference {
    reference
        .parse()
        .unwrap_or_else(|e| panic!("fixture reference {reference}: {e}"))
}

/// Expands to one `#[tokio::test]` per conformance case and auth mode.
///
/// ```text
/// fn builder(target: &conformance::suite::Target) -> RepositoryClientBuilder { /* … */ }
/// // Every case in every auth mode, the harness's own user:
/// conformance::conformance_tests!(registry = None, builder = builder);
/// // One auth mode, with the registry's pull user set to what the provider presents:
/// conformance::conformance_tests!(registry = Some("eu.registry.example.com"), builder = builder,
///     mode = Token, user = Some(("oauth2accesstoken", "the-token")));
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (registry = $registry:expr, builder = $make:expr) => {
        $crate::__conformance_mode!(none, None, $registry, $make, None; __all_modes_cases);
        $crate::__conformance_mode!(basic, Basic, $registry, $make, None;
            __all_modes_cases, __credential_cases);
        $crate::__conformance_mode!(token, Token, $registry, $make, None;
            __all_modes_cases, __credential_cases, __token_cases);
    };
    (registry = $registry:expr, builder = $make:expr, mode = None, user = $user:expr) => {
        $crate::__conformance_mode!(none, None, $registry, $make, $user; __all_modes_cases);
    };
    (registry = $registry:expr, builder = $make:expr, mode = Basic, user = $user:expr) => {
        $crate::__conformance_mode!(basic, Basic, $registry, $make, $user;
            __all_modes_cases, __credential_cases);
    };
    (registry = $registry:expr, builder = $make:expr, mode = Token, user = $user:expr) => {
        $crate::__conformance_mode!(token, Token, $registry, $make, $user;
            __all_modes_cases, __credential_cases, __token_cases);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_mode {
    ($module:ident, $mode:ident, $registry:expr, $make:expr, $user:expr; $($group:ident),+) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $( $crate::$group!($mode, $registry, $make, $user); )+
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    ($mode:ident, $registry:expr, $make:expr, $user:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let env = $crate::suite::SuiteEnv::start_as(
                    $crate::harness::AuthMode::$mode,
                    $registry,
                    $make,
                    $user,
                )
                .await;
                $crate::suite::$case(&env.client(), &env).await;
            }
        )*
    };
}

/// Cases every auth mode runs.
#[doc(hidden)]
#[macro_export]
macro_rules! __all_modes_cases {
    ($mode:ident, $registry:expr, $make:expr, $user:expr) => {
        $crate::__conformance_expand!($mode, $registry, $make, $user;
        ping,
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
        catalog_paginated,
        response_cache,
        retries_server_errors,
        honours_retry_after,
        rate_limit_reported,
        no_retry_on_client_errors,
        retries_broken_body,
        detects_corruption,
        rejects_garbage,
        redirect_drops_authorization,
        times_out,
        deadline_bounds_a_hung_registry,
        circuit_breaker,
        pull_docker_archive,
        pull_by_digest,
        pull_each_platform,
        pull_many_layers_rootfs,
        pull_rootfs_keeps_types,
        pull_oci_layout,
        pull_not_found,
        pull_corrupted_layer,
        pull_resumes_with_range,
        pull_resumes_when_range_is_ignored,
        pull_concurrently_into_one_cache,
        pull_through_rate_limits,
        pull_redirected_blobs,
        pull_with_layer_cache,
        pull_progress_events,
        pull_cancelled_leaves_nothing,
        push_copy_within_registry,
        push_and_pull_back,
        push_resumes_failed_chunk,
        push_refused_manifest_leaves_no_tag);
    };
}

/// Cases for modes with credentials.
#[doc(hidden)]
#[macro_export]
macro_rules! __credential_cases {
    ($mode:ident, $registry:expr, $make:expr, $user:expr) => {
        $crate::__conformance_expand!($mode, $registry, $make, $user;
        wrong_credentials,
        secrets_never_shown);
    };
}

/// Cases for token auth.
#[doc(hidden)]
#[macro_export]
macro_rules! __token_cases {
    ($mode:ident, $registry:expr, $make:expr, $user:expr) => {
        $crate::__conformance_expand!($mode, $registry, $make, $user;
        token_cache_honours_expiry,
        token_refreshed_once_on_401,
        tokens_per_scope);
    };
}
