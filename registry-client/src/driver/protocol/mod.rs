//! The registry protocol (OCI distribution): manifests, blobs, uploads, tags,
//! referrers and the catalog, each asked of an image's sources in order.

pub(crate) mod blobs;
pub(crate) mod cache;
pub(crate) mod manifests;
pub(crate) mod pages;
pub(crate) mod referrers;
pub(crate) mod registry;
pub(crate) mod tags;
