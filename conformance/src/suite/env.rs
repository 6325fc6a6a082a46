//! What a conformance case runs against: the registry (through the fault
//! proxy), its fixtures, and how to build a client for it.

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
    /// What must live as long as the environment (a cache in front of it, its directory).
    kept: Vec<Box<dyn std::any::Any + Send + Sync>>,
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
            kept: Vec::new(),
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

    /// The environment, keeping `guard` alive as long as itself.
    pub fn keeping(mut self, guard: impl std::any::Any + Send + Sync) -> SuiteEnv {
        self.kept.push(Box::new(guard));
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
