//! The tree of referrers below a manifest: its referrers, theirs, and so on (a
//! signature of an SBOM of an image), as `mcreg referrers` shows it and a copy
//! with its referrers carries it.

use oci_spec::image::Descriptor;

use crate::error::{Error, Result};
use crate::model::reference::ImageReference;
use crate::model::referrers::Discovery;
use crate::portable::client::RepositoryClient;

/// More levels than any real signing or attestation chain has: deeper is a registry
/// answering nonsense.
const MAX_DEPTH: usize = 16;

/// One referrer and the referrers below it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReferrerNode {
    pub descriptor: Descriptor,
    pub referrers: Vec<ReferrerNode>,
}

/// The referrers of a subject, each with the referrers below it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReferrerTree {
    /// The subject's digest.
    pub subject: String,
    /// How the subject's own referrers were found.
    pub discovery: Discovery,
    pub referrers: Vec<ReferrerNode>,
}

impl ReferrerTree {
    /// Every referrer in the tree, depth first.
    pub fn descriptors(&self) -> Vec<&Descriptor> {
        fn walk<'t>(nodes: &'t [ReferrerNode], out: &mut Vec<&'t Descriptor>) {
            for node in nodes {
                out.push(&node.descriptor);
                walk(&node.referrers, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.referrers, &mut out);
        out
    }
}

/// The referrers of `subject` (only those of `artifact_type`, if given) and, below
/// each, all of its own. A referrer listed again below itself (a loop, which content
/// addressing rules out for honest registries) or a tree deeper than 16 levels is
/// `Error::InvalidResponse`.
pub async fn referrer_tree(
    client: &RepositoryClient,
    subject: &ImageReference,
    artifact_type: Option<&str>,
) -> Result<ReferrerTree> {
    let top = client.referrers(subject, artifact_type).await?;
    let mut path = vec![top.subject.clone()];
    let mut referrers = Vec::new();
    for descriptor in top.descriptors {
        referrers.push(below(client, subject, descriptor, &mut path).await?);
    }
    Ok(ReferrerTree {
        subject: top.subject,
        discovery: top.discovery,
        referrers,
    })
}

/// `descriptor` with the referrers below it; `path` holds the digests above it.
async fn below(
    client: &RepositoryClient,
    subject: &ImageReference,
    descriptor: Descriptor,
    path: &mut Vec<String>,
) -> Result<ReferrerNode> {
    let digest = descriptor.digest().to_string();
    if path.contains(&digest) {
        return Err(Error::invalid_response(
            subject.registry(),
            format!("referrers loop: {digest} is listed among its own referrers"),
        ));
    }
    if path.len() > MAX_DEPTH {
        return Err(Error::invalid_response(
            subject.registry(),
            format!("referrers nested more than {MAX_DEPTH} deep below {}", path[0]),
        ));
    }
    let reference = subject.with_digest(&digest)?;
    let listed = client.referrers(&reference, None).await?;
    path.push(digest);
    let mut referrers = Vec::new();
    for child in listed.descriptors {
        referrers.push(Box::pin(below(client, subject, child, path)).await?);
    }
    path.pop();
    Ok(ReferrerNode {
        descriptor,
        referrers,
    })
}
