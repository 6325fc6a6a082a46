//! The docker archive (`docker save`'s tar: `manifest.json`, a config and
//! layer files): read (any tool's) and written (ours), side by side.

mod read;
mod write;

pub(crate) use read::read_docker_archive;
pub(crate) use write::{DockerArchiveLayout, repo_tag};
