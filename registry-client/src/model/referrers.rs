//! Referrers (OCI distribution 1.1): the manifests whose `subject` is a given
//! manifest (signatures, SBOMs, attestations), as a registry lists them.

use oci_spec::image::{Descriptor, ImageIndex};

use super::manifest::media_types::OCI_INDEX;

/// Where a registry's list of referrers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// The referrers API, `GET /v2/<name>/referrers/<digest>`.
    Api,
    /// The fallback tag schema: the index at tag `sha256-<hex>`, for registries
    /// without the API (which answer it `404`).
    FallbackTag,
}

/// The referrers of one subject.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Referrers {
    /// The subject's digest.
    pub subject: String,
    /// One descriptor a referrer, as listed: digest, media type, size, and
    /// `artifactType` and annotations where the registry gave them.
    pub descriptors: Vec<Descriptor>,
    pub discovery: Discovery,
    /// The mirror or registry that answered.
    pub source: String,
}

/// The tag under which a registry without the referrers API keeps the
/// referrers of `digest` (`sha256:<hex>` → `sha256-<hex>`).
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The descriptors of a referrers index, checked: it must be an OCI image index.
pub(crate) fn parse_index(bytes: &[u8]) -> Result<Vec<Descriptor>, String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("referrers list is not JSON: {e}"))?;
    if probe.media_type.as_deref() != Some(OCI_INDEX) {
        return Err(format!(
            "referrers list is not an OCI image index (mediaType {:?})",
            probe.media_type.as_deref().unwrap_or("missing")
        ));
    }
    let index: ImageIndex =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid referrers index: {e}"))?;
    Ok(index.manifests().clone())
}

/// Whether `descriptor` has the artifact type asked for (every one does when none is).
pub(crate) fn has_artifact_type(descriptor: &Descriptor, artifact_type: Option<&str>) -> bool {
    artifact_type.is_none_or(|wanted| {
        descriptor
            .artifact_type()
            .as_ref()
            .is_some_and(|t| t.to_string() == wanted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_tag_replaces_the_colon() {
        assert_eq!(fallback_tag("sha256:abcd"), "sha256-abcd");
    }

    #[test]
    fn a_referrers_list_must_be_an_oci_index() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","artifactType":"application/vnd.example.sbom"}]}"#;
        let descriptors = parse_index(index).expect("an index");
        assert_eq!(descriptors.len(), 1);
        assert!(has_artifact_type(
            &descriptors[0],
            Some("application/vnd.example.sbom")
        ));
        assert!(has_artifact_type(&descriptors[0], None));
        assert!(!has_artifact_type(
            &descriptors[0],
            Some("application/vnd.example.sig")
        ));

        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        let err = parse_index(manifest).expect_err("a manifest");
        assert!(err.contains("not an OCI image index"), "{err}");
        assert!(parse_index(b"<html>").expect_err("garbage").contains("not JSON"));
    }
}
