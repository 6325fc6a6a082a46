//! Mirrors and ordered fallback: the sources an image may come from (its
//! registry's mirrors, then the registry itself), tried in order, first
//! success wins.
//!
//! A [`RegistrySources`] rule names a registry (or a namespace in it, or
//! `*.domain`) and lists its [`Mirror`]s; the client picks the rule with the
//! longest matching prefix, like podman. Rules come from the builder
//! ([`RepositoryClientBuilder::sources`](crate::RepositoryClientBuilder::sources),
//! [`mirror`](crate::RepositoryClientBuilder::mirror)) or from the files users
//! already have: podman's [`registries.conf`](crate::config::registries_conf) and
//! containerd's [`hosts.toml` directories](crate::config::hosts_dir).

mod location;
mod route;
mod rules;
mod table;

pub use location::location_host;
pub(crate) use route::{Need, Route, Source, at_location, mirror_source, preferring};
#[cfg(test)]
pub(crate) use rules::RegistryTarget;
pub(crate) use rules::{ANY_REGISTRY, Prefix};
pub use rules::{Mirror, RegistrySources, Serves};
pub(crate) use table::{RegistrySource, SourceTable, insecure_hosts};
