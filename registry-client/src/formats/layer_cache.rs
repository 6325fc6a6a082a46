//! The layer cache: a content-addressed directory of verified blobs that
//! several processes may share (writes are temp file + atomic link).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::formats::atomic::AtomicFile;

/// Verified blobs by digest under `<dir>/blobs/<algorithm>/<hex>`.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
}

impl LayerCache {
    /// Opens (creating if needed) a cache directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let root = dir.into();
        fs::create_dir_all(root.join("blobs").join("sha256"))?;
        Ok(LayerCache { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives in the cache.
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        let (algorithm, hex) = split_digest(digest)?;
        Ok(self.root.join("blobs").join(algorithm).join(hex))
    }

    /// The cached file for a blob, if present with the right size. (Its
    /// content was verified when it was added; a size check catches truncation.)
    pub fn get(&self, digest: &str, size: u64) -> Result<Option<PathBuf>> {
        let path = self.path(digest)?;
        match fs::metadata(&path) {
            Ok(m) if m.len() == size => Ok(Some(path)),
            Ok(_) => {
                // A damaged entry: drop it so it is fetched again.
                let _ = fs::remove_file(&path);
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }

    /// Adds a small verified blob (a config) unless present.
    pub(crate) fn put(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let (atomic, mut file) = self.writer(digest)?;
        std::io::Write::write_all(&mut file, bytes)?;
        atomic.commit_if_absent()?;
        Ok(())
    }

    /// A temporary file to download `digest` into; [`AtomicFile::commit_if_absent`] adds it.
    pub(crate) fn writer(&self, digest: &str) -> Result<(AtomicFile, fs::File)> {
        let path = self.path(digest)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        Ok(AtomicFile::create(&path)?)
    }
}

/// `(algorithm, hex)` of a digest, checked so it is safe as a path.
pub(crate) fn split_digest(digest: &str) -> Result<(&str, &str)> {
    crate::model::digest::split_for_path(digest)
        .ok_or_else(|| Error::InvalidConfig(format!("invalid blob digest {digest:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn digests_are_checked_before_becoming_paths() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        for bad in ["sha256:../../etc/passwd", "md5:00", "sha256:ABC", "nocolon"] {
            assert!(cache.path(bad).is_err(), "{bad}");
        }
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(cache.path(&good).unwrap().starts_with(dir.path()));
    }

    #[test]
    fn entries_appear_whole_and_wrong_sizes_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        let digest = crate::model::digest::sha256(b"hello");
        assert!(cache.get(&digest, 5).unwrap().is_none());
        let (atomic, mut file) = cache.writer(&digest).unwrap();
        file.write_all(b"hello").unwrap();
        assert!(
            cache.get(&digest, 5).unwrap().is_none(),
            "not visible before commit"
        );
        atomic.commit_if_absent().unwrap();
        assert_eq!(
            fs::read(cache.get(&digest, 5).unwrap().unwrap()).unwrap(),
            b"hello"
        );

        assert!(cache.get(&digest, 6).unwrap().is_none());
        assert!(
            cache.get(&digest, 5).unwrap().is_none(),
            "the damaged entry was removed"
        );
    }
}
