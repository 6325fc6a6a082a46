//! Inspects an image: digest, media type, platforms, layers and config.
//!
//! ```text
//! cargo run -p registry-client --example inspect -- alpine:3.20
//! cargo run -p registry-client --example inspect -- --platform linux/arm64 ghcr.io/owner/image:tag
//! ```
//! Credentials come from your docker `config.json`; loopback registries are spoken to over plain HTTP.

use std::process::ExitCode;

use registry_client::{ImageReference, ManifestKind, RepositoryClient};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (platform, image) = match (args.next(), args.next(), args.next()) {
        (Some(flag), Some(platform), Some(image)) if flag == "--platform" => (Some(platform), image),
        (Some(image), None, None) if !image.starts_with('-') => (None, image),
        _ => {
            eprintln!("usage: inspect [--platform os/arch[/variant]] IMAGE");
            return ExitCode::from(2);
        }
    };
    match inspect(&image, platform).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", registry_client::error::display_chain(&error));
            ExitCode::FAILURE
        }
    }
}

async fn inspect(image: &str, platform: Option<String>) -> registry_client::Result<()> {
    let reference: ImageReference = image.parse()?;
    let mut builder = RepositoryClient::builder_for(&reference);
    if let Some(platform) = platform {
        builder = builder.platform(platform);
    }
    let client = builder.build()?;

    let manifest = client.get_manifest(&reference).await?;
    println!("image:      {reference}");
    println!("provider:   {}", client.provider_id());
    println!("digest:     {}", manifest.descriptor.digest);
    println!("media type: {}", manifest.descriptor.media_type);
    if let ManifestKind::Index(index) = &manifest.kind {
        println!("platforms:");
        for entry in index.manifests() {
            if let Some(p) = entry.platform() {
                println!("  {}  {}", registry_client::Platform::from_oci(p), entry.digest());
            }
        }
    }

    let image_manifest = client.get_image_manifest(&reference).await?;
    if let ManifestKind::Image(m) = &image_manifest.kind {
        println!("layers ({} for {}):", m.layers().len(), client.platform());
        for layer in m.layers() {
            println!(
                "  {}  {:>12} bytes  {}",
                layer.digest(),
                layer.size(),
                layer.media_type()
            );
        }
    }
    let config = client.get_config(&reference).await?;
    let c = &config.config;
    println!("config:     {}", config.digest);
    println!("  os/arch:  {}/{}", c.os(), c.architecture());
    if let Some(cfg) = c.config() {
        if let Some(entrypoint) = cfg.entrypoint() {
            println!("  entrypoint: {entrypoint:?}");
        }
        if let Some(cmd) = cfg.cmd() {
            println!("  cmd:      {cmd:?}");
        }
    }
    Ok(())
}
