//! One module per command, and what they share: the client built from the global options.

pub mod copy;
pub mod credential_helper;
pub mod digest;
pub mod inspect;
pub mod list;
pub mod providers;
pub mod pull;
pub mod push;
pub mod referrers;
pub mod serve;

use registry_client::Progress;
use std::io::Read;
use std::path::Path;

use registry_client::Mirror;
use registry_client::model::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};
use registry_client::{
    Credentials, ImageReference, Platform, RepositoryClient, RepositoryClientBuilder, driver,
};

use crate::cli::{Command, GlobalArgs};
use crate::exit::Failure;
use crate::output::Output;
use crate::progress;

/// What every command gets: the global options, the password read from stdin, the output.
pub struct Context {
    pub global: GlobalArgs,
    password: Option<String>,
    pub out: Output,
}

/// Per-command client settings.
#[derive(Debug, Default, Clone)]
pub struct ClientSettings<'a> {
    pub platform: Option<&'a str>,
    pub layer_cache: Option<&'a Path>,
    pub page_size: Option<u32>,
    /// Where skipped sources are told (the pull's progress); default: a line on stderr.
    pub events: Option<Progress>,
    /// Credentials for this client's registry alone (`copy` has one per side).
    pub credentials: Option<Credentials>,
}

impl Context {
    /// Reads the password from stdin when `--password-stdin` is given.
    pub fn new(global: GlobalArgs) -> Result<Context, Failure> {
        let password = if global.password_stdin {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::io("cannot read the password from stdin", e))?;
            // Like `docker login --password-stdin`: one trailing line break is not part of it.
            let password = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            if password.is_empty() {
                return Err(Failure::Usage("--password-stdin: stdin held no password".into()));
            }
            Some(password.to_owned())
        } else {
            None
        };
        let out = Output {
            json: global.json,
            quiet: global.quiet,
        };
        Ok(Context {
            global,
            password,
            out,
        })
    }

    /// Secrets that must never be printed.
    pub fn secrets(&self) -> Vec<&str> {
        self.password.iter().map(String::as_str).collect()
    }

    pub fn progress_mode(&self) -> progress::Mode {
        progress::Mode::detect(self.global.quiet)
    }

    /// The id of the provider for `registry`: `--provider`, else whichever serves the host.
    pub fn provider_id(&self, registry: &str) -> Result<String, Failure> {
        match &self.global.provider {
            Some(id) => Ok(id.clone()),
            None => Ok(driver::provider_for_host(registry)?.to_owned()),
        }
    }

    /// A client for `registry` (a registry name as written in references).
    pub fn client(&self, registry: &str, settings: ClientSettings<'_>) -> Result<RepositoryClient, Failure> {
        let id = self.provider_id(registry)?;
        tracing::debug!(provider = %id, registry, "building client");
        let global = &self.global;
        let mut builder = RepositoryClient::builder(id);
        if let Some(endpoint) = &global.endpoint {
            builder = builder.endpoint(endpoint.as_str());
        }
        if let Some(region) = &global.region {
            builder = builder.region(region.as_str());
        }
        if global.insecure {
            builder = builder.insecure_registry(registry);
            if registry == DOCKER_HUB {
                builder = builder.insecure_registry(DOCKER_HUB_API_HOST);
            }
            if let Some(host) = global.endpoint.as_deref().and_then(endpoint_host) {
                builder = builder.insecure_registry(host);
            }
        }
        if let (Some(username), Some(password)) = (&global.username, &self.password) {
            builder = builder.credentials(Credentials::basic(username.as_str(), password.as_str()));
        }
        if let Some(credentials) = settings.credentials {
            builder = builder.credentials(credentials);
        }
        if let Some(platform) = settings.platform {
            builder = builder.platform(platform);
        }
        if let Some(dir) = settings.layer_cache {
            builder = builder.layer_cache(dir);
        }
        if let Some(n) = settings.page_size {
            builder = builder.page_size(n);
        }
        builder = self.source_options(builder);
        match settings.events {
            Some(events) => builder = builder.progress(events),
            None if !global.quiet => builder = builder.progress(progress::skipped_sources()),
            None => {}
        }
        Ok(builder.build()?)
    }
}

impl Context {
    /// `--mirror`, `--registries-conf`, `--system-registries-conf`, `--hosts-dir`.
    pub fn source_options(&self, mut builder: RepositoryClientBuilder) -> RepositoryClientBuilder {
        let global = &self.global;
        for mirror in &global.mirror {
            let mut source = Mirror::new(mirror.location.as_str());
            if global.insecure {
                source = source.insecure(true);
            }
            builder = builder.mirror(mirror.registry.as_str(), source);
        }
        if global.system_registries_conf {
            builder = builder.system_registries_conf();
        }
        if let Some(path) = &global.registries_conf {
            builder = builder.registries_conf(path);
        }
        if let Some(dir) = &global.hosts_dir {
            builder = builder.hosts_dir(dir);
        }
        builder
    }
}

/// Runs a command that talks to registries (`main` runs the others).
pub async fn run(command: Command, context: &Context) -> Result<(), Failure> {
    match command {
        Command::Pull(args) => pull::run(context, &args).await,
        Command::Inspect(args) => inspect::run(context, &args).await,
        Command::Digest(args) => digest::run(context, &args).await,
        Command::Tags(args) => list::tags(context, &args).await,
        Command::Catalog(args) => list::catalog(context, &args).await,
        Command::Referrers(args) => referrers::run(context, &args).await,
        Command::Copy(args) => copy::run(context, &args).await,
        Command::Push(args) => push::run(context, &args).await,
        Command::Serve(args) => serve::run(context, &args).await,
        Command::Providers => providers::run(context),
        Command::CredentialHelper(_) | Command::Completions(_) => {
            unreachable!("main runs these without a registry context")
        }
    }
}

/// Parses an image reference; a malformed one is a usage error.
pub fn parse_reference(input: &str) -> Result<ImageReference, Failure> {
    Ok(input.parse::<ImageReference>()?)
}

/// Checks `--platform` before anything is sent; a malformed one is a usage error.
pub fn check_platform(platform: &str) -> Result<&str, Failure> {
    match platform.parse::<Platform>() {
        Ok(_) => Ok(platform),
        Err(registry_client::Error::InvalidConfig(reason)) => {
            Err(Failure::Usage(format!("--platform: {reason}")))
        }
        Err(e) => Err(Failure::Usage(format!("--platform: {e}"))),
    }
}

/// `host[:port]` of an endpoint URL (`http://mirror.lan:5000/v2` → `mirror.lan:5000`).
fn endpoint_host(endpoint: &str) -> Option<&str> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_hosts() {
        assert_eq!(
            endpoint_host("http://mirror.lan:5000/v2/"),
            Some("mirror.lan:5000")
        );
        assert_eq!(endpoint_host("mirror.lan"), Some("mirror.lan"));
        assert_eq!(endpoint_host("https://[::1]:5000"), Some("[::1]:5000"));
        assert_eq!(endpoint_host("https://"), None);
    }

    #[test]
    fn platforms_are_checked() {
        assert!(check_platform("linux/arm64").is_ok());
        let err = check_platform("linux").unwrap_err();
        assert_eq!(err.code(), 2);
    }
}
