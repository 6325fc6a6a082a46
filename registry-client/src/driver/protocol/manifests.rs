//! Manifests and image configs: HEAD, GET, platform choice.

use bytes::Bytes;
use http::{HeaderMap, Method, header};
use serde::Deserialize;

use crate::driver::protocol::blobs::{BytesSink, GetBlobOptions, download};
use crate::driver::protocol::cache::{Content, Expiring};
use crate::driver::protocol::registry::Registry;
use crate::driver::sources::{Need, Route, Source, preferring};
use crate::driver::transport::{accept_header, host_port};
use crate::error::{Error, Resource, Result};
use crate::model::digest;
use crate::model::manifest::media_types::*;
use crate::model::manifest::{ImageConfig, Manifest, ManifestDescriptor, ManifestKind, RawManifest};
use crate::model::reference::ImageReference;

/// Manifests above this size are refused (containerd's limit too).
const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;
/// Image configs above this size are refused.
const MAX_CONFIG_SIZE: usize = 16 * 1024 * 1024;

/// The digest, media type and size of a manifest, without fetching it.
pub(crate) async fn head_manifest(
    registry: &Registry,
    reference: &ImageReference,
) -> Result<ManifestDescriptor> {
    let key = cache_key("head", reference, reference.reference());
    if let Some(Expiring::Descriptor(d)) = registry.cache().expiring(&key).await {
        return Ok(d);
    }
    let route = registry.route(reference)?;
    let (descriptor, _) = route
        .first_success(
            &preferring(&route, None),
            need(reference),
            &reference.to_string(),
            |source, last| head_manifest_at(source, reference, last),
        )
        .await?;
    registry
        .cache()
        .put_expiring(key, Expiring::Descriptor(descriptor.clone()))
        .await;
    Ok(descriptor)
}

async fn head_manifest_at(
    source: &Source,
    reference: &ImageReference,
    last: bool,
) -> Result<ManifestDescriptor> {
    let request = manifest_request(source, Method::HEAD, reference, last)?;
    let response = source.transport().send(&request).await?;
    let host = host_port(response.url());
    let headers = response.headers();
    let descriptor = match header_str(headers, "docker-content-digest") {
        Some(digest) => ManifestDescriptor {
            digest: digest.to_owned(),
            media_type: content_type(headers).unwrap_or_default().to_owned(),
            // From the header: a HEAD response's own body length is always 0.
            size: header_str(headers, header::CONTENT_LENGTH.as_str())
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            source: Some(source.name.clone()),
        },
        // Not every registry sends the digest on HEAD; then it takes a GET.
        None => fetch_raw_at(source, reference, last).await?.descriptor,
    };
    check_digest_form(&descriptor.digest, &host)?;
    if let Some(wanted) = reference.digest()
        && wanted != descriptor.digest
    {
        return Err(Error::DigestMismatch {
            expected: wanted.to_owned(),
            actual: descriptor.digest,
        });
    }
    Ok(descriptor)
}

/// Fetches a manifest, keeping its exact bytes. When asked by digest,
/// the bytes are verified against it; when asked by tag, against the
/// registry's `Docker-Content-Digest`.
pub(crate) async fn get_manifest(registry: &Registry, reference: &ImageReference) -> Result<Manifest> {
    let route = registry.route(reference)?;
    get_manifest_via(registry, &route, &preferring(&route, None), reference).await
}

/// [`get_manifest`](get_manifest) from `route`'s sources in `order`.
pub(crate) async fn get_manifest_via(
    registry: &Registry,
    route: &Route,
    order: &[usize],
    reference: &ImageReference,
) -> Result<Manifest> {
    let digest_key = cache_key("digest", reference, reference.reference());
    let known_digest = match reference.digest() {
        Some(d) => Some(d.to_owned()),
        None => match registry.cache().expiring(&digest_key).await {
            Some(Expiring::Descriptor(d)) => Some(d.digest),
            _ => None,
        },
    };
    if let Some(digest) = &known_digest
        && let Some(hit) = registry
            .cache()
            .content(&cache_key("manifest", reference, digest))
            .await
    {
        let mut manifest = Manifest::parse(
            hit.bytes,
            digest.clone(),
            Some(&hit.media_type),
            reference.registry(),
        )?;
        manifest.descriptor.source = hit.source;
        return Ok(manifest);
    }

    let (manifest, _) = route
        .first_success(order, need(reference), &reference.to_string(), |source, last| {
            fetch_manifest_at(source, reference, last)
        })
        .await?;
    let descriptor = &manifest.descriptor;
    if reference.digest().is_none() {
        registry
            .cache()
            .put_expiring(digest_key, Expiring::Descriptor(descriptor.clone()))
            .await;
    }
    registry
        .cache()
        .put_content(
            cache_key("manifest", reference, &descriptor.digest),
            Content {
                media_type: descriptor.media_type.clone(),
                bytes: manifest.bytes.clone(),
                source: descriptor.source.clone(),
            },
        )
        .await;
    Ok(manifest)
}

