//! The rules, ready to use: which rule an image matches (the longest
//! prefix, as podman decides), and each mirror with its own transport (its
//! own token cache, retries and circuit breaker) and provider.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::location::{Location, location_host};
use super::rules::{Mirror, Prefix, RegistrySources, RegistryTarget, Serves};
use crate::driver::transport::{Transport, TransportConfig};
use crate::driver::{self, ProviderConfig};
use crate::error::{Error, Result};
use crate::model::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};

/// A mirror, ready: where it is and the transport that talks to it.
#[derive(Debug)]
pub(crate) struct MirrorSource {
    pub location: Location,
    pub transport: Arc<Transport>,
    pub serves: Serves,
    pub send_namespace: bool,
}

/// Where a rule sends the registry's own requests.
#[derive(Debug)]
pub(crate) enum RegistrySource {
    Itself,
    Moved {
        location: Location,
        send_namespace: bool,
    },
    Off,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub prefix: Prefix,
    pub mirrors: Vec<MirrorSource>,
    pub registry: RegistrySource,
    pub blocked: bool,
    /// `prefix "docker.io" (from /etc/containers/registries.conf)`.
    pub description: String,
}

/// Every rule of a client.
#[derive(Debug, Default)]
pub(crate) struct SourceTable {
    rules: Vec<Rule>,
}

impl SourceTable {
    /// The rule for `registry/repository` and the repository part after its
    /// prefix. On a tie, the rule given first wins (podman's order).
    pub(crate) fn matching<'r>(&self, registry: &str, repository: &'r str) -> Option<(&Rule, &'r str)> {
        let mut best: Option<(usize, &Rule, &str)> = None;
        for rule in &self.rules {
            if let Some((length, rest)) = rule.prefix.matches(registry, repository)
                && best.is_none_or(|(l, _, _)| length > l)
            {
                best = Some((length, rule, rest));
            }
        }
        best.map(|(_, rule, rest)| (rule, rest))
    }

    /// Compiles `rules` (later rules with the same prefix replace earlier
    /// ones). `base` is the client's transport configuration, `options` its
    /// provider options (a docker config path, say), which mirrors inherit;
    /// its credentials they never do.
    pub(crate) fn build(
        rules: Vec<RegistrySources>,
        base: &TransportConfig,
        options: &BTreeMap<String, String>,
        main: &Transport,
    ) -> Result<SourceTable> {
        let mut compiled = Vec::with_capacity(rules.len());
        for rules in rules {
            let description = describe(&rules);
            let invalid = |reason: String| Error::InvalidConfig(format!("{description}: {reason}"));
            // An error about a part of the rule, said once as the rule's.
            let part = |error: Error| match error {
                Error::InvalidConfig(reason) => invalid(reason),
                other => invalid(crate::error::display_chain(&other)),
            };
            let prefix = Prefix::parse(&rules.prefix).map_err(invalid)?;
            let mirrors = rules
                .mirrors
                .iter()
                .map(|m| mirror_source(m, base, options))
                .collect::<Result<Vec<_>>>()
                .map_err(part)?;
            let registry = match &rules.registry {
                RegistryTarget::Itself => RegistrySource::Itself,
                RegistryTarget::Off => RegistrySource::Off,
                RegistryTarget::Moved(location) => RegistrySource::Moved {
                    location: Location::parse(location, main).map_err(part)?,
                    send_namespace: location.send_namespace,
                },
            };
            compiled.retain(|r: &Rule| r.prefix != prefix);
            compiled.push(Rule {
                prefix,
                mirrors,
                registry,
                blocked: rules.blocked,
                description,
            });
        }
        Ok(SourceTable { rules: compiled })
    }
}

