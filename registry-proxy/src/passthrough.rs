//! A blob from upstream straight to one client, verified but never stored:
//! what a miss gets when the cache cannot write (a full or failing disk),
//! and how a client whose fill stopped for that reason gets the rest.
//!
//! The whole blob is read through the SDK's blob stream, which checks it as
//! it flows (a range too: the client's range is cut from the whole blob, so
//! that it can be checked) and never passes on the last bytes of a blob that
//! fails. The bytes of the range asked for go on at the client's pace (a
//! small queue, no buffering of the blob): a client never gets a complete
//! but corrupt blob, its connection is cut instead.

use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use registry_client::{BlobStream, GetBlobOptions, ImageReference, RepositoryClient};

use crate::error::{Error, Result};

/// A download under way whose size is known; [`read`](Self::read) says
/// which bytes the client gets.
pub struct PassThrough {
    pub size: u64,
    blob: BlobStream,
}

impl PassThrough {
    /// Starts downloading `digest`; resolves once the upstream has said its
    /// size (or failed).
    pub async fn start(
        client: RepositoryClient,
        reference: ImageReference,
        digest: String,
    ) -> Result<PassThrough> {
        let blob = client
            .get_blob(&reference, &digest, GetBlobOptions::default())
            .await
            .map_err(Error::Upstream)?;
        match blob.size() {
            Some(size) => Ok(PassThrough { size, blob }),
            None => Err(Error::Upstream(registry_client::Error::InvalidResponse {
                host: reference.registry().to_owned(),
                message: "a blob without a size".into(),
            })),
        }
    }

    /// The bytes of `range` (within the size), ending in an error if the
    /// blob fails. The last of them wait for the blob's verdict, like the
    /// blob's own last bytes: a range that ends early is not complete before
    /// the rest of the blob is checked.
    pub fn read(self, range: Range<u64>) -> BoxStream<'static, std::io::Result<Bytes>> {
        let state = (self.blob, range, 0u64, None::<Bytes>);
        Box::pin(futures::stream::unfold(
            state,
            |(mut blob, range, mut at, mut held)| async move {
                loop {
                    match blob.next().await {
                        Some(Ok(chunk)) => {
                            let start = at;
                            at += chunk.len() as u64;
                            let (from, to) = (start.max(range.start), at.min(range.end));
                            if from >= to {
                                continue;
                            }
                            let wanted = chunk.slice((from - start) as usize..(to - start) as usize);
                            if let Some(previous) = held.replace(wanted) {
                                return Some((Ok(previous), (blob, range, at, held)));
                            }
                        }
                        Some(Err(error)) => {
                            let error = std::io::Error::other(registry_client::error::display_chain(&error));
                            // Nothing follows an error: the held bytes are dropped.
                            return Some((Err(error), (blob, range, at, None)));
                        }
                        None => return held.take().map(|last| (Ok(last), (blob, range, at, None))),
                    }
                }
            },
        ))
    }
}
