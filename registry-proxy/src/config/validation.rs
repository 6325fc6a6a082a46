//! What serde cannot check: names and prefixes well formed and unique, one
//! default route, and the access policy for every route.

use std::collections::HashSet;

use registry_client::ImageReference;

use super::access::check_access;
use super::settings::Config;

/// Checks what serde cannot: unique names and prefixes, one default.
pub(super) fn check(config: &Config) -> Result<(), (String, String)> {
    if config.routes.is_empty() {
        return Err((
            "route".into(),
            "no route: give at least one registry to cache".into(),
        ));
    }
    let mut names = HashSet::new();
    let mut prefixes = HashSet::new();
    let mut hosts = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let key = |field: &str| format!("route[{i}].{field}");
        check_name(&route.name).map_err(|m| (key("name"), m))?;
        if !names.insert(&route.name) {
            return Err((key("name"), format!("route name {:?} is used twice", route.name)));
        }
        if let Some(prefix) = &route.prefix {
            check_prefix(prefix).map_err(|m| (key("prefix"), m))?;
            if !prefixes.insert(prefix) {
                return Err((key("prefix"), format!("prefix {prefix:?} is used by two routes")));
            }
        }
        for host in &route.hosts {
            if !hosts.insert(host.to_ascii_lowercase()) {
                return Err((key("hosts"), format!("host {host:?} is used by two routes")));
            }
        }
        check_access(config, route).map_err(|m| (key("public"), m))?;
    }
    if config.routes.iter().filter(|r| r.default).count() > 1 {
        return Err((
            "route.default".into(),
            "more than one route is the default".into(),
        ));
    }
    Ok(())
}

pub(super) fn check_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "route name {name:?}: use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"
        ))
    }
}

/// A prefix is one repository path component (`ghcr`, `ghcr.io`).
fn check_prefix(prefix: &str) -> Result<(), String> {
    match ImageReference::parse(&format!("example.com/{prefix}/x")) {
        Ok(_) if !prefix.contains('/') => Ok(()),
        _ => Err(format!(
            "prefix {prefix:?}: one path component of lowercase letters, digits and separators"
        )),
    }
}
