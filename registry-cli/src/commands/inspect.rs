//! `mcreg inspect IMAGE`: digest, media type, platforms, layers and config.

use registry_client::{ManifestKind, Platform};
use serde::Serialize;
use serde_json::Value;

use super::{ClientSettings, Context, check_platform, parse_reference};
use crate::cli::InspectArgs;
use crate::exit::Failure;
use crate::output::{size, table};

/// `inspect --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InspectReport {
    reference: String,
    provider: String,
    /// The mirror or registry that served the manifest.
    source: String,
    /// The manifest the reference names (an index for a multi-platform image).
    digest: String,
    media_type: String,
    size: u64,
    /// What the image offers: an index's entries, or the one platform of an image manifest.
    platforms: Vec<PlatformEntry>,
    /// The platform described below (the index entry picked, or the image's own).
    platform: Option<String>,
    /// The image manifest of that platform (the same as the top one without an index).
    manifest: Descriptor,
    layers: Vec<Descriptor>,
    /// Sum of the layer sizes (compressed, as downloaded).
    layers_size: u64,
    config: ConfigReport,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PlatformEntry {
    platform: String,
    digest: String,
    media_type: String,
    size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    digest: String,
    media_type: String,
    size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigReport {
    digest: String,
    media_type: String,
    size: u64,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    created: Option<String>,
    author: Option<String>,
    /// The config's `config` object as the image has it (`Env`, `Cmd`, `Entrypoint`, …).
    config: Value,
}

pub async fn run(context: &Context, args: &InspectArgs) -> Result<(), Failure> {
    let platform = args.platform.as_deref().map(check_platform).transpose()?;
    let reference = parse_reference(&args.image)?;
    let client = context.client(
        reference.registry(),
        ClientSettings {
            platform,
            ..ClientSettings::default()
        },
    )?;
    let top = client.get_manifest(&reference).await?;
    if args.raw && !args.config {
        // As served: the manifest the reference names, or with --platform the platform's.
        if platform.is_some() && top.is_index() {
            let image = client.get_image_manifest(&reference).await?;
            return context.out.raw(&image.bytes);
        }
        return context.out.raw(&top.bytes);
    }

    // Resolves the platform's manifest and config (manifests come from the client's cache).
    let image = client.pull(&reference).await?;
    let resolved = &image.images()[0];
    if args.config {
        if args.raw {
            return context.out.raw(&resolved.config.bytes);
        }
        let value: Value = serde_json::from_slice(&resolved.config.bytes)
            .map_err(|e| Failure::Other(format!("the image config is not JSON: {e}")))?;
        return context.out.json(&value);
    }

    let ManifestKind::Image(manifest) = &resolved.manifest.kind else {
        unreachable!("a pull resolves image manifests");
    };
    let layers: Vec<Descriptor> = manifest
        .layers()
        .iter()
        .map(|d| Descriptor {
            digest: d.digest().to_string(),
            media_type: d.media_type().to_string(),
            size: d.size(),
        })
        .collect();
    let selected = resolved.platform.as_ref().map(ToString::to_string);
    let platforms = match &top.kind {
        ManifestKind::Index(index) => index
            .manifests()
            .iter()
            .filter_map(|d| {
                d.platform().as_ref().map(|p| PlatformEntry {
                    platform: Platform::from_oci(p).to_string(),
                    digest: d.digest().to_string(),
                    media_type: d.media_type().to_string(),
                    size: d.size(),
                })
            })
            .collect(),
        ManifestKind::Image(_) => selected
            .iter()
            .map(|p| PlatformEntry {
                platform: p.clone(),
                digest: top.descriptor.digest.clone(),
                media_type: top.descriptor.media_type.clone(),
                size: top.descriptor.size,
            })
            .collect(),
    };
    let config: Value = serde_json::from_slice(&resolved.config.bytes).unwrap_or(Value::Null);
    let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
    let report = InspectReport {
        reference: reference.to_string(),
        provider: client.provider_id().to_owned(),
        source: top.descriptor.source.clone().unwrap_or_default(),
        digest: top.descriptor.digest.clone(),
        media_type: top.descriptor.media_type.clone(),
        size: top.descriptor.size,
        platforms,
        platform: selected,
        manifest: Descriptor {
            digest: resolved.manifest.descriptor.digest.clone(),
            media_type: resolved.manifest.descriptor.media_type.clone(),
            size: resolved.manifest.descriptor.size,
        },
        layers_size: layers.iter().map(|l| l.size).sum(),
        layers,
        config: ConfigReport {
            digest: resolved.config.digest.clone(),
            media_type: manifest.config().media_type().to_string(),
            size: resolved.config.bytes.len() as u64,
            os: text("os"),
            architecture: text("architecture"),
            variant: text("variant"),
            created: text("created"),
            author: text("author"),
            config: config.get("config").cloned().unwrap_or(Value::Null),
        },
    };
    context.out.result(&report, || human(&report))
}

fn human(r: &InspectReport) -> String {
    let mut rows = vec![
        row("Image", &r.reference),
        row("Provider", &r.provider),
        row("Source", &r.source),
        row("Digest", &r.digest),
        row("Media type", &r.media_type),
        row("Size", &size(r.size)),
    ];
    if r.manifest.digest != r.digest {
        rows.push(row("Platform", r.platform.as_deref().unwrap_or("-")));
        rows.push(row("Manifest", &r.manifest.digest));
        rows.push(row("Manifest type", &r.manifest.media_type));
    } else if let Some(platform) = &r.platform {
        rows.push(row("Platform", platform));
    }
    let mut out = table(&rows);
    if r.manifest.digest != r.digest {
        out.push_str(&format!("\nPlatforms ({}):\n", r.platforms.len()));
        let rows: Vec<Vec<String>> = r
            .platforms
            .iter()
            .map(|p| {
                let mark = if Some(&p.platform) == r.platform.as_ref() {
                    "*"
                } else {
                    " "
                };
                vec![format!("{mark} {}", p.platform), p.digest.clone(), size(p.size)]
            })
            .collect();
        out.push_str(&indent(&table(&rows)));
    }
    out.push_str(&format!(
        "\nLayers ({}, {}):\n",
        r.layers.len(),
        size(r.layers_size)
    ));
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| vec![l.digest.clone(), size(l.size), l.media_type.clone()])
        .collect();
    out.push_str(&indent(&table(&rows)));

    let c = &r.config;
    let mut rows = vec![row("Digest", &c.digest), row("Size", &size(c.size))];
    let os_arch = match (&c.os, &c.architecture) {
        (Some(os), Some(arch)) => {
            let variant = c.variant.as_deref().map(|v| format!("/{v}")).unwrap_or_default();
            Some(format!("{os}/{arch}{variant}"))
        }
        _ => None,
    };
    for (label, value) in [
        ("OS/Arch", os_arch.as_ref()),
        ("Created", c.created.as_ref()),
        ("Author", c.author.as_ref()),
    ] {
        if let Some(value) = value {
            rows.push(row(label, value));
        }
    }
    for (label, key) in [
        ("Entrypoint", "Entrypoint"),
        ("Cmd", "Cmd"),
        ("Working dir", "WorkingDir"),
        ("User", "User"),
        ("Env", "Env"),
        ("Labels", "Labels"),
        ("Ports", "ExposedPorts"),
    ] {
        match c.config.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => rows.push(row(label, s)),
            Some(Value::Array(items)) if key == "Env" => {
                for (i, item) in items.iter().enumerate() {
                    let label = if i == 0 { label } else { "" };
                    rows.push(row(label, item.as_str().unwrap_or_default()));
                }
            }
            Some(Value::Object(map)) if key == "Labels" => {
                for (i, (k, v)) in map.iter().enumerate() {
                    let label = if i == 0 { label } else { "" };
                    rows.push(row(label, &format!("{k}={}", v.as_str().unwrap_or_default())));
                }
            }
            Some(Value::Object(map)) => {
                rows.push(row(label, &map.keys().cloned().collect::<Vec<_>>().join(", ")));
            }
            Some(other) => rows.push(row(label, &other.to_string())),
        }
    }
    out.push_str("\nConfig:\n");
    out.push_str(&indent(&table(&rows)));
    out
}

fn row(label: &str, value: &str) -> Vec<String> {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label}:")
    };
    vec![label, value.to_owned()]
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
