//! The proxy's configuration: where it listens, where it stores, and its
//! routes, each a registry with ordered upstreams. Read from a TOML file
//! ([`load`]) or built from the command line ([`Config::for_registries`]).
//!
//! ```toml
//! listen = "0.0.0.0:5000"
//! vhost_suffix = "cache.example.com"      # ghcr.io.cache.example.com → the ghcr.io route
//!
//! [storage]
//! path = "/var/cache/mcreg/proxy"
//!
//! [[route]]
//! registry = "docker.io"                  # name "dockerhub", prefix "docker.io" by default
//! default = true                          # requests without ns=, vhost or prefix
//! tag_ttl = "5m"
//! [[route.mirror]]                        # tried before the registry itself
//! url = "https://mirror.gcr.io"
//! ```

mod access;
mod schema;
mod settings;
mod validation;

use std::path::{Path, PathBuf};

use registry_client::config::toml_file::TomlFile;

pub use access::{check_hidden_credentials, is_public};
pub use settings::{
    AuthConfig, Config, DEFAULT_LISTEN, DEFAULT_TAG_TTL, DEFAULT_TOKEN_TTL, DEFAULT_UPSTREAM_TIMEOUT,
    RouteConfig, S3Config, ServerConfig, UpstreamConfig, env_name,
};

use crate::error::{Error, Result};

/// Reads a TOML configuration file. Errors name the file, the line when
/// known, and the key.
pub fn load(path: &Path, default_storage: PathBuf) -> Result<Config> {
    let text = TomlFile::read(path).map_err(Error::config_file)?;
    parse(path, &text, default_storage)
}

fn parse(path: &Path, text: &str, default_storage: PathBuf) -> Result<Config> {
    let toml = TomlFile::new(path, text);
    let file: schema::FileConfig = toml.deserialize().map_err(Error::config_file)?;
    let error = |(key, message): (String, String)| Error::config_file(toml.error(None, Some(key), message));
    let config = file.into_config(default_storage).map_err(error)?;
    validation::check(&config).map_err(error)?;
    Ok(config)
}

