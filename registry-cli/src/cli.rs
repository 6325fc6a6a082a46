//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

/// The file name that makes the binary speak docker's credential-helper protocol.
pub const HELPER_PROGRAM: &str = "docker-credential-mcreg";

/// Pull, inspect and list container images from any registry.
#[derive(Debug)]
pub struct Cli {
    pub global: GlobalArgs,
    pub command: Command,
}

/// What clap parses; [`Cli`] adds the repeatable options given after the command.
#[derive(Debug, Parser)]
#[command(
    name = "mcreg",
    version,
    about = "Pull, inspect and list container images from any registry",
    after_help = "Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 authentication, \
                  5 network/timeout/rate limit, 6 integrity (digest or size mismatch)."
)]
struct ParsedCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options that may be given several times. clap's `global = true` would
/// keep only the values after the command name when both sides have some,
/// so these are top-level options copied into every command instead, and
/// [`Cli`] joins the two sides in command-line order.
const REPEATABLE: [&str; 2] = ["mirror", "verbose"];

impl CommandFactory for Cli {
    fn command() -> clap::Command {
        let top = ParsedCli::command();
        let repeatable: Vec<clap::Arg> = top
            .get_arguments()
            .filter(|a| REPEATABLE.contains(&a.get_id().as_str()))
            .cloned()
            .collect();
        top.mut_subcommands(|command| command.args(repeatable.iter().cloned()))
    }

    fn command_for_update() -> clap::Command {
        Self::command()
    }
}

impl FromArgMatches for Cli {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut matches.clone())
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        let (mirrors, verbose) = match matches.subcommand() {
            Some((_, after)) => (
                after
                    .try_get_many::<MirrorArg>("mirror")
                    .ok()
                    .flatten()
                    .map(|m| m.cloned().collect())
                    .unwrap_or_default(),
                after
                    .try_get_one::<u8>("verbose")
                    .ok()
                    .flatten()
                    .copied()
                    .unwrap_or(0),
            ),
            None => (Vec::new(), 0),
        };
        let ParsedCli { mut global, command } = ParsedCli::from_arg_matches_mut(matches)?;
        global.mirror.extend(mirrors);
        global.verbose = global.verbose.saturating_add(verbose);
        Ok(Cli { global, command })
    }

    /// Nothing updates a parsed command line; this parses it afresh.
    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Parser for Cli {}

/// Options every command takes (before or after the command name).
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Registry provider (oci, aws, gcp, ali, …); default: chosen from the registry host
    #[arg(long, global = true, value_name = "ID", env = "MCREG_PROVIDER")]
    pub provider: Option<String>,

    /// Send every request to this registry endpoint instead (a mirror, a local registry)
    #[arg(long, global = true, value_name = "URL", env = "MCREG_ENDPOINT")]
    pub endpoint: Option<String>,

    /// Cloud region, for providers that need one
    #[arg(long, global = true, value_name = "REGION", env = "MCREG_REGION")]
    pub region: Option<String>,

    /// Allow plain HTTP and unverified TLS for this command's registry (and --endpoint, --mirror;
    /// for serve, every upstream)
    #[arg(long, global = true)]
    pub insecure: bool,

    /// Try this mirror for a registry's images before the registry itself (repeatable, tried
    /// in order): REGISTRY=[scheme://]host[:port][/namespace], e.g. docker.io=mirror.lan:5000
    // Not `global`: see REPEATABLE.
    #[arg(long, value_name = "REGISTRY=URL", value_parser = parse_mirror)]
    pub mirror: Vec<MirrorArg>,

    /// Read mirrors, remapped and blocked registries from this podman registries.conf
    #[arg(long, global = true, value_name = "FILE", env = "MCREG_REGISTRIES_CONF")]
    pub registries_conf: Option<PathBuf>,

    /// Read mirrors, remapped and blocked registries from the registries.conf files podman reads
    #[arg(long, global = true)]
    pub system_registries_conf: bool,

    /// Read mirrors from containerd's host directories: DIR/<registry>/hosts.toml and
    /// DIR/_default/hosts.toml (as ctr --hosts-dir)
    #[arg(long, global = true, value_name = "DIR", env = "MCREG_HOSTS_DIR")]
    pub hosts_dir: Option<PathBuf>,

    /// User name for the registry; the password is read from stdin (--password-stdin)
    #[arg(long, global = true, value_name = "USER", requires = "password_stdin")]
    pub username: Option<String>,

    /// Read the password for --username from stdin
    #[arg(long, global = true, requires = "username")]
    pub password_stdin: bool,

    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress and no informational output
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG is honoured too
    // Not `global`: see REPEATABLE.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
}

