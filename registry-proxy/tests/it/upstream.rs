//! The upstream of the cache's client and protocol tests: a real Distribution registry with
//! two recording proxies in front of it, `via_cache`, the only way the cache reaches it, and
//! `direct`, the registry as the clients name it (a request that reaches `direct` went
//! around the cache); and a cache whose one route fetches from it.

use std::path::Path;

use crate::common::{RunningProxy, config, config_with_routes, fetched_blobs, http, route};
use conformance::harness::fault_proxy::FaultProxy;
use conformance::harness::{AuthMode, ImageFixture, TestRegistry};
use registry_proxy::{Config, RouteConfig, UpstreamConfig};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

/// A registry and two recording proxies in front of it.
pub struct Upstream {
    /// What the cache fetches from.
    pub via_cache: FaultProxy,
    /// The registry as the clients name it: nothing should arrive here.
    pub direct: FaultProxy,
    /// The registry itself, asked only to learn what it holds.
    pub registry: TestRegistry,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let registry = TestRegistry::start(AuthMode::None).await;
        let url = Url::parse(&registry.url()).expect("registry URL");
        let (via_cache, direct) = tokio::join!(FaultProxy::start(url.clone()), FaultProxy::start(url));
        Upstream {
            via_cache,
            direct,
            registry,
        }
    }

    /// A route for the registry as clients name it, fetching from
    /// `via_cache` first (the registry, asked after it, must see nothing).
    pub fn route_via_cache(&self, prefix: Option<&str>) -> RouteConfig {
        let mut route = route(&self.direct.host());
        route.prefix = prefix.map(str::to_owned);
        route.mirrors = vec![UpstreamConfig {
            url: format!("http://{}", self.via_cache.host()),
            credentials: None,
            insecure: true,
        }];
        route
    }

    /// The blob digests the cache fetched (GETs that reached the registry).
    pub fn blob_gets(&self) -> Vec<String> {
        fetched_blobs(&self.via_cache)
    }

    pub fn assert_not_contacted_directly(&self) {
        let requests = self.direct.requests();
        assert!(
            requests.is_empty(),
            "the registry was asked directly, around the cache: {requests:#?}"
        );
    }
}

/// An upstream and a cache whose one (default) route fetches from it.
pub struct Cached {
    pub up: Upstream,
    pub cache: RunningProxy,
    pub dir: tempfile::TempDir,
}

impl Cached {
    pub async fn start() -> Cached {
        let up = Upstream::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = RunningProxy::start(&config(&dir.path().join("cache"), &[up.via_cache.host()]));
        Cached { up, cache, dir }
    }

    /// `http://<cache>/v2/<rest>`.
    pub fn url(&self, rest: &str) -> String {
        format!("{}/v2/{rest}", self.cache.url())
    }
}

pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("an ASCII header").to_owned())
}

/// The status and the first error code of a registry error answer.
pub async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let text = response.text().await.expect("error body");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not a JSON error ({e}): {text}"));
    let code = body["errors"][0]["code"].as_str().unwrap_or_default().to_owned();
    (status, code)
}

/// The config and layer digests of `images`, sorted.
pub fn blob_digests<'f>(images: impl IntoIterator<Item = &'f ImageFixture>) -> Vec<String> {
    let mut digests: Vec<String> = images
        .into_iter()
        .flat_map(|image| {
            std::iter::once(image.config_digest.clone()).chain(image.layers.iter().map(|l| l.digest.clone()))
        })
        .collect();
    digests.sort();
    digests
}

/// The digest the registry itself gives `repository:tag` (a `HEAD`
/// accepting manifests and indexes).
pub async fn registry_digest(registry: &TestRegistry, repository: &str, tag: &str) -> String {
    let response = http()
        .head(format!("{}/v2/{repository}/manifests/{tag}", registry.url()))
        .header(
            "accept",
            "application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .expect("HEAD the manifest at the registry");
    assert_eq!(response.status(), StatusCode::OK, "{repository}:{tag}");
    header(response.headers(), "docker-content-digest").expect("Docker-Content-Digest")
}

/// A Docker Hub route whose content comes from a mirror (`mirror_only`).
pub fn hub_route(mirror: &FaultProxy) -> RouteConfig {
    let mut hub = route("docker.io");
    hub.default = true;
    hub.mirror_only = true;
    hub.mirrors = vec![UpstreamConfig {
        url: format!("http://{}", mirror.host()),
        credentials: None,
        insecure: true,
    }];
    hub
}

pub fn hand_made(dir: &Path, routes: Vec<RouteConfig>) -> Config {
    config_with_routes(&dir.join("cache"), routes)
}
