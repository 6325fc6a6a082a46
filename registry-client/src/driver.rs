//! The driver layer: what a provider supplies, and how providers are found.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use url::Url;

use crate::auth::{Challenge, Credentials};
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

    /// Whether this provider is the one for `host` (used to pick a provider
    /// from an image reference alone).
    fn serves(&self, host: &str) -> bool;

    /// The registry API base URL for `host`, e.g. `https://registry-1.docker.io`
    /// for `docker.io`. The client switches to plain HTTP only for loopback
    /// hosts or hosts marked insecure.
    fn endpoint(&self, host: &str) -> Result<Url>;

    /// Credentials to answer `request` with; `None` for anonymous access.
    async fn credentials(&self, request: &AuthRequest<'_>) -> Result<Option<Credentials>>;
}

/// Settings a provider is built from; filled by the client builder.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ProviderConfig {
    pub region: Option<String>,
    /// Explicit credentials, taking precedence over the provider's own sources.
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
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

/// Builds a provider from its configuration.
pub type ProviderFactory = fn(&ProviderConfig) -> Result<Arc<dyn AbstractRegistry>>;

/// A provider's registration: submitted with `inventory::submit!` at compile
/// time, or passed to [`register_provider`] at run time.
#[derive(Debug)]
pub struct ProviderRecord {
    pub id: &'static str,
    /// Host patterns, for people (e.g. `*.dkr.ecr.*.amazonaws.com`).
    pub hosts: &'static [&'static str],
    pub factory: ProviderFactory,
}

inventory::collect!(ProviderRecord);

static REGISTERED: Mutex<Vec<&'static ProviderRecord>> = Mutex::new(Vec::new());

/// Registers a provider at run time, for builds where `inventory` does not
/// collect it. Registering the same record twice is fine; another record
/// with a taken id is [`Error::DuplicateProvider`].
pub fn register_provider(record: &'static ProviderRecord) -> Result<()> {
    let mut registered = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    let existing = inventory::iter::<ProviderRecord>
        .into_iter()
        .chain(registered.iter().copied())
        .find(|r| r.id == record.id);
    match existing {
        Some(r) if std::ptr::fn_addr_eq(r.factory, record.factory) => Ok(()),
        Some(_) => Err(Error::DuplicateProvider {
            id: record.id.to_owned(),
        }),
        None => {
            registered.push(record);
            Ok(())
        }
    }
}

/// Every registered provider, sorted by id. Two records with one id is an error.
pub fn providers() -> Result<Vec<&'static ProviderRecord>> {
    let registered = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    let mut all: Vec<&'static ProviderRecord> = inventory::iter::<ProviderRecord>
        .into_iter()
        .chain(registered.iter().copied())
        .collect();
    all.sort_by_key(|r| r.id);
    if let Some(pair) = all.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(Error::DuplicateProvider {
            id: pair[0].id.to_owned(),
        });
    }
    Ok(all)
}

/// The provider registered under `id`.
pub fn provider(id: &str) -> Result<&'static ProviderRecord> {
    let all = providers()?;
    all.iter()
        .find(|r| r.id == id)
        .copied()
        .ok_or_else(|| Error::UnknownProvider {
            id: id.to_owned(),
            registered: all.iter().map(|r| r.id.to_owned()).collect(),
        })
}

/// The id of the provider that serves `host`: a specific provider if one
/// claims it, else the generic `oci` provider.
pub fn provider_for_host(host: &str) -> Result<&'static str> {
    let config = ProviderConfig::default();
    for record in providers()? {
        if record.id == crate::oci::ID {
            continue;
        }
        // A provider that cannot even be built with defaults (say, a missing
        // setting) must not stop every other image from finding its provider.
        match (record.factory)(&config) {
            Ok(provider) if provider.serves(host) => return Ok(record.id),
            Ok(_) => {}
            Err(e) => tracing::debug!(provider = record.id, "skipped in host detection: {e}"),
        }
    }
    Ok(crate::oci::ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other_factory(_: &ProviderConfig) -> Result<Arc<dyn AbstractRegistry>> {
        Err(Error::InvalidConfig("test provider".into()))
    }

    static IMPOSTOR: ProviderRecord = ProviderRecord {
        id: "oci",
        hosts: &[],
        factory: other_factory,
    };

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

    #[test]
    fn unknown_id_lists_registered_ones() {
        let err = provider("nope").unwrap_err();
        assert!(err.to_string().contains("oci"), "{err}");
        assert!(matches!(err, Error::UnknownProvider { .. }));
    }

    #[test]
    fn duplicate_id_is_an_error() {
        let err = register_provider(&IMPOSTOR).unwrap_err();
        assert!(matches!(err, Error::DuplicateProvider { ref id } if id == "oci"));
        // Registering the real one again is harmless.
        crate::oci::register().unwrap();
        assert_eq!(provider("oci").unwrap().id, "oci");
    }
}
