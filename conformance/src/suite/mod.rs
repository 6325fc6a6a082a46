//! The conformance suite: plain `pub async fn` cases that every provider runs
//! against a real Distribution registry, behind a fault-injecting proxy.
//!
//! A provider's `tests/conformance.rs` calls [`conformance_tests!`](crate::conformance_tests)
//! with a function that makes its client builder; the macro expands to one
//! `#[tokio::test]` per case and auth mode.

mod auth;
mod blobs;
mod env;
mod metadata;
mod pull;
mod push;
mod resilience;
mod trees;

pub use auth::*;
pub use blobs::*;
pub use metadata::*;
pub use pull::*;
pub use push::*;
pub use resilience::*;
pub use trees::*;

pub use env::{SuiteEnv, Target};

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
        blob_stream_and_range,
        blob_corruption_never_completes,
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