/// The hosts that rules mark insecure (the registry, or where it moved) and
/// the domains whose subdomains they mark insecure, for the client's own
/// transport.
pub(crate) fn insecure_hosts(rules: &[RegistrySources]) -> (Vec<String>, Vec<String>) {
    let mut hosts = Vec::new();
    let mut domains = Vec::new();
    for rule in rules.iter().filter(|r| r.insecure) {
        match Prefix::parse(&rule.prefix) {
            Ok(Prefix::Name { registry, .. }) => {
                if registry == DOCKER_HUB {
                    hosts.push(DOCKER_HUB_API_HOST.to_owned());
                }
                hosts.push(registry);
            }
            Ok(Prefix::Subdomains(domain)) => domains.push(domain),
            // `Any` marks nothing; a bad prefix fails when the table is built.
            Ok(Prefix::Any) | Err(_) => {}
        }
    }
    // Where a registry moved is insecure by its rule, or by itself.
    for rule in rules {
        if let RegistryTarget::Moved(location) = &rule.registry
            && (rule.insecure || location.insecure)
            && let Some(host) = location_host(&location.location)
        {
            hosts.push(host.to_owned());
        }
    }
    (hosts, domains)
}

fn describe(rules: &RegistrySources) -> String {
    match &rules.origin {
        Some(origin) => format!("prefix {:?} (from {origin})", rules.prefix),
        None => format!("prefix {:?}", rules.prefix),
    }
}

/// A mirror's own transport and provider: nothing is shared with the
/// registry's, so its credentials, tokens and breaker stay its own.
fn mirror_source(
    mirror: &Mirror,
    base: &TransportConfig,
    options: &BTreeMap<String, String>,
) -> Result<MirrorSource> {
    let mut config = base.clone();
    if let Some(retry) = &mirror.retry {
        config.retry = retry.clone();
    }
    if let Some(breaker) = &mirror.circuit_breaker {
        config.circuit_breaker = breaker.clone();
    }
    if mirror.insecure
        && let Some(host) = location_host(&mirror.location)
    {
        config.insecure_hosts.insert(host.to_owned());
    }
    let host = location_host(&mirror.location).unwrap_or_default().to_owned();
    let id = match &mirror.provider {
        Some(id) => id.clone(),
        None => driver::provider_for_host(&host)?.to_owned(),
    };
    let mut provider_config: ProviderConfig = mirror.config.clone();
    for (name, value) in options {
        provider_config
            .options
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
    let provider = driver::provider(&id)?.build(&provider_config)?;
    let transport = Transport::new(config, provider)?;
    let location = Location::parse(mirror, &transport)?;
    Ok(MirrorSource {
        location,
        transport: Arc::new(transport),
        serves: mirror.serves,
        send_namespace: mirror.send_namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_like_podman() {
        assert_eq!(
            Prefix::parse("docker.io/library").unwrap(),
            Prefix::Name {
                registry: "docker.io".into(),
                path: Some("library".into())
            }
        );
        assert_eq!(
            Prefix::parse("*.example.com").unwrap(),
            Prefix::Subdomains(".example.com".into())
        );
        assert_eq!(Prefix::parse("*").unwrap(), Prefix::Any);
        for bad in [
            "",
            "a/B",
            "*.x.com/foo",
            "x.*.com",
            "docker.io/alpine:3",
            "h@sha256:00",
            "a//b",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn longest_prefix_wins_on_component_boundaries() {
        let p = |s: &str| Prefix::parse(s).unwrap();
        assert_eq!(
            p("docker.io").matches("docker.io", "library/a"),
            Some((9, "library/a"))
        );
        assert_eq!(
            p("docker.io/library").matches("docker.io", "library/a"),
            Some((17, "a"))
        );
        assert_eq!(
            p("docker.io/library").matches("docker.io", "librarything/a"),
            None
        );
        assert_eq!(
            p("docker.io/library/a").matches("docker.io", "library/a"),
            Some((19, ""))
        );
        assert_eq!(p("docker.io").matches("docker.io:5000", "a"), None);
        assert_eq!(
            p("*.example.com").matches("a.b.example.com:5000", "x"),
            Some((15, "x"))
        );
        assert_eq!(p("*.example.com").matches("example.com", "x"), None);
        assert_eq!(p("*").matches("any.where", "x"), Some((0, "x")));
    }
}
