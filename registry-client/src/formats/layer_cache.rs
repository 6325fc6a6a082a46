//! The layer cache: a content-addressed directory of verified blobs that
//! several processes may share (writes are temp file + atomic link).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::formats::atomic::AtomicFile;
use crate::model::digest::Hasher;

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
        let (atomic, mut file) = self.staging(digest)?;
        std::io::Write::write_all(&mut file, bytes)?;
        atomic.commit_if_absent()?;
        Ok(())
    }

    /// A writer that adds blob `digest` to the cache from bytes of any origin:
    /// they are hashed as they are written, and
    /// [`commit`](LayerCacheWriter::commit) adds them only if they hash to
    /// `digest`. Other processes see the entry whole or not at all.
    pub fn writer(&self, digest: &str) -> Result<LayerCacheWriter> {
        let (atomic, file) = self.staging(digest)?;
        Ok(LayerCacheWriter {
            atomic,
            file,
            hasher: Hasher::for_digest(digest)?,
            digest: digest.to_owned(),
        })
    }

    /// A temporary file for bytes already verified (the read path checked
    /// them); [`AtomicFile::commit_if_absent`] adds it.
    pub(crate) fn staging(&self, digest: &str) -> Result<(AtomicFile, fs::File)> {
        let path = self.path(digest)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        Ok(AtomicFile::create(&path)?)
    }
}

/// A blob on its way into the [`LayerCache`], checked before it is added.
pub struct LayerCacheWriter {
    atomic: AtomicFile,
    file: fs::File,
    hasher: Hasher,
    digest: String,
}

impl LayerCacheWriter {
    /// Adds the blob if what was written hashes to its digest (unless another
    /// writer added it first); otherwise [`Error::DigestMismatch`] and the cache
    /// is unchanged. Returns the entry's path.
    pub fn commit(self) -> Result<PathBuf> {
        let actual = self.hasher.finish();
        if actual != self.digest {
            return Err(Error::DigestMismatch {
                expected: self.digest,
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| Error::io(self.atomic.temp_path(), e))?;
        let dest = self.atomic.dest().to_owned();
        self.atomic.commit_if_absent().map_err(|e| Error::io(&dest, e))?;
        Ok(dest)
    }
}

impl Write for LayerCacheWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
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
        let (atomic, mut file) = cache.staging(&digest).unwrap();
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

    #[test]
    fn the_public_writer_adds_only_what_hashes_to_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        let digest = crate::model::digest::sha256(b"hello");

        let mut wrong = cache.writer(&digest).unwrap();
        wrong.write_all(b"hellO").unwrap();
        let err = wrong.commit().unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
        assert!(cache.get(&digest, 5).unwrap().is_none(), "nothing added");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("blobs/sha256")).unwrap().collect();
        assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");

        let mut right = cache.writer(&digest).unwrap();
        right.write_all(b"hel").unwrap();
        right.write_all(b"lo").unwrap();
        let path = right.commit().unwrap();
        assert_eq!(cache.get(&digest, 5).unwrap(), Some(path.clone()));
        assert_eq!(fs::read(path).unwrap(), b"hello");
    }
}
