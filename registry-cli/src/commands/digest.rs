//! `mcreg digest IMAGE`: what a reference points at, from a HEAD request.

use serde::Serialize;

use super::{ClientSettings, Context, parse_reference};
use crate::cli::DigestArgs;
use crate::exit::Failure;

/// `digest --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DigestReport {
    reference: String,
    digest: String,
    media_type: String,
    size: u64,
    /// The mirror or registry that answered.
    source: Option<String>,
}

pub async fn run(context: &Context, args: &DigestArgs) -> Result<(), Failure> {
    let reference = parse_reference(&args.image)?;
    let client = context.client(reference.registry(), ClientSettings::default())?;
    let descriptor = client.head_manifest(&reference).await?;
    let report = DigestReport {
        reference: reference.to_string(),
        digest: descriptor.digest,
        media_type: descriptor.media_type,
        size: descriptor.size,
        source: descriptor.source,
    };
    context.out.result(&report, || format!("{}\n", report.digest))
}
