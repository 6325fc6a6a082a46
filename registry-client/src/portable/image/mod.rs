//! What a copy moves: an [`ImageSource`] is an image's manifests and configs and
//! a way to open each of its blobs. A registry ([`Image`], resolved by
//! [`RepositoryClient::pull`](crate::RepositoryClient::pull)) and the files
//! other tools write ([`LocalImage`]: an OCI layout, a docker archive) are
//! sources; every destination takes any of them.

mod local;
mod manifests;
mod registry;
mod source;

pub use local::LocalImage;
pub use manifests::{ImageManifests, PlatformImage};
pub(crate) use manifests::{distinct, is_image_config, largest_first};
pub use registry::RegistryBlobs;
pub use source::ImageSource;
pub(crate) use source::wanted;