/// One `--mirror REGISTRY=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorArg {
    /// A registry, a namespace in one, or `*.domain`, as `registries.conf` prefixes are.
    pub registry: String,
    pub location: String,
}

fn parse_mirror(value: &str) -> Result<MirrorArg, String> {
    match value.split_once('=') {
        Some((registry, location)) if !registry.is_empty() && !location.is_empty() => Ok(MirrorArg {
            registry: registry.to_owned(),
            location: location.to_owned(),
        }),
        _ => Err(format!(
            "expected REGISTRY=URL (e.g. docker.io=mirror.example.com:5000), got {value:?}"
        )),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull an image to a docker-archive tar, an OCI image layout or a root filesystem tar
    Pull(PullArgs),
    /// Show an image's digest, media type, platforms, layers and config
    Inspect(InspectArgs),
    /// Print an image's manifest digest (a HEAD request; nothing is pulled)
    Digest(DigestArgs),
    /// List every tag of a repository
    Tags(TagsArgs),
    /// List every repository of a registry
    Catalog(CatalogArgs),
    /// Show an image's signatures, SBOMs and attestations (its referrers) as a tree
    Referrers(ReferrersArgs),
    /// Copy an image to another registry: blobs streamed, none uploaded twice
    Copy(CopyArgs),
    /// Push an OCI layout or a docker archive (docker/podman save) to a registry
    Push(PushArgs),
    /// Run a pull-through cache: a /v2/ mirror for docker, containerd and podman
    Serve(ServeArgs),
    /// List the registry providers and the hosts each serves
    Providers,
    /// Speak docker's credential-helper protocol with cloud credentials (ECR, GAR/GCR, ACR)
    CredentialHelper(CredentialHelperArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference, e.g. alpine:3.20 or ghcr.io/owner/image@sha256:…
    pub image: String,

    /// Where to write: a tar file (docker, rootfs) or a directory (oci)
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    pub format: Format,

    /// Platform to pull from a multi-platform image (default: this machine's); `all` (only
    /// with --format oci) keeps every platform
    #[arg(long, value_name = "os/arch[/variant]|all")]
    pub platform: Option<String>,

    /// Keep layers in this content-addressed directory and reuse them on later pulls
    #[arg(long, value_name = "DIR", env = "MCREG_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Layers downloaded at once (default 8)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The image to copy, e.g. docker.io/library/alpine:3.20
    pub source: String,

    /// Where to, e.g. ghcr.io/owner/alpine:3.20 (the tag may differ from the source's)
    pub destination: String,

    /// Copy the whole index, every platform, byte for byte
    #[arg(long, conflicts_with = "platform")]
    pub all: bool,

    /// Platform to copy from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "os/arch[/variant]")]
    pub platform: Option<String>,

    /// Only say what would move: nothing is uploaded, no tag is written
    #[arg(long)]
    pub dry_run: bool,

    /// Blobs copied at once (default 4)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,

    /// The source registry's user and password (else docker's config.json, or the cloud's own)
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "MCREG_SRC_CREDS",
        hide_env_values = true
    )]
    pub src_creds: Option<String>,

    /// The destination registry's user and password (else docker's config.json, or the cloud's own)
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "MCREG_DEST_CREDS",
        hide_env_values = true
    )]
    pub dest_creds: Option<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// An OCI layout directory, or a docker archive (.tar) from docker save, podman save or pull
    pub source: PathBuf,

    /// Where to, e.g. registry.example.com/team/app:1.0
    pub destination: String,

    /// Which image of the layout (its ref name) or of the archive (a RepoTag, or its tag);
    /// needed when it holds several
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,

    /// Only say what would move: nothing is uploaded, no tag is written
    #[arg(long)]
    pub dry_run: bool,

    /// Blobs uploaded at once (default 4)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

