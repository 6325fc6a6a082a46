//! `mcreg push PATH DESTINATION`: an OCI layout or a docker archive into a registry.

use registry_client::push::{CopyOptions, LocalImage};

use super::copy::print_result;
use super::{ClientSettings, Context, parse_reference};
use crate::cli::PushArgs;
use crate::exit::Failure;
use crate::progress::{Mode, Reporter};

pub async fn run(context: &Context, args: &PushArgs) -> Result<(), Failure> {
    let destination = parse_reference(&args.destination)?;
    let source = &args.source;
    let name = args.image.as_deref();
    let image = if source.is_dir() {
        LocalImage::open_oci_layout(source, name)?
    } else if source.is_file() {
        LocalImage::open_docker_archive(source, name)?
    } else {
        return Err(Failure::Other(format!(
            "cannot push {}: no such directory or file",
            source.display()
        )));
    };
    let client = context.client(destination.registry(), ClientSettings::default())?;
    let mut options = CopyOptions::default().dry_run(args.dry_run);
    if let Some(jobs) = args.jobs {
        options = options.concurrency(jobs.into());
    }
    let mode = if args.dry_run {
        Mode::Silent
    } else {
        context.progress_mode()
    };
    let reporter = Reporter::start(mode, image.origin());
    if let Some(progress) = reporter.progress() {
        options = options.progress(progress);
    }
    let pushed = client.push(&image, &destination, &options).await;
    reporter.finish();
    print_result(context, image.origin(), &pushed?)
}
