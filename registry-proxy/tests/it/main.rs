//! The cache's tests, one binary: real clients (podman, skopeo, containerd's `ctr`) pulling
//! through the cache, its `/v2/` protocol checked directly, the conformance suite's read
//! cases through it, and its storage (disk, tmpfs, moto's S3), freshness, eviction, access
//! control, cloud upstreams and operation as a service.

mod access;
mod cache;
mod clients;
mod cloud;
mod common;
mod conformance;
mod eviction;
mod freshness;
mod operations;
mod protocol;
mod referrers;
mod s3;
mod server;
mod upstream;
