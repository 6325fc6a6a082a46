//! `mcreg`: pull, inspect and list container images from any registry.
//!
//! Run as `docker-credential-mcreg` (a symlink or a copy), the binary is a docker
//! credential helper instead. See `docs/cli.md`.

mod cli;
mod commands;
mod exit;
mod output;
mod progress;

use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

// The cloud providers register themselves with `inventory`; a Cargo dependency alone does not
// link a crate, so each is named here.
use registry_ali as _;
use registry_aws as _;
use registry_gcp as _;

use crate::cli::{Cli, Command, HELPER_PROGRAM, HelperCli};
use crate::commands::Context;
use crate::exit::{Failure, code};

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if invoked_as_helper(&argv0) {
        let cli = HelperCli::parse();
        init_tracing(false, cli.verbose, false);
        return ExitCode::from(block_on(commands::credential_helper::run(cli.action, None)));
    }

    // clap prints its own usage errors and exits with 2 (0 for --help and --version).
    let cli = Cli::parse();
    let server = matches!(cli.command, Command::Serve(_));
    init_tracing(cli.global.quiet, cli.global.verbose, server);
    let global = cli.global.clone();
    let code = match cli.command {
        Command::Completions(args) => {
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "mcreg", &mut out);
            report(output::write_stdout(&out), &[])
        }
        Command::CredentialHelper(_) if global.password_stdin => report(
            Err(Failure::Usage(
                "credential-helper reads the server URL on stdin; it takes no --password-stdin".into(),
            )),
            &[],
        ),
        Command::CredentialHelper(args) => block_on(commands::credential_helper::run(
            args.action,
            global.region.clone(),
        )),
        command => match Context::new(global) {
            Ok(context) => {
                let result = block_on(commands::run(command, &context));
                report(result, &context.secrets())
            }
            Err(failure) => report(Err(failure), &[]),
        },
    };
    ExitCode::from(code)
}

/// Whether `argv[0]`'s file name is `docker-credential-mcreg` (`.exe` on Windows).
fn invoked_as_helper(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| name.strip_suffix(".exe").unwrap_or(name) == HELPER_PROGRAM)
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        // File reads and writes run there; sixteen keep a disk busy, and each thread more
        // is memory held (its stack, its allocator arena) when many clients pull: 20
        // concurrent cold pulls through `mcreg serve` peaked at 52.8 MiB on average with
        // 16 (six runs), 56.4 with 32, in the same time.
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .expect("start the tokio runtime")
        .block_on(future)
}

/// Prints a failure as `error: <sentence>: <cause>: <cause>` and gives the exit code.
fn report(result: Result<(), Failure>, secrets: &[&str]) -> u8 {
    match result {
        Ok(()) => code::OK,
        Err(failure) => {
            eprintln!("error: {}", failure.redacted_message(secrets));
            failure.code()
        }
    }
}

/// Crates whose logs `-v` and `-vv` show; `-vvv` shows every crate's (HTTP, TLS, …).
const OUR_CRATES: [&str; 6] = [
    "mcreg",
    "registry_client",
    "registry_aws",
    "registry_gcp",
    "registry_ali",
    "registry_proxy",
];

/// Logs go to stderr, above any progress bars: warnings by default, ours at info with `-v`
/// and debug with `-vv`, everything at trace with `-vvv`, errors only with `-q`.
/// `RUST_LOG` is used as is, with `-v`/`-q` adding their directives to it. A server logs
/// ours at info by default (a line per request) and with timestamps.
fn init_tracing(quiet: bool, verbose: u8, server: bool) {
    let ours = match (quiet, verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) if server => LevelFilter::INFO,
        (false, 0) => LevelFilter::WARN,
        (false, 1) => LevelFilter::INFO,
        (false, 2) => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let others = if quiet {
        LevelFilter::ERROR
    } else if verbose >= 3 {
        LevelFilter::TRACE
    } else {
        LevelFilter::WARN
    };
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    let mut directives = Vec::new();
    if rust_log.trim().is_empty() || quiet || verbose > 0 {
        directives.push(others.to_string());
        directives.extend(OUR_CRATES.iter().map(|krate| format!("{krate}={ours}")));
    }
    if rust_log.trim().is_empty() && verbose == 0 && !quiet {
        // A breaker opening inside one command is told by the command's own error.
        directives.push(format!("{}=error", registry_client::CIRCUIT_BREAKER_LOG_TARGET));
    }
    let mut filter = EnvFilter::builder().parse_lossy(&rust_log);
    for directive in directives {
        filter = filter.add_directive(directive.parse().expect("valid directive"));
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::LogWriter::default)
        .with_ansi(ansi)
        .with_target(verbose >= 2);
    // Timestamps only when debugging, or for a server.
    if verbose >= 2 || server {
        subscriber.init();
    } else {
        subscriber.without_time().init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_names() {
        assert!(invoked_as_helper(OsStr::new(
            "/usr/local/bin/docker-credential-mcreg"
        )));
        assert!(invoked_as_helper(OsStr::new("docker-credential-mcreg")));
        assert!(invoked_as_helper(OsStr::new(
            "C:/bin/docker-credential-mcreg.exe"
        )));
        assert!(!invoked_as_helper(OsStr::new("/usr/bin/mcreg")));
        assert!(!invoked_as_helper(OsStr::new("docker-credential-ecr-login")));
    }
}
