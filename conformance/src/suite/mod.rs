//! The conformance suite: plain `pub async fn` cases that every endpoint
//! (a provider against its emulator, the generic provider against a real
//! Distribution registry behind a fault-injecting proxy, the cache) runs by
//! capability.
//!
//! An endpoint's test declares what it supports ([`Endpoint`]) and calls
//! [`conformance_tests!`](crate::conformance_tests) with a function that starts
//! its environment; the macro expands to one `#[tokio::test]` per case and
//! auth mode. A case runs where the endpoint has every [`Capability`] it
//! needs (the list is below, once) and is reported skipped elsewhere.

mod auth;
mod blobs;
mod capability;
mod env;
mod metadata;
mod pull;
mod push;
mod referrers;
mod resilience;
mod trees;

pub use auth::*;
pub use blobs::*;
pub use metadata::*;
pub use pull::*;
pub use push::*;
pub use referrers::*;
pub use resilience::*;
pub use trees::*;

pub use capability::{
    Capability, CaseFn, DISTRIBUTION, Endpoint, Outcome, REPORT_VARIABLE, StartEnv, run_case,
};
pub use env::{SuiteEnv, Target};
pub use futures::future::{BoxFuture, LocalBoxFuture};

/// Expands to one `#[tokio::test]` per case of the suite and auth mode, each
/// run when the endpoint has what the case needs and reported skipped (by
/// capability) when not.
///
/// ```text
/// const AWS: Endpoint = Endpoint { name: "aws (moto, Distribution)", capabilities: &[Pull, Push, …] };
/// fn start(mode: AuthMode) -> BoxFuture<'static, SuiteEnv> {
///     Box::pin(SuiteEnv::start_as(mode, Some(REGISTRY), builder, Some(("AWS", "token"))))
/// }
/// conformance::conformance_tests!(endpoint = AWS, start = start, modes = [Basic]);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (endpoint = $endpoint:expr, start = $start:expr, modes = [$($mode:ident),+ $(,)?]) => {
        $( $crate::__conformance_mode!($mode, $endpoint, $start); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_mode {
    (None, $endpoint:expr, $start:expr) => {
        mod none {
            #[allow(unused_imports)]
            use super::*;
            $crate::__suite_cases!(__conformance_expand(None, $endpoint, $start));
        }
    };
    (Basic, $endpoint:expr, $start:expr) => {
        mod basic {
            #[allow(unused_imports)]
            use super::*;
            $crate::__suite_cases!(__conformance_expand(Basic, $endpoint, $start));
        }
    };
    (Token, $endpoint:expr, $start:expr) => {
        mod token {
            #[allow(unused_imports)]
            use super::*;
            $crate::__suite_cases!(__conformance_expand(Token, $endpoint, $start));
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    ($mode:ident, $endpoint:expr, $start:expr; $($case:ident: [$($need:ident),*]),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                fn case<'a>(
                    client: &'a ::registry_client::RepositoryClient,
                    env: &'a $crate::suite::SuiteEnv,
                ) -> $crate::suite::LocalBoxFuture<'a, ()> {
                    ::std::boxed::Box::pin($crate::suite::$case(client, env))
                }
                $crate::suite::run_case(
                    &$endpoint,
                    $crate::harness::AuthMode::$mode,
                    stringify!($case),
                    &[$($crate::suite::Capability::$need),*],
                    $start,
                    case,
                )
                .await;
            }
        )*
    };
}

/// Every case of the suite, once, with what it needs of the endpoint.
#[doc(hidden)]
#[macro_export]
macro_rules! __suite_cases {
    ($expand:ident($($args:tt)*)) => {
        $crate::$expand!($($args)*;
        // The metadata API.
        ping: [Pull, Transparent],
        head_manifest_oci: [Pull],
        head_manifest_docker: [Pull],
        get_manifest_oci: [Pull],
        get_manifest_docker: [Pull],
        get_manifest_many_layers: [Pull],
        get_manifest_nested_name: [Pull],
        get_manifest_by_digest: [Pull],
        get_index_oci: [Pull],
        get_manifest_list_docker: [Pull],
        platform_selection: [Pull],
        no_matching_platform: [Pull],
        get_config: [Pull],
        manifest_not_found: [Pull],
        list_tags: [Pull],
        tags_paginated: [Pull, TagPagination],
        catalog_paginated: [Catalog, Transparent],
        response_cache: [Pull, Transparent],
        // Referrers.
        referrers_listed: [Pull],
        referrers_api: [Pull, Referrers],
        // Faults between the client and the registry.
        retries_server_errors: [Pull, Transparent],
        honours_retry_after: [Pull, Transparent],
        rate_limit_reported: [Pull, Transparent],
        no_retry_on_client_errors: [Pull, Transparent],
        retries_broken_body: [Pull, Transparent],
        detects_corruption: [Pull, Transparent],
        rejects_garbage: [Pull, Transparent],
        redirect_drops_authorization: [Pull, Transparent],
        times_out: [Pull, Transparent],
        deadline_bounds_a_hung_registry: [Pull, Transparent],
        circuit_breaker: [Pull, Transparent],
        // Blobs read as streams and ranges.
        blob_stream_and_range: [Pull, Transparent],
        blob_corruption_never_completes: [Pull, Transparent],
        // Pulls to every output.
        pull_docker_archive: [Pull],
        pull_by_digest: [Pull],
        pull_each_platform: [Pull],
        pull_many_layers_rootfs: [Pull],
        pull_rootfs_keeps_types: [Pull],
        pull_oci_layout: [Pull],
        pull_not_found: [Pull],
        pull_corrupted_layer: [Pull, Transparent],
        pull_resumes_with_range: [Pull, Transparent],
        pull_resumes_when_range_is_ignored: [Pull, Transparent],
        pull_concurrently_into_one_cache: [Pull],
        pull_through_rate_limits: [Pull, Transparent],
        pull_redirected_blobs: [Pull, Transparent],
        pull_with_layer_cache: [Pull],
        pull_progress_events: [Pull],
        pull_cancelled_leaves_nothing: [Pull, Transparent],
        // Uploads.
        push_copy_within_registry: [Pull, Push, Mount],
        push_and_pull_back: [Pull, Push, ChunkedUpload],
        push_resumes_failed_chunk: [Pull, Push, ChunkedUpload, Transparent],
        push_refused_manifest_leaves_no_tag: [Pull, Push, Transparent],
        // Credentials.
        wrong_credentials: [Pull, Credentials, Transparent],
        secrets_never_shown: [Pull, Credentials, Transparent],
        token_cache_honours_expiry: [Pull, Tokens],
        token_refreshed_once_on_401: [Pull, Tokens, Transparent],
        tokens_per_scope: [Pull, Catalog, Tokens]);
    };
}
