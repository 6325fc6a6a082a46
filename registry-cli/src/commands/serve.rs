//! `mcreg serve`: the pull-through cache, until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use registry_client::RepositoryClientBuilder;
use registry_client::driver::auth::DockerConfig;
use registry_proxy::config::{self, DEFAULT_LISTEN, DEFAULT_TOKEN_TTL};
use registry_proxy::{AuthConfig, Config, Proxy};

use super::Context;
use crate::cli::ServeArgs;
use crate::exit::Failure;

pub async fn run(context: &Context, args: &ServeArgs) -> Result<(), Failure> {
    let global = &context.global;
    let per_image = [
        ("--provider", global.provider.is_some()),
        ("--endpoint", global.endpoint.is_some()),
        ("--region", global.region.is_some()),
        ("--username", global.username.is_some()),
    ];
    if let Some((flag, _)) = per_image.iter().find(|(_, given)| *given) {
        return Err(Failure::Usage(format!(
            "serve: {flag} is set per route, in the configuration file (see docs/proxy.md)"
        )));
    }
    let default_storage = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let mut config = match &args.config {
        Some(file) => config::load(file, default_storage).map_err(proxy_failure)?,
        None => {
            let listen = DEFAULT_LISTEN.parse().expect("a valid default address");
            let upstreams = if args.upstream.is_empty() {
                vec![registry_client::model::reference::DOCKER_HUB.to_owned()]
            } else {
                args.upstream.clone()
            };
            let mut config =
                Config::for_registries(listen, default_storage, &upstreams).map_err(proxy_failure)?;
            // One route per registry: a second --upstream for one (`docker.io`
            // and `index.docker.io`) would otherwise be a route name used twice.
            for (i, route) in config.routes.iter().enumerate() {
                if let Some(first) = config.routes[..i]
                    .iter()
                    .position(|r| r.registry == route.registry)
                {
                    let (a, b) = (&upstreams[first], &upstreams[i]);
                    let registry = &route.registry;
                    return Err(Failure::Usage(if a == b {
                        format!("serve: --upstream {a} is given twice: give each registry once")
                    } else {
                        format!(
                            "serve: --upstream {a} and --upstream {b} are both {registry}: give each registry once"
                        )
                    }));
                }
            }
            if let Some(htpasswd) = &args.htpasswd {
                config.auth = Some(AuthConfig {
                    htpasswd: htpasswd.clone(),
                    token_ttl: DEFAULT_TOKEN_TTL,
                    realm: None,
                    token_secret: None,
                });
            }
            if args.public {
                for route in &mut config.routes {
                    route.public = Some(true);
                }
            }
            config::validate(&config).map_err(|e| {
                let hint = if about_access(&e) {
                    " (on the command line: --htpasswd FILE, or --public)"
                } else {
                    ""
                };
                Failure::Usage(format!(
                    "serve: {}{hint}",
                    registry_client::error::display_chain(&e)
                ))
            })?;
            config
        }
    };
    // A broken file is reported below, naming it, when the routes' clients
    // are built (the server does not start).
    if let Ok(docker) = DockerConfig::load() {
        config::check_hidden_credentials(&config, |host| docker.names_credentials_for(host)).map_err(
            |e| {
                let file = docker
                    .path()
                    .map_or("docker's config.json".into(), |p| p.display().to_string());
                let hint = if args.config.is_none() {
                    "; on the command line: --htpasswd FILE, or --public"
                } else {
                    ""
                };
                Failure::Usage(format!(
                    "serve: {} (the credentials are in {file}{hint})",
                    registry_client::error::display_chain(&e)
                ))
            },
        )?;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = &args.cache_dir {
        config.storage = dir.clone();
    }
    match registry_proxy::raise_open_file_limit() {
        Ok(files) => tracing::debug!(files, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let proxy = Proxy::new(&config, |builder| context.upstream_options(builder)).map_err(proxy_failure)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Failure::io(format!("cannot listen on {}", config.listen), e))?;
    let address = listener.local_addr().unwrap_or(config.listen);
    for (name, registry, public) in proxy.routes() {
        tracing::info!(route = name, registry, public, "route");
    }
    if config.auth.is_some() && config.server.tls.is_none() {
        tracing::warn!(
            "passwords and tokens travel in clear text: serve TLS ([server] tls_cert) or put TLS in front"
        );
    }
    tracing::info!(
        address = %address,
        cache = %config.storage.display(),
        "serving a pull-through cache on {}://{address}",
        if config.server.tls.is_some() { "https" } else { "http" }
    );
    proxy
        .serve(listener, shutdown_signal())
        .await
        .map_err(proxy_failure)?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM (a service manager) or Ctrl-C: stop accepting, finish what is under way.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM: finishing the answers under way"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: finishing the answers under way"),
    }
}

/// `$XDG_CACHE_HOME/mcreg/proxy`, else `~/.cache/mcreg/proxy`.
fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("mcreg").join("proxy")
}

/// Whether a [`Config::validate`] error is about who may pull (a
/// `route[i].public` key), which `--htpasswd` or `--public` settle.
fn about_access(error: &registry_proxy::Error) -> bool {
    match error {
        registry_proxy::Error::Invalid(message) => message
            .split_once(": ")
            .is_some_and(|(key, _)| key.starts_with("route[") && key.ends_with("].public")),
        _ => false,
    }
}

fn proxy_failure(error: registry_proxy::Error) -> Failure {
    match error {
        registry_proxy::Error::Upstream(e) => e.into(),
        other => Failure::Other(registry_client::error::display_chain(&other)),
    }
}

/// What the global options say about upstreams: the mirror flags and files, `--insecure`.
impl Context {
    pub fn upstream_options(&self, mut builder: RepositoryClientBuilder) -> RepositoryClientBuilder {
        builder = self.source_options(builder);
        if self.global.insecure {
            builder = builder.insecure(true);
        }
        builder
    }
}
