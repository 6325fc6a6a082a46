//! `mcreg referrers IMAGE`: an image's signatures, SBOMs and attestations (the
//! manifests whose `subject` it is), and theirs, as a tree.

use std::collections::BTreeMap;

use registry_client::Discovery;
use registry_client::referrers::{ReferrerNode, referrer_tree};
use serde::Serialize;

use super::{ClientSettings, Context, parse_reference};
use crate::cli::ReferrersArgs;
use crate::exit::Failure;

/// `referrers --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrersReport {
    reference: String,
    /// The repository, without tag or digest.
    repository: String,
    subject: String,
    /// `api` (the referrers API) or `fallback-tag` (`sha256-<hex>`).
    discovery: &'static str,
    referrers: Vec<Referrer>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Referrer {
    digest: String,
    media_type: String,
    artifact_type: Option<String>,
    size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    referrers: Vec<Referrer>,
}

pub async fn run(context: &Context, args: &ReferrersArgs) -> Result<(), Failure> {
    let reference = parse_reference(&args.image)?;
    let client = context.client(reference.registry(), ClientSettings::default())?;
    let tree = referrer_tree(&client, &reference, args.artifact_type.as_deref()).await?;
    let report = ReferrersReport {
        reference: reference.to_string(),
        repository: reference.name(),
        subject: tree.subject.clone(),
        discovery: match tree.discovery {
            Discovery::Api => "api",
            Discovery::FallbackTag => "fallback-tag",
        },
        referrers: tree.referrers.iter().map(referrer).collect(),
    };
    context.out.result(&report, || human(&report))
}

fn referrer(node: &ReferrerNode) -> Referrer {
    let descriptor = &node.descriptor;
    Referrer {
        digest: descriptor.digest().to_string(),
        media_type: descriptor.media_type().to_string(),
        artifact_type: descriptor.artifact_type().as_ref().map(ToString::to_string),
        size: descriptor.size(),
        annotations: descriptor
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        referrers: node.referrers.iter().map(referrer).collect(),
    }
}

/// The subject, then one line a referrer drawn as a tree.
fn human(report: &ReferrersReport) -> String {
    fn lines(referrers: &[Referrer], indent: &str, out: &mut String) {
        for (i, r) in referrers.iter().enumerate() {
            let last = i + 1 == referrers.len();
            let kind = r.artifact_type.as_deref().unwrap_or(&r.media_type);
            out.push_str(&format!(
                "{indent}{} {}  {kind}  {} bytes\n",
                if last { "└──" } else { "├──" },
                r.digest,
                r.size
            ));
            let below = format!("{indent}{}", if last { "    " } else { "│   " });
            lines(&r.referrers, &below, out);
        }
    }
    let mut out = format!("{}@{}\n", report.repository, report.subject);
    lines(&report.referrers, "", &mut out);
    out
}