/// One source's answer to a manifest GET, verified and parsed.
async fn fetch_manifest_at(source: &Source, reference: &ImageReference, last: bool) -> Result<Manifest> {
    let raw = fetch_raw_at(source, reference, last).await?;
    let host = host_port(&source.url("")?);
    let mut manifest = Manifest::parse(
        raw.bytes,
        raw.descriptor.digest,
        Some(&raw.descriptor.media_type),
        &host,
    )?;
    manifest.descriptor.source = raw.descriptor.source;
    Ok(manifest)
}

/// A manifest's exact bytes, verified against the digest asked for (or,
/// for a tag, the registry's `Docker-Content-Digest`), but not parsed:
/// any media type is passed on. Not cached.
pub(crate) async fn get_raw_manifest(registry: &Registry, reference: &ImageReference) -> Result<RawManifest> {
    let route = registry.route(reference)?;
    let (raw, _) = route
        .first_success(
            &preferring(&route, None),
            need(reference),
            &reference.to_string(),
            |source, last| fetch_raw_at(source, reference, last),
        )
        .await?;
    Ok(raw)
}

/// The image manifest for this client's platform: the manifest itself,
/// or the matching entry of an index (indexes nested in indexes too).
pub(crate) async fn get_image_manifest(registry: &Registry, reference: &ImageReference) -> Result<Manifest> {
    let route = registry.route(reference)?;
    let top = get_manifest_via(registry, &route, &preferring(&route, None), reference).await?;
    Ok(resolve_platform(registry, &route, reference, top).await?.1)
}

/// Walks from `top` down to the image manifest for this client's
/// platform: a matching entry wins; otherwise nested indexes without a
/// platform are searched in order. Returns the indexes passed through
/// (outermost first) and the image manifest; [`Error::NoMatchingPlatform`]
/// lists every platform seen when none matches.
pub(crate) async fn resolve_platform(
    registry: &Registry,
    route: &Route,
    reference: &ImageReference,
    top: Manifest,
) -> Result<(Vec<Manifest>, Manifest)> {
    // A few levels is all anything real uses.
    const MAX_DEPTH: usize = 4;
    let mut available: Vec<String> = Vec::new();
    let mut pending = vec![(Vec::new(), top)];
    while let Some((path, manifest)) = pending.pop() {
        if !manifest.is_index() {
            return Ok((path, manifest));
        }
        if path.len() >= MAX_DEPTH {
            return Err(Error::invalid_response(
                reference.registry(),
                "indexes nested too deeply",
            ));
        }
        let (with_platform, nested) = manifest.entries();
        let chosen = with_platform.iter().find(|(_, p)| registry.platform().matches(p));
        let next: Vec<String> = match chosen {
            Some((d, _)) => vec![d.digest().to_string()],
            None => {
                for (_, p) in &with_platform {
                    if !available.contains(&p.to_string()) {
                        available.push(p.to_string());
                    }
                }
                nested.iter().rev().map(|d| d.digest().to_string()).collect()
            }
        };
        // Children come from the source that served their index first.
        let order = preferring(route, manifest.descriptor.source.as_deref());
        let mut path = path;
        path.push(manifest);
        for digest in next {
            let child = get_manifest_via(registry, route, &order, &reference.with_digest(&digest)?).await?;
            pending.push((path.clone(), child));
        }
    }
    Err(Error::NoMatchingPlatform {
        requested: registry.platform().to_string(),
        available,
    })
}

/// The config of the image `reference` names (for an index, the entry
/// for this client's platform), verified against its digest.
pub(crate) async fn get_config(registry: &Registry, reference: &ImageReference) -> Result<ImageConfig> {
    let route = registry.route(reference)?;
    let top = get_manifest_via(registry, &route, &preferring(&route, None), reference).await?;
    let (_, manifest) = resolve_platform(registry, &route, reference, top).await?;
    get_image_config(registry, &route, reference, &manifest).await
}

/// The config of an image manifest, verified against digest and size,
/// from the source that served the manifest first.
pub(crate) async fn get_image_config(
    registry: &Registry,
    route: &Route,
    reference: &ImageReference,
    manifest: &Manifest,
) -> Result<ImageConfig> {
    let ManifestKind::Image(image) = &manifest.kind else {
        unreachable!("called with image manifests only");
    };
    let descriptor = image.config();
    let digest = descriptor.digest().to_string();
    let order = preferring(route, manifest.descriptor.source.as_deref());
    let bytes = get_small_blob(
        registry,
        route,
        &order,
        reference,
        &digest,
        descriptor.size(),
        MAX_CONFIG_SIZE,
    )
    .await?;
    let config = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid_response(
            reference.registry(),
            format!("invalid image config {digest}: {e}"),
        )
    })?;
    Ok(ImageConfig {
        digest,
        bytes,
        config,
    })
}

