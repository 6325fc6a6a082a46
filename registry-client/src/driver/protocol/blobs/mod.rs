//! Blobs: reading them (GET, HEAD, resumed ranges, verified as they arrive,
//! into a sink or as a stream)
//! and writing them (existence, cross-repository mounts, uploads).

mod read;
mod stream;
mod verify;
mod write;

pub use read::{BlobHead, BlobSink, FetchedBlob, GetBlobOptions, RestartRefused};
pub(crate) use read::{BytesSink, download, get_blob_into, head_blob};
pub use stream::BlobStream;
pub(crate) use stream::get_blob;
pub(crate) use verify::Verifier;
pub use write::BlobPush;
pub(crate) use write::{
    blob_exists, is_upload_lost, mount_blob, put_manifest, upload_blob, upload_blob_streamed,
};