/// Checks a configuration built in code (a file's is checked as it is read).
pub fn validate(config: &Config) -> Result<()> {
    validation::check(config).map_err(|(key, message)| Error::Invalid(format!("{key}: {message}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Result<Config> {
        super::parse(Path::new("proxy.toml"), text, PathBuf::from("/cache"))
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_from_the_registry() {
        let config =
            parse("[[route]]\nregistry = \"docker.io\"\n[[route]]\nregistry = \"localhost:5000\"\n").unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.storage, PathBuf::from("/cache"));
        let hub = &config.routes[0];
        assert_eq!(
            (hub.name.as_str(), hub.prefix.as_deref(), hub.default),
            ("dockerhub", Some("docker.io"), true)
        );
        // Five minutes, as the docs promise.
        assert_eq!(hub.tag_ttl, Duration::from_secs(5 * 60));
        let local = &config.routes[1];
        assert_eq!(
            (local.name.as_str(), local.prefix.as_deref(), local.default),
            ("localhost-5000", Some("localhost-5000"), false)
        );
    }

    #[test]
    fn a_full_route() {
        let config = parse(
            r#"
listen = "0.0.0.0:5001"
vhost_suffix = ".Cache.Example.com"
[storage]
path = "/srv/cache"
[[route]]
registry = "ghcr.io"
name = "ghcr"
prefix = "ghcr"
hosts = ["GHCR.cache.example.com"]
default = true
tag_ttl = "90s"
username = "bot"
password = "s3cret"
endpoint = "https://ghcr.internal:5000"
public = true
[route.options]
access_key_secret = "k3y-s3cret"
[[route.mirror]]
url = "https://mirror.example.com/ghcr"
insecure = true
"#,
        )
        .unwrap();
        assert_eq!(config.vhost_suffix.as_deref(), Some("cache.example.com"));
        let route = &config.routes[0];
        assert_eq!(route.tag_ttl, Duration::from_secs(90));
        assert_eq!(route.hosts, ["ghcr.cache.example.com"]);
        assert!(route.credentials.is_some() && route.mirrors[0].insecure);
        assert_eq!(route.endpoint.as_deref(), Some("https://ghcr.internal:5000"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("k3y"), "{shown}");
        assert!(
            shown.contains("access_key_secret"),
            "option names are shown: {shown}"
        );
    }

    #[test]
    fn a_mirror_password_is_not_in_debug() {
        let config = parse(
            r#"
[[route]]
registry = "ghcr.io"
public = true
[[route.mirror]]
url = "https://mirror.example.com/ghcr"
username = "puller"
password = "m1rr0r-pa55"
"#,
        )
        .unwrap();
        assert!(config.routes[0].mirrors[0].credentials.is_some());
        let shown = format!("{config:?}");
        assert!(!shown.contains("m1rr0r-pa55"), "{shown}");
    }

    #[test]
    fn the_s3_secret_key_is_not_in_debug() {
        let mut config = parse("[[route]]\nregistry = \"docker.io\"\n").unwrap();
        config.s3 = Some(S3Config {
            bucket: "registry-cache".into(),
            access_key_id: Some("AKIAEXAMPLEKEYID".into()),
            secret_access_key: Some("wJalrXUtnFEMI-s3-secret".into()),
            ..S3Config::default()
        });
        for shown in [format!("{config:?}"), format!("{:?}", config.s3)] {
            assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
            // The rest is shown (the key id names the key, like a user).
            assert!(
                shown.contains("registry-cache") && shown.contains("AKIAEXAMPLEKEYID"),
                "{shown}"
            );
        }
    }

    #[test]
    fn the_token_secret_is_not_in_debug() {
        let mut config = parse("[[route]]\nregistry = \"docker.io\"\n").unwrap();
        let secret = "a-token-signing-secret-of-32-bytes-or-more";
        config.auth = Some(AuthConfig {
            htpasswd: PathBuf::from("/etc/mcreg/htpasswd"),
            token_ttl: DEFAULT_TOKEN_TTL,
            realm: None,
            token_secret: Some(secret.into()),
        });
        for shown in [format!("{config:?}"), format!("{:?}", config.auth)] {
            assert!(!shown.contains(secret), "{shown}");
            // The rest is shown: the htpasswd file is a path, not the hashes.
            assert!(shown.contains("/etc/mcreg/htpasswd"), "{shown}");
        }
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let m = message("[[route]]\nregistry = \"docker.io\"\ntag_ttl = 5\n");
        assert!(m.starts_with("proxy.toml, line 3, route[0].tag_ttl:"), "{m}");
        let m = message("[[route]]\nregistry = \"docker.io\"\ntag_ttl = \"soon\"\n");
        assert!(m.starts_with("proxy.toml, route[0].tag_ttl:"), "{m}");
        let m = message("[[route]]\nregistry = \"docker.io\"\nfrobnicate = true\n");
        assert!(m.contains("frobnicate"), "{m}");
        // An unknown key is reported at its own line, not at its table's.
        let m = message("[[route]]\nregistry = \"docker.io\"\n\nfrobnicate = true\n");
        assert!(
            m.starts_with("proxy.toml, line 4, route[0]") && m.contains("frobnicate"),
            "{m}"
        );
        let m = message(
            "[[route]]\nregistry = \"docker.io\"\n[[route.mirror]]\nurl = \"m.io\"\n\nfrobnicate = true\n",
        );
        assert!(
            m.starts_with("proxy.toml, line 6, route[0].mirror[0]") && m.contains("frobnicate"),
            "{m}"
        );
        let m = message("[server]\n\nfrobnicate = true\n[[route]]\nregistry = \"docker.io\"\n");
        assert!(
            m.starts_with("proxy.toml, line 3, server") && m.contains("frobnicate"),
            "{m}"
        );
        // The login keys keep their names and checks without flatten.
        let m = message("[[route]]\nregistry = \"a.io\"\npassword = \"p\"\n");
        assert!(m.starts_with("proxy.toml, route[0].password:"), "{m}");
        let m = message("[[route]]\nregistry = \"a.io\"\nusername = 5\n");
        assert!(m.starts_with("proxy.toml, line 3, route[0].username:"), "{m}");
        let m = message(
            "[[route]]\nregistry = \"a.io\"\n[[route.mirror]]\nurl = \"m\"\nusername = \"u\"\npassword = \"p\"\npassword_env = \"V\"\n",
        );
        assert!(
            m.starts_with("proxy.toml, route[0].mirror[0].password_env:"),
            "{m}"
        );
        let m = message("listen = \"nowhere\"\n[[route]]\nregistry = \"docker.io\"\n");
        assert!(m.starts_with("proxy.toml, listen:"), "{m}");
        let m = message("[[route]]\nregistry = \"Not A Host\"\n");
        assert!(m.starts_with("proxy.toml, route[0].registry:"), "{m}");
        let m =
            message("[[route]]\nregistry = \"a.io\"\n[[route]]\nregistry = \"b.io\"\nprefix = \"a.io\"\n");
        assert!(m.contains("route[1].prefix") && m.contains("two routes"), "{m}");
        let m = message("[[route]]\nregistry = \"a.io\"\nusername = \"u\"\n");
        assert!(m.contains("route[0].username"), "{m}");
        let m = message(
            "[[route]]\nregistry = \"a.io\"\n[[route.mirror]]\nurl = \"m\"\nusername = \"u\"\npassword_env = \"MCREG_TEST_SURELY_UNSET\"\n",
        );
        assert!(
            m.contains("route[0].mirror[0].password_env") && m.contains("MCREG_TEST_SURELY_UNSET"),
            "{m}"
        );
        assert!(message("").contains("no route"));
        let m = message("[[route]]\nregistry = \"a.io\"\nname = \"Bad Name\"\n");
        assert!(m.contains("route[0].name"), "{m}");
    }

    #[test]
    fn connection_and_upstream_limits() {
        let hub = "[[route]]\nregistry = \"docker.io\"\n";
        // Defaults: two minutes idle, connections from the open-file limit
        // (the server's choice), ten seconds for the upstreams.
        let config = parse(hub).unwrap();
        assert_eq!(config.server.idle_timeout, Duration::from_secs(120));
        assert_eq!(config.server.max_connections, None);
        assert_eq!(config.routes[0].upstream_timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(DEFAULT_UPSTREAM_TIMEOUT, Duration::from_secs(10));
        let server = ServerConfig::default();
        assert_eq!(
            (server.idle_timeout, server.max_connections),
            (Duration::from_secs(120), None)
        );

        let config = parse(&format!(
            "[server]\nheader_timeout = \"10s\"\nidle_timeout = \"2m 30s\"\nmax_connections = 4096\n\
             {hub}upstream_timeout = \"30s\"\n[[route]]\nregistry = \"ghcr.io\"\n"
        ))
        .unwrap();
        assert_eq!(config.server.header_timeout, Duration::from_secs(10));
        assert_eq!(config.server.idle_timeout, Duration::from_secs(150));
        assert_eq!(config.server.max_connections, Some(4096));
        assert_eq!(config.routes[0].upstream_timeout, Duration::from_secs(30));
        assert_eq!(config.routes[1].upstream_timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert!(format!("{:?}", config.routes[0]).contains("upstream_timeout: 30s"));

        for (text, start) in [
            (
                "[server]\nidle_timeout = \"0s\"\n",
                "proxy.toml, server.idle_timeout: must be",
            ),
            (
                "[server]\nidle_timeout = \"soon\"\n",
                "proxy.toml, server.idle_timeout:",
            ),
            (
                "[server]\nidle_timeout = 120\n",
                "proxy.toml, line 2, server.idle_timeout:",
            ),
            (
                "[server]\nmax_connections = 0\n",
                "proxy.toml, server.max_connections: must be at least 1",
            ),
            (
                "[server]\nmax_connections = -1\n",
                "proxy.toml, line 2, server.max_connections:",
            ),
            (
                "[server]\n\nmax_connections = \"many\"\n",
                "proxy.toml, line 3, server.max_connections:",
            ),
        ] {
            let m = message(&format!("{text}{hub}"));
            assert!(m.starts_with(start), "{text:?}: {m}");
        }
        for (route, start) in [
            (
                "upstream_timeout = \"0s\"\n",
                "proxy.toml, route[0].upstream_timeout: must be",
            ),
            (
                "upstream_timeout = \"soon\"\n",
                "proxy.toml, route[0].upstream_timeout:",
            ),
            (
                "upstream_timeout = 10\n",
                "proxy.toml, line 3, route[0].upstream_timeout:",
            ),
        ] {
            let m = message(&format!("{hub}{route}"));
            assert!(m.starts_with(start), "{route:?}: {m}");
        }
        let m = message(&format!(
            "{hub}[[route]]\nregistry = \"ghcr.io\"\nupstream_timeout = \"0s\"\n"
        ));
        assert!(m.starts_with("proxy.toml, route[1].upstream_timeout:"), "{m}");
    }

    #[test]
    fn docker_hub_is_the_default_unless_it_says_no() {
        let hub = "[[route]]\nregistry = \"docker.io\"\n";
        assert!(parse(hub).unwrap().routes[0].default);
        let config = parse(&format!("{hub}default = false\n")).unwrap();
        assert!(!config.routes[0].default);
        let config = parse(&format!(
            "{hub}[[route]]\nregistry = \"ghcr.io\"\ndefault = true\n"
        ))
        .unwrap();
        assert!(!config.routes[0].default && config.routes[1].default);
    }

    #[test]
    fn private_upstreams_are_public_only_when_the_route_says_so() {
        let login = "[[route]]\nregistry = \"a.io\"\nusername = \"u\"\npassword = \"p\"\n";
        let m = message(login);
        assert!(
            m.starts_with("proxy.toml, route[0].public:") && m.contains("[auth]"),
            "{m}"
        );
        let config = parse(&format!("{login}public = true\n")).unwrap();
        assert!(is_public(&config, &config.routes[0]));
        let m = message("[[route]]\nregistry = \"a.io\"\npublic = false\n");
        assert!(m.contains("route[0].public") && m.contains("htpasswd"), "{m}");
        let mirror = "[[route]]\nregistry = \"a.io\"\n[[route.mirror]]\nurl = \"m.io\"\nusername = \"u\"\npassword = \"p\"\n";
        assert!(message(mirror).contains("route[0].public"));

        // With [auth], routes are private unless they say public.
        let config = parse(&format!(
            "[auth]\nhtpasswd = \"/etc/htpasswd\"\n{login}[[route]]\nregistry = \"b.io\"\npublic = true\n"
        ))
        .unwrap();
        assert!(!is_public(&config, &config.routes[0]) && is_public(&config, &config.routes[1]));
        let auth = config.auth.expect("auth");
        assert_eq!(auth.token_ttl, DEFAULT_TOKEN_TTL);
        let m = message("[auth]\nhtpasswd = \"h\"\ntoken_ttl = \"0s\"\n[[route]]\nregistry = \"a.io\"\n");
        assert!(m.starts_with("proxy.toml, auth.token_ttl:"), "{m}");
        let m = message("[auth]\nhtpasswd = \"h\"\nrealm = \"token\"\n[[route]]\nregistry = \"a.io\"\n");
        assert!(m.starts_with("proxy.toml, auth.realm:"), "{m}");
    }

    #[test]
    fn credentials_the_file_does_not_show_need_the_route_to_say_public() {
        let with = |host: &str| host == "a.io" || host == "m.io";
        let config = |text: &str| parse(text).unwrap();
        let m = check_hidden_credentials(&config("[[route]]\nregistry = \"a.io\"\n"), with)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("route[0].public") && m.contains("a.io") && m.contains("[auth]"),
            "{m}"
        );
        // A mirror without credentials of its own is asked with the hidden ones.
        let mirrored =
            config("[[route]]\nregistry = \"b.io\"\n[[route.mirror]]\nurl = \"https://m.io/hub\"\n");
        let m = check_hidden_credentials(&mirrored, with).unwrap_err().to_string();
        assert!(m.contains("m.io"), "{m}");
        for fine in [
            // Said public, or private behind [auth].
            "[[route]]\nregistry = \"a.io\"\npublic = true\n",
            "[auth]\nhtpasswd = \"h\"\n[[route]]\nregistry = \"a.io\"\n",
            // Nothing for its hosts; a mirror with its own; a registry never asked.
            "[[route]]\nregistry = \"b.io\"\n",
            "[[route]]\nregistry = \"b.io\"\npublic = true\n[[route.mirror]]\nurl = \"m.io\"\nusername = \"u\"\npassword = \"p\"\n",
            "[[route]]\nregistry = \"a.io\"\nmirror_only = true\n[[route.mirror]]\nurl = \"c.io\"\n",
        ] {
            check_hidden_credentials(&config(fine), with).unwrap();
        }
    }

    #[test]
    fn command_line_routes() {
        let config = Config::for_registries(
            DEFAULT_LISTEN.parse().unwrap(),
            PathBuf::from("/c"),
            &["ghcr.io".into(), "index.docker.io".into()],
        )
        .unwrap();
        assert_eq!(config.routes[1].registry, "docker.io");
        assert!(config.routes[1].default && !config.routes[0].default);
        assert_eq!(config.routes[0].upstream_timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(config.server.idle_timeout, Duration::from_secs(120));
        assert_eq!(env_name("ghcr-io"), "GHCR_IO");
    }
}
