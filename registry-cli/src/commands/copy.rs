//! `mcreg copy SOURCE DESTINATION`: registry to registry, each side with its own credentials.

use registry_client::BlobPush;
use std::path::PathBuf;

use registry_client::pull::{DEFAULT_CONCURRENCY, Image, PullResult};
use registry_client::push::{CopyOptions, CopyResult, ImageSource, LocalImage};
use registry_client::write::{Destination, Written, copy_image};
use registry_client::{Credentials, ImageReference, RepositoryClient};
use serde::Serialize;

use super::{ClientSettings, Context, check_platform, parse_reference};
use crate::cli::CopyArgs;
use crate::exit::Failure;
use crate::output::{plural, size};
use crate::progress::{Mode, Reporter};

/// `copy --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CopyReport {
    source: String,
    destination: String,
    digest: String,
    dry_run: bool,
    uploaded_bytes: u64,
    blobs: Vec<BlobReport>,
    /// Manifests put, the tagged one last.
    manifests: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BlobReport {
    digest: String,
    size: u64,
    /// `present`, `mounted` or `uploaded` (in a dry run: what would be done).
    action: &'static str,
}

pub async fn run(context: &Context, args: &CopyArgs) -> Result<(), Failure> {
    let global = &context.global;
    // One registry's settings would go to both sides: the credentials to the wrong host.
    let one_sided = [
        ("--provider", global.provider.is_some()),
        ("--endpoint", global.endpoint.is_some()),
        ("--region", global.region.is_some()),
        ("--username", global.username.is_some()),
    ];
    if let Some((flag, _)) = one_sided.iter().find(|(_, given)| *given) {
        return Err(Failure::Usage(format!(
            "copy: {flag} would apply to both registries; give --src-creds and --dest-creds for credentials"
        )));
    }
    let platform = args.platform.as_deref().map(check_platform).transpose()?;
    let reporter = Reporter::start(
        if args.dry_run {
            Mode::Silent
        } else {
            context.progress_mode()
        },
        &args.source,
    );
    let mut options = CopyOptions::default().dry_run(args.dry_run);
    if let Some(progress) = reporter.progress() {
        options = options.progress(progress);
    }
    if let Some(jobs) = args.jobs {
        options = options.concurrency(jobs.into());
    }
    let copied = copy(context, args, &options, platform).await;
    // The bars go before the summary (or the error) is printed.
    reporter.finish();
    match copied? {
        Copied::ToRegistry { source, result } => print_result(context, &source, &result),
        Copied::ToDisk { source, result } => context.out.result(&result_summary(&source, &result), || {
            format!(
                "copied {source} to {}\ndigest: {}\n",
                args.destination, result.digest
            )
        }),
    }
}

/// What a copy did, for its summary.
enum Copied {
    /// Into a registry: from one, or from disk (a push).
    ToRegistry { source: String, result: CopyResult },
    /// To disk: from a registry (a pull), or from another file.
    ToDisk { source: String, result: PullResult },
}

async fn copy(
    context: &Context,
    args: &CopyArgs,
    options: &CopyOptions,
    platform: Option<&str>,
) -> Result<Copied, Failure> {
    // Checked before anything is asked of a registry.
    let source_credentials = credentials("--src-creds", args.src_creds.as_deref())?;
    let destination_credentials = credentials("--dest-creds", args.dest_creds.as_deref())?;
    let (source, destination) = (
        Location::parse(&args.source)?,
        Location::parse(&args.destination)?,
    );
    if args.dry_run && !matches!(destination, Location::Registry(_)) {
        return Err(Failure::Usage(
            "copy: --dry-run is for a registry destination".into(),
        ));
    }
    let image: Box<dyn ImageSource> = match &source {
        Location::Registry(reference) => {
            Box::new(resolve(context, args.all, reference, platform, source_credentials).await?)
        }
        local => Box::new(local.open()?),
    };
    let to = match &destination {
        Location::Registry(reference) => {
            destination_client(context, reference, destination_credentials)?.destination(reference)
        }
        Location::Layout { path, name } => Destination::oci_layout(path, name.as_deref()),
        Location::Archive { path, .. } => Destination::docker_archive(path),
    };
    // Files take as many blobs at once as a pull does, registries fewer.
    let options = match (&destination, args.jobs) {
        (Location::Layout { .. } | Location::Archive { .. }, None) => {
            options.clone().concurrency(DEFAULT_CONCURRENCY)
        }
        _ => options.clone(),
    };
    let source = match source {
        Location::Registry(reference) => reference.to_string(),
        _ => args.source.clone(),
    };
    Ok(match copy_image(image.as_ref(), &to, &options).await? {
        Written::Registry(result) => Copied::ToRegistry { source, result },
        Written::File(result) => Copied::ToDisk { source, result },
        other => return Err(Failure::Usage(format!("copy: unexpected outcome {other:?}"))),
    })
}

