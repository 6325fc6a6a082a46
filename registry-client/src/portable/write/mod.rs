//! Writing an image: one routine, [`copy_image`], takes any [`ImageSource`]
//! to any [`Destination`] (a registry, an OCI layout, a docker archive, a root
//! filesystem). Pull, push and copy are calls of it; each destination is a
//! file here, and they share how blobs are fetched ([`fetch`]).

mod docker_archive;
mod fetch;
mod oci_layout;
mod options;
mod registry;
mod rootfs;
mod sink;

use std::path::PathBuf;

use crate::driver::protocol::registry::Registry;
use crate::error::{Error, Result};
use crate::model::reference::ImageReference;
use crate::portable::image::ImageSource;
pub(crate) use docker_archive::docker_archive;
pub(crate) use oci_layout::oci_layout;
pub use options::{
    CopiedBlob, CopyOptions, CopyResult, DEFAULT_CONCURRENCY, DEFAULT_COPY_CONCURRENCY, OutputFormat,
    PullOptions, PullResult, PulledLayer,
};
pub(crate) use registry::push;
pub(crate) use rootfs::{rootfs, rootfs_to};

/// Where [`copy_image`] writes an image: a registry
/// ([`RepositoryClient::destination`](crate::RepositoryClient::destination)), or a
/// file other tools read.
#[derive(Debug, Clone)]
pub struct Destination {
    to: Target,
}

#[derive(Debug, Clone)]
enum Target {
    Registry {
        registry: Registry,
        reference: ImageReference,
    },
    OciLayout {
        dir: PathBuf,
        ref_name: Option<String>,
    },
    DockerArchive(PathBuf),
    Rootfs(PathBuf),
}

impl Destination {
    /// An OCI layout at `dir` (made, or added to), its entry named `ref_name` (by
    /// default the source's tag).
    pub fn oci_layout(dir: impl Into<PathBuf>, ref_name: Option<&str>) -> Destination {
        Destination {
            to: Target::OciLayout {
                dir: dir.into(),
                ref_name: ref_name.map(str::to_owned),
            },
        }
    }

    /// A `docker load`-able tar at `path`.
    pub fn docker_archive(path: impl Into<PathBuf>) -> Destination {
        Destination {
            to: Target::DockerArchive(path.into()),
        }
    }

    /// The flattened root filesystem, as a tar at `path`.
    pub fn rootfs(path: impl Into<PathBuf>) -> Destination {
        Destination {
            to: Target::Rootfs(path.into()),
        }
    }

    pub(crate) fn registry(registry: &Registry, reference: &ImageReference) -> Destination {
        Destination {
            to: Target::Registry {
                registry: registry.clone(),
                reference: reference.clone(),
            },
        }
    }
}

/// What [`copy_image`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Written {
    /// Into a registry: what was put.
    Registry(CopyResult),
    /// To a file: what was written.
    File(PullResult),
}

/// Writes `source` to `to`. Blobs move `options.concurrency` at a time, straight
/// from the source into place (a registry's upload, the archive's region, the
/// layout's blob), checked on the way; nothing is left half-written on failure.
/// A dry run is for a registry destination.
pub async fn copy_image(
    source: &dyn ImageSource,
    to: &Destination,
    options: &CopyOptions,
) -> Result<Written> {
    let to_disk = |ref_name: Option<&str>| {
        if options.dry_run {
            return Err(Error::InvalidConfig(
                "a dry run is for a registry destination".into(),
            ));
        }
        Ok(options.to_disk(ref_name))
    };
    Ok(match &to.to {
        Target::Registry { registry, reference } => {
            Written::Registry(push(source, registry, reference, options).await?)
        }
        Target::OciLayout { dir, ref_name } => {
            Written::File(oci_layout(source, dir, &to_disk(ref_name.as_deref())?).await?)
        }
        Target::DockerArchive(path) => Written::File(docker_archive(source, path, &to_disk(None)?).await?),
        Target::Rootfs(path) => Written::File(rootfs(source, path, &to_disk(None)?).await?),
    })
}
