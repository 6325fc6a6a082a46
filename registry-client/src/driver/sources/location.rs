//! Where a mirror (or a moved registry) is: the URL its API answers at and
//! the namespace put in front of repositories there.

use url::Url;

use super::rules::Mirror;
use crate::driver::transport::{Transport, host_port, is_loopback};
use crate::error::{Error, Result};
use crate::model::reference::check_repository_path;

/// `host[:port]` of a mirror location (`[scheme://]host[:port][/namespace]`),
/// without checking the rest: whose credentials a mirror is asked with.
pub fn location_host(location: &str) -> Option<&str> {
    let rest = location.split_once("://").map_or(location, |(_, rest)| rest);
    rest.split('/').next().filter(|h| !h.is_empty())
}

/// A mirror's location, checked and resolved to a URL.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    /// Ends with `/`; `<repository>/manifests/…` is appended to it.
    pub api_root: Url,
    /// Put in front of the repository (and so in the token scope too).
    pub namespace: Option<String>,
    /// `host[:port]`: whose credentials, whose breaker.
    pub host: String,
    /// Shown in events and errors: `host[:port][/path]`.
    pub name: String,
}

impl Location {
    /// Parses `mirror`'s location. Without a scheme it is HTTPS, or plain
    /// HTTP for loopback and insecure hosts (docker's rule); plain HTTP is
    /// refused elsewhere unless the mirror is insecure.
    pub fn parse(mirror: &Mirror, transport: &Transport) -> Result<Location> {
        let invalid =
            |reason: String| Error::InvalidConfig(format!("mirror location {:?}: {reason}", mirror.location));
        let given = mirror.location.trim();
        let has_scheme = given.contains("://");
        let with_scheme = if has_scheme {
            given.to_owned()
        } else {
            format!("https://{given}")
        };
        let mut url = Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials do not belong in the location; give them to the mirror".into(),
            ));
        }
        if !has_scheme && (is_loopback(&url) || transport.is_insecure(&url)) {
            url.set_scheme("http")
                .map_err(|()| invalid("cannot use plain HTTP".into()))?;
        }
        transport.check_scheme(&url)?;
        let host = host_port(&url);
        let path = url.path().trim_matches('/').to_owned();
        let (api_root, mut namespace) = if mirror.api_url {
            let mut root = url.clone();
            root.set_path(&format!("{}/", url.path().trim_end_matches('/')));
            (root, Vec::new())
        } else {
            let mut root = url.clone();
            root.set_path("/v2/");
            (
                root,
                path.split('/')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )
        };
        if let Some(prefix) = &mirror.path_prefix {
            namespace.extend(prefix.split('/').filter(|c| !c.is_empty()).map(str::to_owned));
        }
        let namespace = (!namespace.is_empty()).then(|| namespace.join("/"));
        if let Some(ns) = &namespace {
            check_repository_path(ns).map_err(invalid)?;
        }
        // The API's own `/v2` says nothing about the mirror: `host/hub/v2` is `host/hub`.
        let shown_path = if mirror.api_url {
            match path.as_str() {
                "v2" => String::new(),
                path => path.strip_suffix("/v2").unwrap_or(path).to_owned(),
            }
        } else {
            namespace.clone().unwrap_or_default()
        };
        let name = match shown_path.as_str() {
            "" => host.clone(),
            path => format!("{host}/{path}"),
        };
        Ok(Location {
            api_root,
            namespace,
            host,
            name,
        })
    }

    /// The repository on this location for the part of an image's name that
    /// follows its rule's prefix.
    pub fn repository(&self, rest: &str) -> Option<String> {
        match (&self.namespace, rest.is_empty()) {
            (Some(ns), true) => Some(ns.clone()),
            (Some(ns), false) => Some(format!("{ns}/{rest}")),
            (None, false) => Some(rest.to_owned()),
            (None, true) => None,
        }
    }
}
