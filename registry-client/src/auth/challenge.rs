//! `WWW-Authenticate` challenges.

/// The scheme of an auth challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    Basic,
    Bearer,
    Other(String),
}

/// One challenge from a `WWW-Authenticate` header. Parameter names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: AuthScheme,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses every challenge in one header value.
    pub fn parse_all(_header: &str) -> Vec<Challenge> {
        todo!("parsing is written in its own change")
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    pub fn service(&self) -> Option<&str> {
        self.param("service")
    }

    pub fn scope(&self) -> Option<&str> {
        self.param("scope")
    }
}
