//! Writing to registries: the upload protocol ([`RepositoryClient::upload_blob`],
//! [`mount_blob`](crate::RepositoryClient::mount_blob), [`put_manifest`](crate::RepositoryClient::put_manifest))
//! and copying a resolved image to any registry ([`Image::copy_to`](crate::pull::Image::copy_to)).
//!
//! [`RepositoryClient::upload_blob`]: crate::RepositoryClient::upload_blob

mod copy;
mod local;
mod upload;

pub use copy::{CopiedBlob, CopyOptions, CopyResult, DEFAULT_COPY_CONCURRENCY};
pub use local::LocalImage;
pub use upload::BlobPush;
