//! The OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`):
//! read (any tool's: ours, skopeo's, podman's, umoci's) and written (ours),
//! side by side.

mod read;
mod write;

pub(crate) use read::read_oci_layout;
pub(crate) use write::{BlobWriter, OciLayoutWriter};
