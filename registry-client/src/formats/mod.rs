//! Images on disk: a `docker load`-able tar, an OCI image layout, a flattened
//! root filesystem, the layer cache, and the pieces they share (files that
//! appear whole or not at all, a tolerant tar reader).

pub(crate) mod atomic;
pub(crate) mod docker_archive;
pub mod layer_cache;
pub(crate) mod local_image;
pub(crate) mod oci_layout;
pub mod rootfs;
pub(crate) mod tar_reader;

use crate::error::{Error, Result};

/// How a layer blob is compressed, read from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// OCI and Docker layer media types; `+gzip`/`.gzip`, `+zstd`, plain `tar`.
    pub fn from_media_type(media_type: &str) -> Result<Self> {
        let unsupported = || Error::UnsupportedMediaType {
            media_type: media_type.to_owned(),
        };
        let base = media_type.split(';').next().unwrap_or(media_type).trim();
        if base.ends_with("+gzip") || base.ends_with(".gzip") || base.ends_with("tar.gzip") {
            Ok(Compression::Gzip)
        } else if base.ends_with("+zstd") || base.ends_with(".zstd") {
            Ok(Compression::Zstd)
        } else if base.ends_with(".tar") {
            Ok(Compression::None)
        } else {
            // Encrypted layers and anything unknown.
            Err(unsupported())
        }
    }

    /// File extension for a layer blob kept as it is (`.tar.gz`, `.tar.zst`, `.tar`).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
        }
    }
}

/// A blob as the writers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobInfo {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_from_media_types() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar+gzip", Compression::Gzip),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Compression::Zstd),
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
        ];
        for (media_type, want) in cases {
            assert_eq!(
                Compression::from_media_type(media_type).unwrap(),
                want,
                "{media_type}"
            );
        }
        for bad in [
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "text/plain",
            "",
        ] {
            assert!(Compression::from_media_type(bad).is_err(), "{bad}");
        }
    }
}
