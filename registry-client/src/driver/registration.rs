//! How providers are registered and found: a record per provider, collected by
//! `inventory` at link time or registered at run time.

use std::sync::{Arc, Mutex};

use super::abstract_registry::{AbstractRegistry, ProviderConfig, WithCredentials};
use crate::error::{Error, Result};

/// Builds a provider from its configuration.
pub type ProviderFactory = fn(&ProviderConfig) -> Result<Arc<dyn AbstractRegistry>>;

/// Which registries a provider is chosen for when only an image reference is known.
#[derive(Debug, Clone, Copy)]
pub enum HostMatch {
    /// Any registry: the generic provider, chosen when no other claims the host.
    Any,
    /// The hosts this function accepts (`host` or `host:port`, in any letter case).
    Only(fn(&str) -> bool),
}

/// A provider's registration, written with [`provider!`](crate::provider): collected
/// by `inventory` at link time, or passed to [`register_provider`] at run time.
#[derive(Debug)]
pub struct ProviderRecord {
    pub id: &'static str,
    /// Host patterns, for people (e.g. `*.dkr.ecr.*.amazonaws.com`).
    pub hosts: &'static [&'static str],
    /// Which hosts the provider is chosen for; asked without building the provider.
    pub matches: HostMatch,
    /// The names of the provider's options (its [`provider_options!`](crate::provider_options)
    /// enum's `NAMES`).
    pub options: &'static [&'static str],
    pub factory: ProviderFactory,
}

impl ProviderRecord {
    /// Whether this provider claims `host` specifically (the generic provider claims none).
    pub fn serves(&self, host: &str) -> bool {
        match self.matches {
            HostMatch::Any => false,
            HostMatch::Only(serves) => serves(host),
        }
    }

    /// Builds the provider for `config`. Explicit credentials in `config` are
    /// answered by the core, before the provider is asked: a provider handles
    /// only its own sources of credentials.
    /// An option no registered provider declares is refused.
    pub fn build(&self, config: &ProviderConfig) -> Result<Arc<dyn AbstractRegistry>> {
        check_options(config)?;
        let provider = (self.factory)(config)?;
        Ok(match &config.credentials {
            Some(credentials) => Arc::new(WithCredentials {
                credentials: credentials.clone(),
                provider,
            }),
            None => provider,
        })
    }
}

/// Registers a provider: its record for `inventory` and a `pub fn register()`
/// for builds where `inventory` does not collect it (some static links).
///
/// ```ignore
/// registry_client::provider! {
///     id: ID,
///     hosts: &["*.example-registry.com"],
///     matches: HostMatch::Only(|host| host.ends_with(".example-registry.com")),
///     options: ExampleOption::NAMES,
///     factory: ExampleRegistry::factory,
/// }
/// ```
#[macro_export]
macro_rules! provider {
    (
        id: $id:expr,
        hosts: $hosts:expr,
        matches: $matches:expr,
        options: $options:expr,
        factory: $factory:expr $(,)?
    ) => {
        static PROVIDER_RECORD: $crate::driver::ProviderRecord = $crate::driver::ProviderRecord {
            id: $id,
            hosts: $hosts,
            matches: $matches,
            options: $options,
            factory: $factory,
        };

        $crate::inventory::submit! {
            $crate::driver::ProviderRecord {
                id: $id,
                hosts: $hosts,
                matches: $matches,
                options: $options,
                factory: $factory,
            }
        }

        /// Registers the provider, for builds where `inventory` does not collect it.
        pub fn register() -> $crate::Result<()> {
            $crate::driver::register_provider(&PROVIDER_RECORD)
        }
    };
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

/// Refuses an option that no registered provider declares (a typo would
/// otherwise be ignored). Options of any provider are accepted, not only the
/// client's own: a client's options also reach its mirrors' providers.
fn check_options(config: &ProviderConfig) -> Result<()> {
    if config.options.is_empty() {
        return Ok(());
    }
    let providers = providers()?;
    let known = |name: &str| providers.iter().any(|r| r.options.contains(&name));
    match config.options.keys().find(|name| !known(name)) {
        None => Ok(()),
        Some(name) => {
            let mut all: Vec<&str> = providers.iter().flat_map(|r| r.options.iter().copied()).collect();
            all.sort_unstable();
            Err(Error::InvalidConfig(format!(
                "unknown provider option {name:?}; the registered providers' options are {all:?}"
            )))
        }
    }
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
/// claims it, else the generic one (the record that matches any host).
pub fn provider_for_host(host: &str) -> Result<&'static str> {
    let all = providers()?;
    if let Some(record) = all.iter().find(|r| r.serves(host)) {
        return Ok(record.id);
    }
    all.iter()
        .find(|r| matches!(r.matches, HostMatch::Any))
        .map(|r| r.id)
        .ok_or_else(|| {
            let registered: Vec<_> = all.iter().map(|r| r.id).collect();
            Error::InvalidConfig(format!(
                "no registered provider serves {host:?} (registered: {})",
                registered.join(", ")
            ))
        })
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
        matches: HostMatch::Any,
        options: &[],
        factory: other_factory,
    };

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
        crate::driver::oci::register().unwrap();
        assert_eq!(provider("oci").unwrap().id, "oci");
    }
}
