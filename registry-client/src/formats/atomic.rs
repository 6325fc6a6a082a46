//! Outputs appear whole or not at all: written under a temporary name next
//! to the destination, renamed into place on commit, removed otherwise
//! (also when the pull is cancelled and its future dropped).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// A file being written under a temporary name beside `dest`.
#[derive(Debug)]
pub(crate) struct AtomicFile {
    temp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file (in `dest`'s directory, so the rename is atomic).
    pub(crate) fn create(dest: &Path) -> io::Result<(AtomicFile, File)> {
        let temp = temp_name(dest);
        let file = File::options()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&temp)?;
        Ok((
            AtomicFile {
                temp,
                dest: dest.to_owned(),
                committed: false,
            },
            file,
        ))
    }

    pub(crate) fn temp_path(&self) -> &Path {
        &self.temp
    }

    pub(crate) fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes the temporary file's data to disk (before [`Self::commit`]).
    pub(crate) fn sync(&self) -> io::Result<()> {
        File::open(&self.temp)?.sync_all()
    }

    /// Moves the finished file into place, replacing what was there.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.temp, &self.dest)?;
        self.committed = true;
        Ok(())
    }

    /// Moves the file into place unless `dest` already exists (content-addressed
    /// files: whoever finished first wins, the copies are identical).
    pub(crate) fn commit_if_absent(mut self) -> io::Result<()> {
        match fs::hard_link(&self.temp, &self.dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        fs::remove_file(&self.temp)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// A new directory built under a temporary name beside `dest`.
#[derive(Debug)]
pub(crate) struct AtomicDir {
    temp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl AtomicDir {
    pub(crate) fn create(dest: &Path) -> io::Result<AtomicDir> {
        let temp = temp_name(dest);
        fs::create_dir(&temp)?;
        Ok(AtomicDir {
            temp,
            dest: dest.to_owned(),
            committed: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.temp
    }

    /// Renames the directory into place; fails if `dest` appeared meanwhile.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        if self.dest.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} appeared while it was being written", self.dest.display()),
            ));
        }
        fs::rename(&self.temp, &self.dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.temp);
        }
    }
}

/// `.<name>.partial-<random>` in the same directory.
fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = rand::random();
    dest.with_file_name(format!(".{name}.partial-{suffix:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        let (atomic, mut file) = AtomicFile::create(&dest).unwrap();
        file.write_all(b"data").unwrap();
        assert!(!dest.exists());
        atomic.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"data");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn dropped_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        let (atomic, mut file) = AtomicFile::create(&dest).unwrap();
        file.write_all(b"half").unwrap();
        drop(atomic);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_if_absent_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob");
        fs::write(&dest, b"first").unwrap();
        let (atomic, mut file) = AtomicFile::create(&dest).unwrap();
        file.write_all(b"second").unwrap();
        atomic.commit_if_absent().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn directory_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("layout");
        let atomic = AtomicDir::create(&dest).unwrap();
        fs::write(atomic.path().join("index.json"), b"{}").unwrap();
        assert!(!dest.exists());
        atomic.commit().unwrap();
        assert!(dest.join("index.json").exists());

        let failed = AtomicDir::create(&dir.path().join("other")).unwrap();
        fs::write(failed.path().join("x"), b"").unwrap();
        drop(failed);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
