//! Who may pull what: a route is public or needs the cache's users, and
//! content fetched with credentials is never served to anyone by accident.

use registry_client::driver::sources::location_host;

use super::settings::{Config, RouteConfig};
use crate::error::{Error, Result};

/// Whether anonymous clients may pull from `route`.
pub fn is_public(config: &Config, route: &RouteConfig) -> bool {
    route.public.unwrap_or(config.auth.is_none())
}

/// A private route needs users; content fetched with the cache's own
/// credentials is served to anyone only when the route says so (the
/// complaint about Distribution's proxy: private content made public).
pub(super) fn check_access(config: &Config, route: &RouteConfig) -> Result<(), String> {
    match (route.public, &config.auth) {
        (Some(false), None) => Err(format!(
            "route {:?} is not public: give [auth] htpasswd with its users",
            route.name
        )),
        (None, None) if private_upstream(route) => Err(format!(
            "route {:?} fetches with credentials, so without [auth] its content would be \
             served to anyone: give [auth] htpasswd, or say public = true",
            route.name
        )),
        _ => Ok(()),
    }
}

/// The same rule for credentials the configuration cannot show (docker's
/// `config.json`, say): `has_credentials(host)` tells whether a registry
/// or mirror host has some. Without `[auth]`, a route that would fetch
/// with them must say it is public.
pub fn check_hidden_credentials(config: &Config, has_credentials: impl Fn(&str) -> bool) -> Result<()> {
    if config.auth.is_some() {
        return Ok(());
    }
    for (i, route) in config.routes.iter().enumerate() {
        if route.public.is_some() {
            continue;
        }
        let registry = (!route.mirror_only).then_some(route.registry.as_str());
        let mirrors = route
            .mirrors
            .iter()
            .filter(|m| m.credentials.is_none())
            .filter_map(|m| location_host(&m.url));
        if let Some(host) = registry.into_iter().chain(mirrors).find(|h| has_credentials(h)) {
            return Err(Error::Invalid(format!(
                "route[{i}].public: route {:?} would fetch from {host} with credentials the \
                 configuration does not show, so without [auth] its content would be served \
                 to anyone: give [auth] htpasswd, or say public = true",
                route.name
            )));
        }
    }
    Ok(())
}

/// An upstream reached with credentials: given in the configuration, or
/// the cloud's own (a cloud provider's registry).
fn private_upstream(route: &RouteConfig) -> bool {
    let cloud = match &route.provider {
        Some(id) => id != registry_client::driver::oci::ID,
        None => registry_client::driver::provider_for_host(&route.registry)
            .is_ok_and(|id| id != registry_client::driver::oci::ID),
    };
    cloud || route.credentials.is_some() || route.mirrors.iter().any(|m| m.credentials.is_some())
}
