//! What a provider supplies: the few things that differ between registries.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use crate::driver::auth::{Challenge, Credentials};
use crate::error::{Error, Result};

/// What the transport asks a provider when a registry wants authentication.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The registry host as written in the image reference (e.g. `docker.io`).
    pub host: &'a str,
    /// The challenge the registry answered with.
    pub challenge: &'a Challenge,
    /// The scope being asked for, e.g. `repository:library/alpine:pull`.
    pub scope: Option<&'a str>,
}

/// A registry provider: the few things that differ between registries.
///
/// Everything else (transport, retries, tokens, manifests, caching) is shared code.
#[async_trait]
pub trait AbstractRegistry: Send + Sync + fmt::Debug + 'static {
    /// The provider id, e.g. `oci` or `aws`.
    fn id(&self) -> &'static str;

    /// The registry API base URL for `host`, e.g. `https://registry-1.docker.io`
    /// for `docker.io`; by default `https://<host>/`. The client switches to
    /// plain HTTP only for loopback hosts or hosts marked insecure.
    fn endpoint(&self, host: &str) -> Result<Url> {
        https_endpoint(host)
    }

    /// Credentials to answer `request` with; `None` for anonymous access.
    async fn credentials(&self, request: &AuthRequest<'_>) -> Result<Option<Credentials>>;
}

/// `https://<host>/`: the endpoint of most registries.
pub fn https_endpoint(host: &str) -> Result<Url> {
    Url::parse(&format!("https://{host}/"))
        .map_err(|e| Error::InvalidConfig(format!("registry {host:?} is not a valid host: {e}")))
}

/// A provider whose client was given explicit credentials: the core answers
/// with them, and the provider's own sources are never asked (no API call, no
/// file read). Everything else is the provider's.
pub(crate) struct WithCredentials {
    pub(crate) credentials: Credentials,
    pub(crate) provider: Arc<dyn AbstractRegistry>,
}

#[async_trait]
impl AbstractRegistry for WithCredentials {
    fn id(&self) -> &'static str {
        self.provider.id()
    }

    fn endpoint(&self, host: &str) -> Result<Url> {
        self.provider.endpoint(host)
    }

    async fn credentials(&self, _: &AuthRequest<'_>) -> Result<Option<Credentials>> {
        Ok(Some(self.credentials.clone()))
    }
}

/// The provider as it shows itself, and the credentials as they show themselves
/// (never their secret).
impl fmt::Debug for WithCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithCredentials")
            .field("credentials", &self.credentials)
            .field("provider", &self.provider)
            .finish()
    }
}

/// Settings a provider is built from; filled by the client builder.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ProviderConfig {
    pub region: Option<String>,
    /// Explicit credentials, taking precedence over the provider's own sources: the
    /// core answers with them ([`ProviderRecord::build`](crate::driver::ProviderRecord::build)),
    /// so a provider never sees them.
    pub credentials: Option<Credentials>,
    /// Provider-specific settings (e.g. an instance id), by name.
    pub options: BTreeMap<String, String>,
}

/// Options may carry secrets (an access key secret): only their names are shown.
impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ProviderConfig {
    /// The value of option `key` (a provider's option enum, or its name).
    pub fn option(&self, key: impl AsRef<str>) -> Option<&str> {
        self.options.get(key.as_ref()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_option_names_not_values() {
        let mut config = ProviderConfig::default();
        config
            .options
            .insert("access_key_secret".into(), "s3cr3t-value".into());
        let shown = format!("{config:?}");
        assert!(
            shown.contains("access_key_secret") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}
