//! `mcreg pull IMAGE -o PATH`.

use std::path::Path;

use registry_client::pull::{PullOptions, PullResult};
use registry_client::{Error, ImageReference};
use serde::Serialize;

use super::{ClientSettings, Context, check_platform, parse_reference};
use crate::cli::{Format, PullArgs};
use crate::exit::Failure;
use crate::output::{plural, size};
use crate::progress::Reporter;

/// `pull --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PullReport {
    reference: String,
    digest: String,
    media_type: String,
    /// The mirror or registry that served the manifest.
    source: String,
    tag: Option<String>,
    /// `None` when every platform of an index was pulled.
    platform: Option<String>,
    format: &'static str,
    path: String,
    total_bytes: u64,
    downloaded_bytes: u64,
    layers: Vec<LayerReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LayerReport {
    digest: String,
    size: u64,
    media_type: String,
    from_cache: bool,
    /// The mirror or registry it was downloaded from; `None` when it came from the cache.
    source: Option<String>,
}

pub async fn run(context: &Context, args: &PullArgs) -> Result<(), Failure> {
    let all = args.platform.as_deref() == Some("all");
    if all && args.format != Format::Oci {
        return Err(Failure::Usage(format!(
            "--platform all needs --format oci: a {} output holds one platform",
            args.format.name()
        )));
    }
    let platform = match args.platform.as_deref() {
        Some(p) if !all => Some(check_platform(p)?),
        _ => None,
    };
    let reference = parse_reference(&args.image)?;
    check_output(&args.output, args.format)?;
    let reporter = Reporter::start(context.progress_mode(), &reference.to_string());
    let client = context.client(
        reference.registry(),
        ClientSettings {
            platform,
            layer_cache: args.cache_dir.as_deref(),
            events: reporter.progress(),
            ..ClientSettings::default()
        },
    );
    let client = match client {
        Ok(client) => client,
        Err(failure) => {
            reporter.finish();
            return Err(failure);
        }
    };
    let mut options = PullOptions::default();
    if let Some(progress) = reporter.progress() {
        options = options.progress(progress);
    }
    if let Some(jobs) = args.jobs {
        options = options.concurrency(jobs.into());
    }
    let pulled = async {
        let image = if all {
            client.pull_all_platforms(&reference).await?
        } else {
            client.pull(&reference).await?
        };
        let path = args.output.as_path();
        match args.format {
            Format::Docker => image.write_docker_archive(path, &options).await,
            Format::Oci => image.write_oci_layout(path, &options).await,
            Format::Rootfs => image.write_rootfs(path, &options).await,
        }
    }
    .await;
    reporter.finish();
    let result = pulled.map_err(|error| match error {
        Error::Io { .. } => Failure::Client {
            context: Some(format!("cannot write {}", args.output.display())),
            error: Box::new(error),
        },
        error => error.into(),
    })?;
    report(context, &reference, args, &result)
}

/// Fails early, with a clear sentence, when the output cannot be written where asked.
fn check_output(path: &Path, format: Format) -> Result<(), Failure> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Failure::Other(format!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            parent.display()
        )));
    }
    match format {
        Format::Oci if path.exists() && !path.is_dir() => Err(Failure::Other(format!(
            "cannot write an OCI layout to {}: it is not a directory",
            path.display()
        ))),
        Format::Docker | Format::Rootfs if path.is_dir() => Err(Failure::Other(format!(
            "cannot write a tar to {}: it is a directory",
            path.display()
        ))),
        _ => Ok(()),
    }
}

fn report(
    context: &Context,
    reference: &ImageReference,
    args: &PullArgs,
    result: &PullResult,
) -> Result<(), Failure> {
    let report = PullReport {
        reference: reference.to_string(),
        digest: result.digest.clone(),
        media_type: result.media_type.clone(),
        source: result.source.clone(),
        tag: result.tag.clone(),
        platform: result.platform.as_ref().map(ToString::to_string),
        format: args.format.name(),
        path: args.output.display().to_string(),
        total_bytes: result.total_bytes,
        downloaded_bytes: result.downloaded_bytes,
        layers: result
            .layers
            .iter()
            .map(|l| LayerReport {
                digest: l.digest.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
                from_cache: l.from_cache,
                source: l.source.clone(),
            })
            .collect(),
    };
    if context.out.json {
        return context.out.json(&report);
    }
    let platform = report
        .platform
        .as_deref()
        .map(|p| format!(" for {p}"))
        .unwrap_or_default();
    let cached = result.layers.iter().filter(|l| l.from_cache).count();
    let cached = if cached > 0 {
        format!(" ({cached} from the cache)")
    } else {
        String::new()
    };
    let layer_bytes: u64 = result.layers.iter().map(|l| l.size).sum();
    context.out.info(&format!(
        "pulled {}{platform} from {}\ndigest: {}\n{}{cached}, {}, {} downloaded\nwrote {} to {}\n",
        report.reference,
        report.source,
        report.digest,
        plural(report.layers.len(), "layer", "layers"),
        size(layer_bytes),
        size(report.downloaded_bytes),
        format_description(args.format),
        report.path,
    ))
}

fn format_description(format: Format) -> &'static str {
    match format {
        Format::Docker => "a docker archive",
        Format::Oci => "an OCI layout",
        Format::Rootfs => "a root filesystem tar",
    }
}