/// Output formats of `pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A `docker load`-able tar
    Docker,
    /// An OCI image layout directory
    Oci,
    /// The flattened root filesystem as a tar
    Rootfs,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Docker => "docker",
            Format::Oci => "oci",
            Format::Rootfs => "rootfs",
        }
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image reference
    pub image: String,

    /// Print the manifest bytes exactly as served (with --config: the config blob's bytes)
    #[arg(long)]
    pub raw: bool,

    /// Print the image config (of the selected platform) instead of the summary
    #[arg(long)]
    pub config: bool,

    /// Platform to describe from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "os/arch[/variant]")]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// Image reference
    pub image: String,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// Repository, e.g. alpine or ghcr.io/owner/image (a tag or digest is ignored)
    pub repository: String,

    /// Entries asked for per page (default: the registry's)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ReferrersArgs {
    /// Image reference (a tag is resolved to its digest first)
    pub image: String,

    /// Only the image's referrers of this artifact type (all of theirs below them)
    #[arg(long, value_name = "TYPE")]
    pub artifact_type: Option<String>,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// Registry host, e.g. registry.example.com or localhost:5000
    pub registry: String,

    /// Entries asked for per page (default: the registry's)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (routes, upstreams, credentials, storage); see docs/proxy.md
    #[arg(long, short = 'c', value_name = "FILE", env = "MCREG_SERVE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on (default 127.0.0.1:5000, or the file's `listen`)
    #[arg(long, value_name = "ADDR:PORT", env = "MCREG_SERVE_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,

    /// A registry to cache (repeatable; without --config and without this: docker.io)
    #[arg(long, value_name = "REGISTRY", conflicts_with = "config")]
    pub upstream: Vec<String>,

    /// Users (htpasswd -B) who may pull; anonymous clients are refused
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "public"])]
    pub htpasswd: Option<PathBuf>,

    /// Serve anyone, even content fetched with upstream credentials
    #[arg(long, conflicts_with = "config")]
    pub public: bool,

    /// The cache directory (default: $XDG_CACHE_HOME/mcreg/proxy, or the file's storage.path)
    #[arg(long, value_name = "DIR", env = "MCREG_SERVE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CredentialHelperArgs {
    #[arg(value_enum)]
    pub action: HelperAction,
}

/// The credential-helper protocol's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HelperAction {
    /// Read a server URL on stdin, print its credentials as JSON
    Get,
    /// Read credentials JSON on stdin; nothing is stored (cloud credentials are minted)
    Store,
    /// Read a server URL on stdin; nothing is stored, so nothing is erased
    Erase,
    /// Print the stored credentials: always `{}`
    List,
    /// Print the helper's version
    Version,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The command line when the binary runs as `docker-credential-mcreg`.
#[derive(Debug, Parser)]
#[command(
    name = HELPER_PROGRAM,
    version,
    about = "Docker credential helper answering with ECR, Artifact Registry/gcr.io and ACR credentials"
)]
pub struct HelperCli {
    #[arg(value_enum)]
    pub action: HelperAction,

