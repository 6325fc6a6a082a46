//! An image read from disk (an OCI layout, a docker archive): its manifests
//! as stored, and where each blob's bytes lie, so that a push reads them in
//! place (nothing is unpacked or copied first).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Error, Result};

/// Manifests and configs are read whole; larger ones are not what they claim to be.
pub(crate) const MAX_JSON: u64 = 16 * 1024 * 1024;
/// Indexes nested in indexes, at most.
pub(crate) const MAX_DEPTH: usize = 4;

/// What a format reader found: the manifest a push names, the manifests below
/// it (children before their index) and every blob, once.
#[derive(Debug)]
pub(crate) struct ImageOnDisk {
    /// What the file calls it: a layout entry's ref name, an archive's first `RepoTags`.
    pub name: Option<String>,
    pub top: StoredManifest,
    pub below: Vec<StoredManifest>,
    pub blobs: Vec<StoredBlob>,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredBlob {
    pub digest: String,
    pub size: u64,
    pub bytes: BlobBytes,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum BlobBytes {
    /// Read already (a config, a generated manifest's neighbour).
    Memory(Bytes),
    /// `size` bytes of a file from `offset` (a layout's blob, an archive's entry).
    File { path: PathBuf, offset: u64 },
}

/// A small JSON file, whole: a missing or unreadable one is an I/O error on
/// its path, a huge one damage.
pub(crate) fn read_small(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size > MAX_JSON {
        return Err(Error::InvalidLocalImage {
            path: path.to_owned(),
            message: format!("{size} bytes, more than a manifest or config can be"),
        });
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// `size` bytes of the file at `path` from `offset` (an archive's entry, a
/// layout's config), read whole: errors name the path.
pub(crate) fn read_at(path: &Path, offset: u64, size: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buffer = vec![0; size as usize];
    file.read_exact_at(&mut buffer, offset)
        .map_err(|e| Error::io(path, e))?;
    Ok(buffer)
}
