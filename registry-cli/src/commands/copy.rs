//! `mcreg copy SOURCE DESTINATION`: registry to registry, each side with its own credentials.

use registry_client::push::{BlobPush, CopyOptions, CopyResult};
use registry_client::{Credentials, ImageReference};
use serde::Serialize;

use super::{ClientSettings, Context, check_platform, parse_reference};
use crate::cli::CopyArgs;
use crate::exit::Failure;
use crate::output::{plural, size};

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
    let source = parse_reference(&args.source)?;
    let destination = parse_reference(&args.destination)?;
    let platform = args.platform.as_deref().map(check_platform).transpose()?;
    let source_client = context.client(
        source.registry(),
        ClientSettings {
            platform,
            credentials: credentials("--src-creds", args.src_creds.as_deref())?,
            ..ClientSettings::default()
        },
    )?;
    let destination_client = context.client(
        destination.registry(),
        ClientSettings {
            credentials: credentials("--dest-creds", args.dest_creds.as_deref())?,
            ..ClientSettings::default()
        },
    )?;
    let mut options = CopyOptions::default().dry_run(args.dry_run);
    if let Some(jobs) = args.jobs {
        options = options.concurrency(jobs.into());
    }
    let image = if args.all {
        source_client.pull_all_platforms(&source).await?
    } else {
        source_client.pull(&source).await?
    };
    let result = image.copy_to(&destination_client, &destination, &options).await?;
    report(context, &source, &result)
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

fn report(context: &Context, source: &ImageReference, result: &CopyResult) -> Result<(), Failure> {
    print_result(context, &source.to_string(), result)
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
