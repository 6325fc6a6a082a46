//! The generic provider for Docker Hub, GHCR and any OCI registry.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use super::abstract_registry::{AbstractRegistry, AuthRequest, ProviderConfig, https_endpoint};
use super::registration::HostMatch;
use crate::driver::auth::{Credentials, DockerConfig};
use crate::error::{Error, Result};
use crate::model::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};

/// The generic provider's id.
pub const ID: &str = "oci";

crate::provider_options! {
    /// The generic provider's options: `builder.option(OciOption::DockerConfig, path)`, or
    /// by name.
    pub enum OciOption {
        /// A docker `config.json` to read instead of the user's.
        DockerConfig = "docker_config",
        /// A directory to look up `docker-credential-*` helpers (for `credsStore` and
        /// `credHelpers`) in, instead of on `PATH`.
        CredentialHelperDir = "credential_helper_dir",
    }
}

crate::provider! {
    id: ID,
    hosts: &["* (any OCI registry: docker.io, ghcr.io, quay.io, self-hosted)"],
    matches: HostMatch::Any,
    options: OciOption::NAMES,
    factory: OciRegistry::factory,
}

/// The user's docker `config.json` (with its credential helpers), else
/// anonymous (explicit credentials given to the builder are answered by the
/// core, and `config.json` is then not read at all).
///
/// Options: [`OciOption::DockerConfig`] (which `config.json`) and
/// [`OciOption::CredentialHelperDir`] (where its helpers are).
#[derive(Debug)]
pub struct OciRegistry {
    docker_config: DockerConfig,
    /// Helper answers per host: a helper is a process, not to be run per request.
    found: tokio::sync::Mutex<HashMap<String, Option<Credentials>>>,
}

impl OciRegistry {
    fn factory(config: &ProviderConfig) -> Result<Arc<dyn AbstractRegistry>> {
        let docker_config = match (&config.credentials, config.option(OciOption::DockerConfig)) {
            (Some(_), _) => DockerConfig::default(),
            (None, Some(path)) => DockerConfig::from_path(Path::new(path))?,
            (None, None) => DockerConfig::load()?,
        };
        let docker_config = match config.option(OciOption::CredentialHelperDir) {
            // An empty dir would make the helper's path bare, and so looked up on PATH.
            Some("") => {
                return Err(Error::InvalidConfig(format!(
                    "option {:?} is empty",
                    OciOption::CredentialHelperDir.name()
                )));
            }
            Some(dir) => docker_config.with_helper_search_path(dir),
            None => docker_config,
        };
        Ok(Arc::new(OciRegistry {
            docker_config,
            found: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }
}

#[async_trait]
impl AbstractRegistry for OciRegistry {
    fn id(&self) -> &'static str {
        ID
    }

    fn endpoint(&self, host: &str) -> Result<Url> {
        https_endpoint(if host == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            host
        })
    }

    async fn credentials(&self, request: &AuthRequest<'_>) -> Result<Option<Credentials>> {
        let mut found = self.found.lock().await;
        if let Some(c) = found.get(request.host) {
            return Ok(c.clone());
        }
        let credentials = self.docker_config.credentials_for(request.host).await?;
        found.insert(request.host.to_owned(), credentials.clone());
        Ok(credentials)
    }
}