/// A blob small enough to hold in memory, verified against digest and size.
pub(crate) async fn get_small_blob(
    registry: &Registry,
    route: &Route,
    order: &[usize],
    reference: &ImageReference,
    digest: &str,
    size: u64,
    limit: usize,
) -> Result<Bytes> {
    let key = cache_key("blob", reference, digest);
    if let Some(hit) = registry.cache().content(&key).await {
        return Ok(hit.bytes);
    }
    if let Some(bytes) = small_blob_from_layer_cache(registry, digest, size)? {
        return Ok(bytes);
    }
    if size > limit as u64 {
        return Err(Error::invalid_response(
            reference.registry(),
            format!("blob {digest} of {size} bytes is over the {limit} byte limit"),
        ));
    }
    // The download refuses a source that sends more than `size` (checked against the limit above).
    let mut sink = BytesSink::with_capacity(size as usize);
    let options = GetBlobOptions::default().size(size);
    download(route, order, digest, &options, &mut sink).await?;
    let bytes = sink.into_bytes();
    if let Some(cache) = registry.layer_cache() {
        cache.put(digest, &bytes)?;
    }
    registry
        .cache()
        .put_content(
            key,
            Content {
                media_type: String::new(),
                bytes: bytes.clone(),
                source: None,
            },
        )
        .await;
    Ok(bytes)
}

/// A small blob from the layer cache, re-verified (it is small, so that is cheap).
fn small_blob_from_layer_cache(registry: &Registry, digest: &str, size: u64) -> Result<Option<Bytes>> {
    let Some(cache) = registry.layer_cache() else {
        return Ok(None);
    };
    let Some(path) = cache.get(digest, size)? else {
        return Ok(None);
    };
    let bytes = Bytes::from(std::fs::read(&path)?);
    if digest::verify(digest, &bytes).is_err() {
        // Damaged: drop it so the fetched copy can take its place.
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// A manifest request by the reference's tag or digest.
fn manifest_request(
    source: &Source,
    method: Method,
    reference: &ImageReference,
    last: bool,
) -> Result<crate::driver::transport::RegistryRequest> {
    let tag_or_digest = reference.reference();
    let mut request = source.request(
        method,
        &format!("manifests/{tag_or_digest}"),
        Some((Resource::Manifest, tag_or_digest)),
        last,
    )?;
    request
        .headers
        .insert(header::ACCEPT, accept_header(&ALL_MANIFESTS));
    Ok(request)
}

/// One source's answer to a manifest GET, verified against its digest.
pub(crate) async fn fetch_raw_at(
    source: &Source,
    reference: &ImageReference,
    last: bool,
) -> Result<RawManifest> {
    let request = manifest_request(source, Method::GET, reference, last)?;
    let (headers, bytes) = source
        .transport()
        .send_and_read(&request, MAX_MANIFEST_SIZE)
        .await?;
    let host = host_port(&request.url);
    let digest = match reference
        .digest()
        .or(header_str(&headers, "docker-content-digest"))
    {
        Some(expected) => {
            check_digest_form(expected, &host)?;
            digest::verify(expected, &bytes)?;
            expected.to_owned()
        }
        None => digest::sha256(&bytes),
    };
    let media_type = match content_type(&headers) {
        Some(declared) if !declared.is_empty() && declared != "application/json" => declared.to_owned(),
        // A registry that does not say: the body says, or it is an OCI manifest.
        _ => body_media_type(&bytes).unwrap_or_else(|| OCI_MANIFEST.to_owned()),
    };
    Ok(RawManifest {
        descriptor: ManifestDescriptor {
            digest,
            media_type,
            size: bytes.len() as u64,
            source: Some(source.name.clone()),
        },
        bytes,
    })
}

/// The `mediaType` a manifest's JSON names, if it names one.
fn body_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}

/// A tag is resolved only where tags may be; a digest anywhere.
fn need(reference: &ImageReference) -> Need {
    match reference.digest() {
        Some(_) => Need::Digest,
        None => Need::Tag,
    }
}

fn cache_key(kind: &str, reference: &ImageReference, tag_or_digest: &str) -> String {
    format!(
        "{kind} {} {} {tag_or_digest}",
        reference.registry(),
        reference.repository()
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The media type of `Content-Type`, without parameters.
fn content_type(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, header::CONTENT_TYPE.as_str()).map(|v| v.split(';').next().unwrap_or(v).trim())
}

/// A registry-sent digest must at least look like one before we trust it.
fn check_digest_form(digest: &str, host: &str) -> Result<()> {
    let valid = digest.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && hex.len() >= 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    });
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_response(
            host,
            format!("malformed digest {digest:?}"),
        ))
    }
}
