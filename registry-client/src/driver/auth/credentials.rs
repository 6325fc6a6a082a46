//! Credentials a provider hands to the transport. `Debug` never shows a secret.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// What to present to a registry or its token service.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// Username and password: sent as HTTP Basic to a Basic challenge or to the token service.
    Basic {
        username: String,
        password: SecretString,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token service.
    IdentityToken(SecretString),
    /// A registry bearer token, presented as is without any exchange.
    RegistryToken(SecretString),
}

impl Credentials {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }

    pub fn identity_token(token: impl Into<String>) -> Self {
        Credentials::IdentityToken(SecretString::from(token.into()))
    }

    pub fn registry_token(token: impl Into<String>) -> Self {
        Credentials::RegistryToken(SecretString::from(token.into()))
    }

    /// The username, when there is one.
    pub fn username(&self) -> Option<&str> {
        match self {
            Credentials::Basic { username, .. } => Some(username),
            _ => None,
        }
    }

    /// The secret part, for the code that must send it.
    pub fn secret(&self) -> &str {
        match self {
            Credentials::Basic { password, .. } => password.expose_secret(),
            Credentials::IdentityToken(t) | Credentials::RegistryToken(t) => t.expose_secret(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        for c in [
            Credentials::basic("alice", "hunter2-secret"),
            Credentials::identity_token("hunter2-secret"),
            Credentials::registry_token("hunter2-secret"),
        ] {
            let shown = format!("{c:?} {c:#?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert_eq!(c.secret(), "hunter2-secret");
        }
    }
}
