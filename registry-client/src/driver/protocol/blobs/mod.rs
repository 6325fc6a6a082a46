//! Blobs: reading them (GET, HEAD, resumed ranges, verified as they arrive)
//! and writing them (existence, cross-repository mounts, uploads).

mod read;
mod write;

pub use read::{BlobHead, BlobSink, FetchedBlob};
pub(crate) use read::{download, fetch_blob, head_blob};
pub use write::BlobPush;
pub(crate) use write::{
    blob_exists, is_upload_lost, mount_blob, put_manifest, upload_blob, upload_blob_streamed,
};
