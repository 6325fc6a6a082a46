//! The configuration files users already have, read into source rules:
//! podman's `registries.conf` and containerd's `hosts.toml` directories.

pub mod hosts_dir;
pub mod registries_conf;
