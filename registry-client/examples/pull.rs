//! Pulls an image to a docker-archive tar, an OCI layout or a flattened root filesystem.
//!
//! ```text
//! cargo run --release -p registry-client --example pull -- alpine:3.20 -o alpine.tar
//! cargo run --release -p registry-client --example pull -- alpine:3.20 -o layout --format oci --platform all
//! cargo run --release -p registry-client --example pull -- alpine:3.20 -o rootfs.tar --format rootfs \
//!     --cache-dir ~/.cache/mcreg --jobs 8
//! ```
//! One line per finished layer goes to stderr; the result summary to stdout.

use registry_client::{Progress, ProgressEvent};
use std::path::PathBuf;
use std::process::ExitCode;

use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient};

struct Args {
    image: String,
    output: PathBuf,
    format: String,
    platform: Option<String>,
    cache_dir: Option<PathBuf>,
    jobs: Option<usize>,
    insecure: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut image, mut output, mut format) = (None, None, "docker".to_owned());
    let (mut platform, mut cache_dir, mut jobs, mut insecure) = (None, None, None, false);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "-o" | "--output" => output = Some(PathBuf::from(value()?)),
            "--format" => format = value()?,
            "--platform" => platform = Some(value()?),
            "--cache-dir" => cache_dir = Some(PathBuf::from(value()?)),
            "--jobs" => jobs = Some(value()?.parse().map_err(|_| "--jobs takes a number")?),
            "--insecure" => insecure = true,
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => image = Some(other.to_owned()),
        }
    }
    Ok(Args {
        image: image.ok_or("missing IMAGE")?,
        output: output.ok_or("missing -o PATH")?,
        format,
        platform,
        cache_dir,
        jobs,
        insecure,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "error: {e}\nusage: pull IMAGE -o PATH [--format docker|oci|rootfs] [--platform os/arch[/variant]|all] [--cache-dir DIR] [--jobs N] [--insecure]"
            );
            return ExitCode::from(2);
        }
    };
    match pull(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", registry_client::error::display_chain(&error));
            ExitCode::FAILURE
        }
    }
}

async fn pull(args: Args) -> registry_client::Result<()> {
    let reference: ImageReference = args.image.parse()?;
    let all = args.platform.as_deref() == Some("all");
    let mut builder = RepositoryClient::builder_for(&reference).insecure(args.insecure);
    if let Some(platform) = args.platform.as_deref().filter(|_| !all) {
        builder = builder.platform(platform);
    }
    if let Some(dir) = args.cache_dir {
        builder = builder.layer_cache(dir);
    }
    let client = builder.build()?;
    let mut options = PullOptions::default().progress(Progress::new(|event| {
        if let ProgressEvent::BlobDone { digest, size } | ProgressEvent::BlobFromCache { digest, size } =
            event
        {
            let how = if matches!(event, ProgressEvent::BlobDone { .. }) {
                "done"
            } else {
                "cached"
            };
            eprintln!("{how} {digest} {size}");
        }
    }));
    if let Some(jobs) = args.jobs {
        options = options.concurrency(jobs);
    }
    let image = if all {
        client.pull_all_platforms(&reference).await?
    } else {
        client.pull(&reference).await?
    };
    let result = match args.format.as_str() {
        "docker" => image.write_docker_archive(&args.output, &options).await?,
        "oci" => image.write_oci_layout(&args.output, &options).await?,
        "rootfs" => image.write_rootfs(&args.output, &options).await?,
        other => {
            return Err(registry_client::Error::InvalidConfig(format!(
                "unknown format {other:?}"
            )));
        }
    };
    println!(
        "{} {} {} layers, {} bytes ({} downloaded) -> {}",
        reference,
        result.digest,
        result.layers.len(),
        result.total_bytes,
        result.downloaded_bytes,
        args.output.display()
    );
    Ok(())
}
