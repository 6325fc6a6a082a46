//! The shared vocabulary: references, digests, platforms, manifests, referrers, tag
//! lists and progress events. Plain data and parsing, no I/O; every layer
//! above uses it.

pub mod digest;
pub mod events;
pub mod manifest;
pub mod platform;
pub mod reference;
pub mod referrers;
pub mod tags;