    /// More logging on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_lines_are_consistent() {
        Cli::command().debug_assert();
        HelperCli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = Cli::try_parse_from(["mcreg", "digest", "alpine", "--json", "--insecure"]).unwrap();
        assert!(cli.global.json && cli.global.insecure);
        let cli = Cli::try_parse_from(["mcreg", "-q", "--provider", "oci", "tags", "alpine"]).unwrap();
        assert!(cli.global.quiet);
        assert_eq!(cli.global.provider.as_deref(), Some("oci"));
    }

    #[test]
    fn username_and_password_stdin_go_together() {
        assert!(Cli::try_parse_from(["mcreg", "--username", "u", "tags", "alpine"]).is_err());
        assert!(Cli::try_parse_from(["mcreg", "--password-stdin", "tags", "alpine"]).is_err());
        Cli::try_parse_from(["mcreg", "--username", "u", "--password-stdin", "tags", "alpine"]).unwrap();
    }

    #[test]
    fn mirrors_keep_their_order_and_config_flags_their_values() {
        let cli = Cli::try_parse_from([
            "mcreg",
            "pull",
            "alpine",
            "-o",
            "a.tar",
            "--mirror",
            "docker.io=mirror.lan:5000",
            "--mirror=docker.io=https://mirror.example.com/hub",
            "--system-registries-conf",
        ])
        .unwrap();
        let mirrors: Vec<&str> = cli.global.mirror.iter().map(|m| m.location.as_str()).collect();
        assert_eq!(mirrors, ["mirror.lan:5000", "https://mirror.example.com/hub"]);
        assert_eq!(cli.global.mirror[0].registry, "docker.io");
        assert!(cli.global.system_registries_conf && cli.global.registries_conf.is_none());
        let cli = Cli::try_parse_from(["mcreg", "--mirror", "a.io=m1", "--mirror", "a.io=m2", "tags", "a"])
            .unwrap();
        assert_eq!(cli.global.mirror.len(), 2);
        let cli = Cli::try_parse_from([
            "mcreg",
            "--registries-conf=/x.conf",
            "--hosts-dir",
            "/d",
            "tags",
            "a",
        ])
        .unwrap();
        assert_eq!(
            cli.global.registries_conf.as_deref(),
            Some(std::path::Path::new("/x.conf"))
        );
        assert_eq!(cli.global.hosts_dir.as_deref(), Some(std::path::Path::new("/d")));
        for bad in ["docker.io", "=m", "docker.io="] {
            assert!(
                Cli::try_parse_from(["mcreg", "--mirror", bad, "tags", "a"]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn repeatable_options_keep_every_value_on_both_sides_of_the_command() {
        let parse = |args: &[&str]| Cli::try_parse_from(["mcreg"].iter().chain(args)).unwrap();
        let cli = parse(&[
            "--mirror",
            "a.io=m1",
            "--mirror=a.io=m2",
            "tags",
            "a",
            "--mirror",
            "a.io=m3",
        ]);
        let mirrors: Vec<&str> = cli.global.mirror.iter().map(|m| m.location.as_str()).collect();
        assert_eq!(mirrors, ["m1", "m2", "m3"]);
        assert_eq!(
            parse(&["--mirror", "a.io=m1", "tags", "a"]).global.mirror.len(),
            1
        );
        assert_eq!(
            parse(&["tags", "a", "--mirror", "a.io=m1"]).global.mirror.len(),
            1
        );
        assert_eq!(parse(&["-v", "tags", "a", "-vv"]).global.verbose, 3);
        assert_eq!(parse(&["-vv", "tags", "a"]).global.verbose, 2);
        assert_eq!(parse(&["providers", "-v"]).global.verbose, 1);
        // Each side still checks its values and -q against -v.
        assert!(Cli::try_parse_from(["mcreg", "tags", "a", "--mirror", "bad"]).is_err());
        assert!(Cli::try_parse_from(["mcreg", "tags", "a", "-q", "-v"]).is_err());
        assert!(Cli::try_parse_from(["mcreg", "-q", "-v", "tags", "a"]).is_err());
    }

    #[test]
    fn jobs_must_be_positive() {
        let parse = |jobs: &str| Cli::try_parse_from(["mcreg", "pull", "a", "-o", "a.tar", "--jobs", jobs]);
        assert!(parse("0").is_err());
        assert!(parse("x").is_err());
        parse("4").unwrap();
    }
}
