//! The configuration files users already have, read into source rules:
//! podman's `registries.conf` and containerd's `hosts.toml` directories; and
//! the one TOML reader they (and the cache's configuration) share.

pub mod hosts_dir;
pub mod registries_conf;
pub mod toml_file;
