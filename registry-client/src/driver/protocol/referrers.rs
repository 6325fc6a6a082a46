//! The referrers of a manifest (OCI distribution 1.1): the referrers API, a page at a
//! time, or, where a source answers it `404`, the fallback tag `sha256-<hex>`.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, header};
use oci_spec::image::Descriptor;

use crate::driver::protocol::manifests::{fetch_raw_at, head_manifest};
use crate::driver::protocol::pages::source_pages;
use crate::driver::protocol::registry::Registry;
use crate::driver::sources::{Need, Source, preferring};
use crate::driver::transport::{accept_header, host_port};
use crate::error::{Error, Resource, Result};
use crate::model::manifest::media_types::OCI_INDEX;
use crate::model::reference::ImageReference;
use crate::model::referrers::{Discovery, Referrers, fallback_tag, has_artifact_type, parse_index};

/// The referrers of `subject` (by digest, or its tag resolved first), only those of
/// `artifact_type` if given. Sources are asked in order; one that has neither the API
/// nor the fallback tag does not know, and the next is asked. When none knows, the
/// subject has no referrers.
pub(crate) async fn referrers(
    registry: &Registry,
    subject: &ImageReference,
    artifact_type: Option<&str>,
) -> Result<Referrers> {
    let digest = match subject.digest() {
        Some(digest) => digest.to_owned(),
        None => head_manifest(registry, subject).await?.digest,
    };
    let subject = subject.with_digest(&digest)?;
    let route = registry.route(&subject)?;
    let what = format!("referrers of {subject}");
    let found = route
        .first_success(&preferring(&route, None), Need::Digest, &what, |source, last| {
            referrers_at(source, &subject, artifact_type, last)
        })
        .await;
    match found {
        Ok((referrers, _)) => Ok(referrers),
        Err(err) if err.is_not_found() => Ok(Referrers {
            subject: digest,
            descriptors: Vec::new(),
            discovery: Discovery::FallbackTag,
            source: subject.registry().to_owned(),
        }),
        Err(err) => Err(err),
    }
}

/// One source's referrers: its API, else its fallback tag; not found if it has neither.
async fn referrers_at(
    source: &Source,
    subject: &ImageReference,
    artifact_type: Option<&str>,
    last: bool,
) -> Result<Referrers> {
    let digest = subject.digest().expect("asked by digest");
    let mut request = source.request(
        Method::GET,
        &format!("referrers/{digest}"),
        Some((Resource::Manifest, digest)),
        last,
    )?;
    request
        .headers
        .insert(header::ACCEPT, accept_header(&[OCI_INDEX]));
    if let Some(artifact_type) = artifact_type {
        request
            .url
            .query_pairs_mut()
            .append_pair("artifactType", artifact_type);
    }
    // Filtered by the registry only if every page says so.
    let filtered = AtomicBool::new(artifact_type.is_some());
    let listed = source_pages(source, request, None, &|headers, body| {
        let applied = headers
            .get_all("oci-filters-applied")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|filter| filter.trim() == "artifactType");
        if !applied {
            filtered.store(false, Ordering::Relaxed);
        }
        parse_index(body)
    })
    .await;
    let (descriptors, discovery) = match listed {
        Ok(descriptors) => (descriptors, Discovery::Api),
        Err(err) if err.is_not_found() => {
            // No referrers API here: the tag schema, filtered by us.
            filtered.store(false, Ordering::Relaxed);
            let descriptors = read_fallback_index(source, subject, digest, last).await?;
            (descriptors, Discovery::FallbackTag)
        }
        Err(err) => return Err(err),
    };
    let descriptors = if filtered.load(Ordering::Relaxed) {
        descriptors
    } else {
        descriptors
            .into_iter()
            .filter(|d| has_artifact_type(d, artifact_type))
            .collect()
    };
    Ok(Referrers {
        subject: digest.to_owned(),
        descriptors,
        discovery,
        source: source.name.clone(),
    })
}

/// The descriptors listed by the fallback index of `subject` (a digest) in
/// `reference`'s repository, as `source` serves it: the index at tag `sha256-<hex>`,
/// which must be an OCI index. Not found when there is no such tag.
pub(crate) async fn read_fallback_index(
    source: &Source,
    reference: &ImageReference,
    subject: &str,
    last: bool,
) -> Result<Vec<Descriptor>> {
    let tagged = ImageReference::parse(&format!("{}:{}", reference.name(), fallback_tag(subject)))?;
    let index = fetch_raw_at(source, &tagged, last).await?;
    let host = host_port(&source.url("")?);
    parse_index(&index.bytes).map_err(|e| Error::invalid_response(&host, format!("{tagged}: {e}")))
}
