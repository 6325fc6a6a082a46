//! Writing images to registries ([`RepositoryClient::push`](crate::RepositoryClient::push)):
//! an image resolved from another registry, or one read from disk ([`LocalImage`]); both
//! are an [`ImageSource`].

mod copy;
mod local;

pub use copy::{CopiedBlob, CopyOptions, CopyResult, DEFAULT_COPY_CONCURRENCY, ImageSource, PushPlan};
pub(crate) use copy::{Origin, PlannedBlob, PlannedManifest, push};
pub use local::LocalImage;