/// The source image: one platform, or with `all` the whole index.
async fn resolve(
    context: &Context,
    all: bool,
    source: &ImageReference,
    platform: Option<&str>,
    credentials: Option<Credentials>,
) -> Result<Image, Failure> {
    let client = context.client(
        source.registry(),
        ClientSettings {
            platform,
            credentials,
            ..ClientSettings::default()
        },
    )?;
    Ok(if all {
        client.pull_all_platforms(source).await?
    } else {
        client.pull(source).await?
    })
}

/// A client for the destination's registry, with `--dest-creds` when given.
fn destination_client(
    context: &Context,
    destination: &ImageReference,
    credentials: Option<Credentials>,
) -> Result<RepositoryClient, Failure> {
    context.client(
        destination.registry(),
        ClientSettings {
            credentials,
            ..ClientSettings::default()
        },
    )
}

/// `--json` of a copy to disk.
fn result_summary(source: &str, result: &PullResult) -> serde_json::Value {
    serde_json::json!({
        "source": source,
        "digest": result.digest,
        "path": result.path.as_ref().map(|p| p.display().to_string()),
    })
}

/// One side of a copy: a registry, or an image on disk as skopeo names them
/// (`oci:DIR[:NAME]`, `docker-archive:PATH[:NAME]`).
enum Location {
    Registry(ImageReference),
    Layout { path: PathBuf, name: Option<String> },
    Archive { path: PathBuf, name: Option<String> },
}

impl Location {
    /// The image on disk this location names; not for a registry.
    fn open(&self) -> Result<LocalImage, Failure> {
        Ok(match self {
            Location::Layout { path, name } => LocalImage::open_oci_layout(path, name.as_deref())?,
            Location::Archive { path, name } => LocalImage::open_docker_archive(path, name.as_deref())?,
            Location::Registry(reference) => unreachable!("{reference} is not on disk"),
        })
    }

    fn parse(text: &str) -> Result<Location, Failure> {
        // The name after the last `:`, unless that `:` is part of the path.
        let split = |rest: &str| match rest.rsplit_once(':') {
            Some((path, name)) if !name.is_empty() && !name.contains('/') => {
                (PathBuf::from(path), Some(name.to_owned()))
            }
            _ => (PathBuf::from(rest), None),
        };
        if let Some(rest) = text.strip_prefix("oci:") {
            let (path, name) = split(rest);
            return Ok(Location::Layout { path, name });
        }
        if let Some(rest) = text.strip_prefix("docker-archive:") {
            let (path, name) = split(rest);
            return Ok(Location::Archive { path, name });
        }
        Ok(Location::Registry(parse_reference(
            text.strip_prefix("docker://").unwrap_or(text),
        )?))
    }
}

/// `USER:PASSWORD` as credentials; the password may hold `:`.
fn credentials(flag: &str, text: Option<&str>) -> Result<Option<Credentials>, Failure> {
    let Some(text) = text else { return Ok(None) };
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok(Some(Credentials::basic(user, password)))
        }
        _ => Err(Failure::Usage(format!("{flag} takes USER:PASSWORD"))),
    }
}

fn action(how: BlobPush) -> &'static str {
    match how {
        BlobPush::Present => "present",
        BlobPush::Mounted => "mounted",
        BlobPush::Uploaded => "uploaded",
    }
}

/// The summary of a copy or a push, or its `--json`.
pub(super) fn print_result(context: &Context, source: &str, result: &CopyResult) -> Result<(), Failure> {
    let report = CopyReport {
        source: source.to_owned(),
        destination: result.destination.to_string(),
        digest: result.digest.clone(),
        dry_run: result.dry_run,
        uploaded_bytes: result.uploaded_bytes,
        blobs: result
            .blobs
            .iter()
            .map(|b| BlobReport {
                digest: b.digest.clone(),
                size: b.size,
                action: action(b.how),
            })
            .collect(),
        manifests: result.manifests.clone(),
    };
    if context.out.json {
        return context.out.json(&report);
    }
    let count = |how| result.blobs.iter().filter(|b| b.how == how).count();
    let (uploaded, mounted, present) = (
        count(BlobPush::Uploaded),
        count(BlobPush::Mounted),
        count(BlobPush::Present),
    );
    let verb = if result.dry_run { "would copy" } else { "copied" };
    let upload = if result.dry_run { "to upload" } else { "uploaded" };
    context.out.info(&format!(
        "{verb} {} to {}\ndigest: {}\n{} {upload} ({}), {mounted} mounted, {present} already there\n",
        report.source,
        report.destination,
        report.digest,
        plural(uploaded, "blob", "blobs"),
        size(result.uploaded_bytes),
    ))
}
