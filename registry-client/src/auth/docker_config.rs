//! The user's docker `config.json`: `auths`, `credsStore`, `credHelpers`.

/// Credentials from docker's config file and credential helpers.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {}
