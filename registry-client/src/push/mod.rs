//! Writing images to registries: copying a resolved image to any registry
//! ([`Image::copy_to`](crate::pull::Image::copy_to)) and pushing a local one
//! ([`LocalImage`]).

mod copy;
mod local;

pub use copy::{CopiedBlob, CopyOptions, CopyResult, DEFAULT_COPY_CONCURRENCY};
pub use local::LocalImage;
