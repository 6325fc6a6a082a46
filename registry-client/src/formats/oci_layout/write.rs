//! Writing an OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`),
//! transactionally.
//!
//! A new layout is built under a temporary directory beside its destination
//! and renamed into place on [`OciLayoutWriter::commit`]; dropped without a
//! commit, it leaves nothing. Into an existing layout, blobs are written in
//! place (each one atomically: temporary name, then rename) and `index.json`
//! is replaced last, on commit; dropped without a commit, the writer removes
//! the blobs it added and `index.json` is never touched. An existing layout is
//! locked (`flock` on its directory) while a writer has it open, so that one
//! writer cannot remove a blob another has just referenced.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::image::{ANNOTATION_REF_NAME, Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::error::{Error, Result};
use crate::formats::atomic::{AtomicDir, AtomicFile};

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const BLOBS_DIR: &str = "blobs";
const LAYOUT_VERSION: &str = "1.0.0";
/// How long a writer waits for the layout's lock. A lock released a moment
/// ago can still be held briefly: a child process that another thread of
/// this program is starting holds a copy of every descriptor until its exec.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Writes one or more images into an OCI image layout; see the module docs.
#[derive(Debug)]
pub(crate) struct OciLayoutWriter {
    /// Where the layout is (or will be, for a new one).
    dest: PathBuf,
    /// Where it is being written: `dest`, or the temporary directory of a new layout.
    root: PathBuf,
    /// A new layout, renamed into place on commit and removed on drop.
    new_dir: Option<AtomicDir>,
    /// Held (flock) while writing into an existing directory.
    _lock: Option<File>,
    /// `oci-layout` must be written on commit (an empty existing directory).
    write_marker: bool,
    /// Index entries to add on commit, in order.
    pending: Vec<(Descriptor, Option<String>)>,
    /// Files this writer created inside an existing directory (removed on drop without commit).
    added_files: Vec<PathBuf>,
    /// Directories this writer created inside an existing directory (likewise).
    created_dirs: Vec<PathBuf>,
    /// `blobs/<alg>` directories known to exist (checked once, not per blob).
    ready_dirs: Vec<PathBuf>,
    /// Temporary files of blob writers handed out (removed on drop without commit, in case
    /// their `BlobWriter`s outlive this writer).
    temp_files: Vec<PathBuf>,
    committed: bool,
}

/// A blob being streamed into the layout under a temporary name. Hand it back
/// to [`OciLayoutWriter::finish_blob`] once the content is verified; dropped,
/// it removes its temporary file.
#[derive(Debug)]
pub(crate) struct BlobWriter {
    file: AtomicFile,
    digest: String,
    root: PathBuf,
}

/// Takes the layout's lock, waiting up to [`LOCK_WAIT`] for another holder.
fn lock_layout(lock: &File, dir: &Path) -> Result<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::InvalidConfig(format!(
                    "OCI image layout {} is being written by another writer",
                    dir.display()
                )));
            }
            // A filesystem without locks (some network filesystems): write unlocked.
            Err(fs::TryLockError::Error(e)) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot lock the OCI image layout");
                return Ok(());
            }
        }
    }
}

impl OciLayoutWriter {
    /// Opens `dir` as a layout: an existing layout (its `oci-layout` is checked) or an empty
    /// directory is written in place; a missing `dir` is built under a temporary directory
    /// beside it that appears only on commit. A non-empty directory that is not a layout is
    /// an error, as is a directory another writer has open.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => Self::open_existing(dir),
            Ok(_) => Err(Error::InvalidConfig(format!(
                "{} exists and is not a directory; an OCI image layout is a directory",
                dir.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create_new(dir),
            Err(e) => Err(io_at(dir, "reading")(e)),
        }
    }

    fn create_new(dir: &Path) -> Result<Self> {
        let new_dir = AtomicDir::create(dir).map_err(io_at(dir, "creating a temporary directory for"))?;
        let root = new_dir.path().to_owned();
        let blobs = root.join(BLOBS_DIR);
        fs::create_dir(&blobs).map_err(io_at(&blobs, "creating"))?;
        let marker = root.join(LAYOUT_FILE);
        write_atomically(&marker, &layout_marker())?;
        Ok(Self::new(dir, root, Some(new_dir), None, false))
    }

    fn open_existing(dir: &Path) -> Result<Self> {
        let lock = File::open(dir).map_err(io_at(dir, "opening"))?;
        lock_layout(&lock, dir)?;

        let marker = dir.join(LAYOUT_FILE);
        match fs::read(&marker) {
            Ok(bytes) => {
                check_layout_marker(&marker, &bytes)?;
                let blobs = dir.join(BLOBS_DIR);
                if blobs.exists() && !blobs.is_dir() {
                    return Err(Error::InvalidConfig(format!(
                        "{} is not a directory: {} is not a valid OCI image layout",
                        blobs.display(),
                        dir.display()
                    )));
                }
                // Fail early on an index we could not update.
                read_index(&dir.join(INDEX_FILE))?;
                // Under the lock, temporary files are leftovers of a writer that was killed.
                remove_stale_temp_files(dir);
                Ok(Self::new(dir, dir.to_owned(), None, Some(lock), false))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut entries = fs::read_dir(dir).map_err(io_at(dir, "listing"))?;
                if entries.next().is_some() {
                    return Err(Error::InvalidConfig(format!(
                        "{} is not an OCI image layout (it has no {LAYOUT_FILE} file) and is not empty; \
                         refusing to write a layout into it",
                        dir.display()
                    )));
                }
                Ok(Self::new(dir, dir.to_owned(), None, Some(lock), true))
            }
            Err(e) => Err(io_at(&marker, "reading")(e)),
        }
    }

    fn new(dest: &Path, root: PathBuf, new_dir: Option<AtomicDir>, lock: Option<File>, marker: bool) -> Self {
        OciLayoutWriter {
            dest: dest.to_owned(),
            root,
            new_dir,
            _lock: lock,
            write_marker: marker,
            pending: Vec::new(),
            added_files: Vec::new(),
            created_dirs: Vec::new(),
            ready_dirs: Vec::new(),
            temp_files: Vec::new(),
            committed: false,
        }
    }

    /// Whether the layout has this blob (false for a malformed digest).
    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Final path of a blob (inside the temporary directory for a new layout). The digest is
    /// validated first: `sha256:` + 64 or `sha512:` + 128 lowercase hex digits.
    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let (algorithm, hex) = self.split_digest(digest)?;
        Ok(self.root.join(BLOBS_DIR).join(algorithm).join(hex))
    }

    /// Writes a small blob (manifest, config) if it is missing, after checking that `bytes`
    /// hash to `digest`. An existing blob is left as it is.
    pub(crate) fn put_blob(&mut self, digest: &str, bytes: &[u8]) -> Result<()> {
        self.split_digest(digest)?;
        crate::model::digest::verify(digest, bytes)?;
        let dest = self.prepare_blob(digest)?;
        if dest.is_file() {
            return Ok(());
        }
        let atomic = write_temp(&dest, bytes)?;
        self.place(atomic)
    }

    /// Adds a blob that already exists as a verified file (the layer cache): hard-linked when
    /// `from` is on the same filesystem, copied only when a link is impossible (another
    /// filesystem, links not permitted or not supported). Returns whether it was linked;
    /// false also when the layout already had the blob (nothing is done then).
    pub(crate) fn link_or_copy_blob(&mut self, digest: &str, from: &Path) -> Result<bool> {
        let dest = self.prepare_blob(digest)?;
        if dest.is_file() {
            return Ok(false);
        }
        match fs::hard_link(from, &dest) {
            Ok(()) => {
                self.added_files.push(dest);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) if link_impossible(&e) => {
                tracing::debug!(from = %from.display(), error = %e, "cannot hard-link blob, copying it");
            }
            Err(e) => {
                return Err(io_at(&dest, &format!("hard-linking {} to", from.display()))(e));
            }
        }
        let mut source = File::open(from).map_err(io_at(from, "opening"))?;
        let (atomic, mut file) = AtomicFile::create(&dest).map_err(io_at(&dest, "creating"))?;
        io::copy(&mut source, &mut file).map_err(io_at(from, "copying"))?;
        file.sync_all().map_err(io_at(atomic.temp_path(), "syncing"))?;
        drop(file);
        self.place(atomic)?;
        Ok(false)
    }

    /// A temporary file to stream a downloaded blob into. The caller verifies the digest while
    /// writing and syncs the file, then hands the writer to [`Self::finish_blob`] — or drops
    /// it on failure.
    pub(crate) fn blob_writer(&mut self, digest: &str) -> Result<(BlobWriter, File)> {
        let dest = self.prepare_blob(digest)?;
        let (atomic, file) = AtomicFile::create(&dest).map_err(io_at(&dest, "creating"))?;
        self.temp_files.push(atomic.temp_path().to_owned());
        let writer = BlobWriter {
            file: atomic,
            digest: digest.to_owned(),
            root: self.root.clone(),
        };
        Ok((writer, file))
    }

    /// Moves a finished blob into place (kept as it is if the layout has it already). Its
    /// data must be synced already: the downloads sync each blob as it completes, in
    /// parallel, rather than here one after another.
    pub(crate) fn finish_blob(&mut self, writer: BlobWriter) -> Result<()> {
        if writer.root != self.root {
            return Err(Error::InvalidConfig(format!(
                "blob {} was started for another OCI image layout than {}",
                writer.digest,
                self.dest.display()
            )));
        }
        let temp = writer.file.temp_path().to_owned();
        self.place(writer.file)?;
        self.temp_files.retain(|t| *t != temp);
        Ok(())
    }

    /// Adds `descriptor` to index.json on commit, annotated with
    /// `org.opencontainers.image.ref.name` = `ref_name` when given. An entry with the same ref
    /// name is replaced (the tag moves); an identical entry is not added twice. Without a ref
    /// name, nothing is added when an entry already points at the same digest.
    pub(crate) fn add_manifest(&mut self, descriptor: Descriptor, ref_name: Option<&str>) {
        self.pending.push((descriptor, ref_name.map(str::to_owned)));
    }

    /// Updates index.json (written atomically, last), writing `oci-layout` first if the
    /// layout is new, then renames a new layout into place. Every added manifest must be in
    /// the layout's blobs.
    pub(crate) fn commit(mut self) -> Result<()> {
        let index_path = self.root.join(INDEX_FILE);
        let (mut index, mut changed) = match read_index(&index_path)? {
            Some(index) => (index, false),
            None => (empty_index()?, true),
        };
        for (descriptor, ref_name) in std::mem::take(&mut self.pending) {
            let digest = descriptor.digest().to_string();
            if !self.has_blob(&digest) {
                return Err(Error::InvalidConfig(format!(
                    "cannot add {digest} to {}: the manifest is not among the layout's blobs",
                    self.dest.join(INDEX_FILE).display()
                )));
            }
            changed |= apply_entry(&mut index, descriptor, ref_name.as_deref());
        }
        if self.write_marker {
            let marker = self.root.join(LAYOUT_FILE);
            write_atomically(&marker, &layout_marker())?;
            self.added_files.push(marker);
        }
        if changed {
            index.set_schema_version(2);
            index.set_media_type(Some(MediaType::ImageIndex));
            let bytes = serde_json::to_vec(&index).map_err(|e| io_at(&index_path, "encoding")(e.into()))?;
            write_atomically(&index_path, &bytes)?;
        }
        if let Some(new_dir) = self.new_dir.take() {
            new_dir
                .commit()
                .map_err(io_at(&self.dest, "moving the new layout into place at"))?;
        }
        self.committed = true;
        Ok(())
    }

    /// Validates `digest` and creates `blobs/<alg>/` if needed; returns the blob's path.
    fn prepare_blob(&mut self, digest: &str) -> Result<PathBuf> {
        let (algorithm, hex) = self.split_digest(digest)?;
        let blobs = self.root.join(BLOBS_DIR);
        let dir = blobs.join(algorithm);
        if !self.ready_dirs.contains(&dir) {
            for d in [blobs, dir.clone()] {
                match fs::create_dir(&d) {
                    Ok(()) => self.created_dirs.push(d),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                    Err(e) => return Err(io_at(&d, "creating")(e)),
                }
            }
            self.ready_dirs.push(dir.clone());
        }
        Ok(dir.join(hex))
    }

    /// Renames a finished temporary blob into place unless the blob is there already.
    fn place(&mut self, atomic: AtomicFile) -> Result<()> {
        let dest = atomic.dest().to_owned();
        if dest.is_file() {
            // Content-addressed: the existing copy is the same. Dropping removes ours.
            return Ok(());
        }
        atomic.commit().map_err(io_at(&dest, "renaming into place"))?;
        self.added_files.push(dest);
        Ok(())
    }

    fn split_digest<'a>(&self, digest: &'a str) -> Result<(&'a str, &'a str)> {
        crate::model::digest::split_for_path(digest).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "invalid blob digest {digest:?} for OCI image layout {}: expected sha256:<64 lowercase hex> \
                 or sha512:<128 lowercase hex>",
                self.dest.display()
            ))
        })
    }
}

impl Drop for OciLayoutWriter {
    fn drop(&mut self) {
        // A new layout's temporary directory is removed by its AtomicDir.
        if self.committed || self.new_dir.is_some() {
            return;
        }
        for file in self.temp_files.drain(..).chain(self.added_files.drain(..).rev()) {
            let _ = fs::remove_file(file);
        }
        for dir in self.created_dirs.drain(..).rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Adds one entry to the index; returns whether the index changed.
fn apply_entry(index: &mut ImageIndex, descriptor: Descriptor, ref_name: Option<&str>) -> bool {
    let mut manifests = index.manifests().clone();
    let changed = apply_entry_to(&mut manifests, descriptor, ref_name);
    if changed {
        index.set_manifests(manifests);
    }
    changed
}

fn apply_entry_to(
    manifests: &mut Vec<Descriptor>,
    mut descriptor: Descriptor,
    ref_name: Option<&str>,
) -> bool {
    let Some(name) = ref_name else {
        if manifests.iter().any(|m| m.digest() == descriptor.digest()) {
            return false;
        }
        manifests.push(descriptor);
        return true;
    };
    let mut annotations = descriptor.annotations().clone().unwrap_or_default();
    annotations.insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
    descriptor.set_annotations(Some(annotations));

    let same_ref: Vec<usize> = (0..manifests.len())
        .filter(|&i| ref_name_of(&manifests[i]) == Some(name))
        .collect();
    match same_ref.as_slice() {
        [] => {
            manifests.push(descriptor);
            true
        }
        [only] if manifests[*only] == descriptor => false,
        [first, ..] => {
            // The tag moves: the first entry is replaced in place, any others dropped.
            let first = *first;
            manifests[first] = descriptor;
            let mut i = 0;
            manifests.retain(|m| {
                let keep = i == first || ref_name_of(m) != Some(name);
                i += 1;
                keep
            });
            true
        }
    }
}

fn ref_name_of(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(ANNOTATION_REF_NAME)
        .map(String::as_str)
}

fn empty_index() -> Result<ImageIndex> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .map_err(|e| Error::InvalidConfig(e.to_string()))
}

/// The layout's index, `None` when there is no index.json yet.
fn read_index(path: &Path) -> Result<Option<ImageIndex>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path, "reading")(e)),
    };
    ImageIndex::from_reader(bytes.as_slice())
        .map(Some)
        .map_err(|e| Error::InvalidConfig(format!("{} is not a valid OCI image index: {e}", path.display())))
}

fn layout_marker() -> Vec<u8> {
    serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION })
        .to_string()
        .into_bytes()
}

fn check_layout_marker(path: &Path, bytes: &[u8]) -> Result<()> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidConfig(format!("{} is not valid JSON: {e}", path.display())))?;
    match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(version) if version.split('.').next() == Some("1") => Ok(()),
        Some(version) => Err(Error::InvalidConfig(format!(
            "{}: unsupported imageLayoutVersion {version:?} (expected {LAYOUT_VERSION})",
            path.display()
        ))),
        None => Err(Error::InvalidConfig(format!(
            "{} has no imageLayoutVersion: not an OCI image layout",
            path.display()
        ))),
    }
}

/// Writes a whole file under a temporary name, syncs it and renames it into place.
fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    let atomic = write_temp(dest, bytes)?;
    atomic.commit().map_err(io_at(dest, "renaming into place"))
}

/// `bytes` written and synced under a temporary name beside `dest`.
fn write_temp(dest: &Path, bytes: &[u8]) -> Result<AtomicFile> {
    let (atomic, mut file) = AtomicFile::create(dest).map_err(io_at(dest, "creating"))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_at(atomic.temp_path(), "writing"))?;
    Ok(atomic)
}

/// Removes `.<name>.partial-<random>` files (see `atomic.rs`) left in the layout's root and
/// blob directories by a writer that did not get to clean up.
fn remove_stale_temp_files(root: &Path) {
    let mut dirs = vec![root.to_owned()];
    if let Ok(algorithms) = fs::read_dir(root.join(BLOBS_DIR)) {
        dirs.extend(algorithms.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.contains(".partial-") && entry.path().is_file() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Whether a hard link failed because linking cannot work here (so copying is right).
fn link_impossible(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::CrossesDevices
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::Unsupported
            | io::ErrorKind::TooManyLinks
    )
}

/// Maps an I/O error to `Error::Io` on `path`, keeping its kind and saying what failed.
fn io_at<'a>(path: &'a Path, action: &'a str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::io(path, io::Error::new(e.kind(), format!("{action}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;
    use std::time::{Duration, SystemTime};

    use oci_spec::image::{Arch, DescriptorBuilder, Os, PlatformBuilder};
    use serde_json::json;

    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

    /// A tiny real image: one gzip'd tar layer holding `hello.txt`.
    struct TestImage {
        file_content: String,
        manifest: Vec<u8>,
        manifest_digest: String,
        config: Vec<u8>,
        config_digest: String,
        layer: Vec<u8>,
        layer_digest: String,
        architecture: &'static str,
    }

    impl TestImage {
        fn new(file_content: &str, architecture: &'static str) -> Self {
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_ustar();
            header.set_size(file_content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, "hello.txt", file_content.as_bytes())
                .unwrap();
            let tar = tar.into_inner().unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&tar).unwrap();
            let layer = gz.finish().unwrap();
            let layer_digest = crate::model::digest::sha256(&layer);

            let config = serde_json::to_vec(&json!({
                "architecture": architecture,
                "os": "linux",
                "config": { "Cmd": ["/bin/sh"] },
                "rootfs": { "type": "layers", "diff_ids": [crate::model::digest::sha256(&tar)] },
                "history": [{ "created_by": "test" }],
            }))
            .unwrap();
            let config_digest = crate::model::digest::sha256(&config);

            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": { "mediaType": CONFIG, "digest": config_digest, "size": config.len() },
                "layers": [{ "mediaType": LAYER, "digest": layer_digest, "size": layer.len() }],
            }))
            .unwrap();
            let manifest_digest = crate::model::digest::sha256(&manifest);
            TestImage {
                file_content: file_content.to_owned(),
                manifest,
                manifest_digest,
                config,
                config_digest,
                layer,
                layer_digest,
                architecture,
            }
        }

        fn descriptor(&self) -> Descriptor {
            let platform = PlatformBuilder::default()
                .architecture(Arch::from(self.architecture))
                .os(Os::Linux)
                .build()
                .unwrap();
            DescriptorBuilder::default()
                .media_type(MediaType::ImageManifest)
                .digest(self.manifest_digest.parse::<oci_spec::image::Digest>().unwrap())
                .size(self.manifest.len() as u64)
                .platform(platform)
                .build()
                .unwrap()
        }

        /// Writes the blobs the way the pull engine does: small ones whole, the layer streamed.
        fn write_blobs(&self, writer: &mut OciLayoutWriter) {
            writer.put_blob(&self.config_digest, &self.config).unwrap();
            if !writer.has_blob(&self.layer_digest) {
                let (blob, mut file) = writer.blob_writer(&self.layer_digest).unwrap();
                file.write_all(&self.layer).unwrap();
                drop(file);
                writer.finish_blob(blob).unwrap();
            }
            writer.put_blob(&self.manifest_digest, &self.manifest).unwrap();
        }

        fn write(&self, dir: &Path, ref_name: &str) {
            let mut writer = OciLayoutWriter::open(dir).unwrap();
            self.write_blobs(&mut writer);
            writer.add_manifest(self.descriptor(), Some(ref_name));
            writer.commit().unwrap();
        }
    }

    fn index_of(dir: &Path) -> ImageIndex {
        ImageIndex::from_file(dir.join(INDEX_FILE)).unwrap()
    }

    fn ref_names(dir: &Path) -> Vec<(String, String)> {
        index_of(dir)
            .manifests()
            .iter()
            .map(|m| (ref_name_of(m).unwrap_or("").to_owned(), m.digest().to_string()))
            .collect()
    }

    /// Every file and directory under `dir`, relative, with its inode and (files only) mtime.
    fn files(dir: &Path) -> BTreeSet<(PathBuf, u64, Option<SystemTime>)> {
        let mut out = BTreeSet::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path.clone());
                }
                let rel = path.strip_prefix(dir).unwrap().to_owned();
                out.insert((rel, meta.ino(), meta.is_file().then(|| meta.modified().unwrap())));
            }
        }
        out
    }

    fn blob_files(dir: &Path) -> Vec<PathBuf> {
        let mut blobs: Vec<PathBuf> = files(&dir.join(BLOBS_DIR))
            .into_iter()
            .map(|(p, _, _)| p)
            .filter(|p| dir.join(BLOBS_DIR).join(p).is_file())
            .collect();
        blobs.sort();
        blobs
    }

    fn tool(name: &str) -> Command {
        let found = Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{name}` is required by this test and was not found on PATH; \
             run scripts/install-test-tools.sh to install it"
        );
        Command::new(name)
    }

    fn run(mut command: Command) -> Vec<u8> {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{command:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    #[test]
    fn oci_layout_new_image_has_the_expected_structure() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let image = TestImage::new("hello from the layer\n", "amd64");
        image.write(&dir, "v1");

        let entries: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            entries,
            vec!["layout"],
            "no temporary directory left beside the layout"
        );

        let marker: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(LAYOUT_FILE)).unwrap()).unwrap();
        assert_eq!(marker, json!({ "imageLayoutVersion": "1.0.0" }));

        let raw: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(INDEX_FILE)).unwrap()).unwrap();
        assert_eq!(raw["schemaVersion"], 2);
        assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
        let index = index_of(&dir);
        assert_eq!(index.manifests().len(), 1);
        let entry = &index.manifests()[0];
        assert_eq!(entry.digest().to_string(), image.manifest_digest);
        assert_eq!(entry.size(), image.manifest.len() as u64);
        assert_eq!(entry.media_type(), &MediaType::ImageManifest);
        assert_eq!(ref_name_of(entry), Some("v1"));
        assert_eq!(entry.platform().as_ref().unwrap().architecture(), &Arch::Amd64);

        let blobs = blob_files(&dir);
        assert_eq!(blobs.len(), 3, "{blobs:?}");
        for (digest, bytes) in [
            (&image.manifest_digest, &image.manifest),
            (&image.config_digest, &image.config),
            (&image.layer_digest, &image.layer),
        ] {
            let (alg, hex) = digest.split_once(':').unwrap();
            let stored = fs::read(dir.join("blobs").join(alg).join(hex)).unwrap();
            assert_eq!(&stored, bytes);
            assert_eq!(&crate::model::digest::sha256(&stored), digest);
        }
    }

    #[test]
    fn oci_layout_is_read_by_skopeo_and_umoci() {
        let skopeo = tool("skopeo");
        let umoci = tool("umoci");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let image = TestImage::new("content read back by umoci\n", "amd64");
        image.write(&dir, "v1");

        let mut inspect = skopeo;
        inspect.arg("inspect").arg(format!("oci:{}:v1", dir.display()));
        let info: serde_json::Value = serde_json::from_slice(&run(inspect)).unwrap();
        assert_eq!(info["Digest"], image.manifest_digest.as_str(), "{info}");
        assert_eq!(info["Layers"], json!([image.layer_digest]), "{info}");
        assert_eq!(info["Architecture"], "amd64", "{info}");
        assert_eq!(info["Os"], "linux", "{info}");

        let bundle = tmp.path().join("bundle");
        let mut unpack = umoci;
        unpack
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:v1", dir.display()))
            .arg(&bundle);
        run(unpack);
        let unpacked = fs::read_to_string(bundle.join("rootfs").join("hello.txt")).unwrap();
        assert_eq!(unpacked, image.file_content);
    }

    #[test]
    fn oci_layout_second_add_and_new_tag_do_not_duplicate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let image = TestImage::new("same image twice\n", "amd64");
        image.write(&dir, "v1");

        // Age every blob so that a rewrite would show in its mtime.
        let old = SystemTime::now() - Duration::from_secs(3600);
        for blob in blob_files(&dir) {
            File::options()
                .write(true)
                .open(dir.join(BLOBS_DIR).join(blob))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let before = files(&dir.join(BLOBS_DIR));

        image.write(&dir, "v1");
        assert_eq!(
            ref_names(&dir),
            vec![("v1".to_owned(), image.manifest_digest.clone())]
        );
        image.write(&dir, "v2");
        let names = ref_names(&dir);
        assert_eq!(
            names,
            vec![
                ("v1".to_owned(), image.manifest_digest.clone()),
                ("v2".to_owned(), image.manifest_digest.clone())
            ]
        );
        assert_eq!(blob_files(&dir).len(), 3);
        assert_eq!(
            files(&dir.join(BLOBS_DIR)),
            before,
            "blobs untouched (same inodes and mtimes)"
        );

        // An untagged add of a manifest already in the index adds nothing.
        let mut writer = OciLayoutWriter::open(&dir).unwrap();
        writer.add_manifest(image.descriptor(), None);
        writer.add_manifest(image.descriptor(), Some("v2"));
        writer.commit().unwrap();
        assert_eq!(ref_names(&dir), names);
    }

    #[test]
    fn oci_layout_retag_replaces_the_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let first = TestImage::new("first\n", "amd64");
        let second = TestImage::new("second\n", "amd64");
        first.write(&dir, "v1");
        first.write(&dir, "stable");
        second.write(&dir, "v1");
        assert_eq!(
            ref_names(&dir),
            vec![
                ("v1".to_owned(), second.manifest_digest.clone()),
                ("stable".to_owned(), first.manifest_digest.clone())
            ]
        );
        assert_eq!(blob_files(&dir).len(), 6, "both images' blobs are kept");
    }

    #[test]
    fn oci_layout_dropped_new_layout_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let image = TestImage::new("never committed\n", "amd64");
        let mut writer = OciLayoutWriter::open(&dir).unwrap();
        image.write_blobs(&mut writer);
        let (pending, mut file) = writer
            .blob_writer(&crate::model::digest::sha256(b"partial"))
            .unwrap();
        file.write_all(b"part").unwrap();
        writer.add_manifest(image.descriptor(), Some("v1"));
        assert!(
            writer
                .blob_path(&image.layer_digest)
                .unwrap()
                .starts_with(tmp.path())
        );
        assert!(!dir.exists(), "a new layout appears only on commit");
        drop(writer);
        drop(pending);
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "nothing left on disk"
        );
    }

    #[test]
    fn oci_layout_dropped_writer_leaves_existing_layout_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        TestImage::new("committed\n", "amd64").write(&dir, "v1");
        let index_before = fs::read(dir.join(INDEX_FILE)).unwrap();
        let files_before = files(&dir);

        let other = TestImage::new("dropped\n", "arm64");
        let mut writer = OciLayoutWriter::open(&dir).unwrap();
        other.write_blobs(&mut writer);
        // A sha512 blob creates blobs/sha512/, which must go too.
        let big = b"sha512 blob";
        let sha512 = format!(
            "sha512:{}",
            hex::encode(<sha2::Sha512 as sha2::Digest>::digest(big))
        );
        writer.put_blob(&sha512, big).unwrap();
        let cached = tmp.path().join("cached-layer");
        fs::write(&cached, b"cached").unwrap();
        assert!(
            writer
                .link_or_copy_blob(&crate::model::digest::sha256(b"cached"), &cached)
                .unwrap()
        );
        // Still alive when the layout writer is dropped: its temporary file goes with the writer.
        let (_unfinished, mut file) = writer
            .blob_writer(&crate::model::digest::sha256(b"unfinished"))
            .unwrap();
        file.write_all(b"unfin").unwrap();
        writer.add_manifest(other.descriptor(), Some("v1"));
        assert!(blob_files(&dir).len() > 3);
        drop(writer);

        assert_eq!(
            fs::read(dir.join(INDEX_FILE)).unwrap(),
            index_before,
            "index.json byte-identical"
        );
        assert_eq!(
            files(&dir),
            files_before,
            "no new blob, directory or temporary file left"
        );
        assert_eq!(fs::read(&cached).unwrap(), b"cached", "the linked source is kept");
        assert_eq!(fs::metadata(&cached).unwrap().nlink(), 1);
    }

    #[test]
    fn oci_layout_dropped_writer_leaves_an_empty_directory_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let image = TestImage::new("into an empty dir\n", "amd64");
        let mut writer = OciLayoutWriter::open(tmp.path()).unwrap();
        image.write_blobs(&mut writer);
        writer.add_manifest(image.descriptor(), Some("v1"));
        drop(writer);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);

        // Committed, the empty directory becomes a layout.
        image.write(tmp.path(), "v1");
        assert!(tmp.path().join(LAYOUT_FILE).is_file());
        assert_eq!(
            ref_names(tmp.path()),
            vec![("v1".to_owned(), image.manifest_digest.clone())]
        );
    }

    #[test]
    fn oci_layout_links_blobs_on_the_same_filesystem() {
        let tmp = tempfile::tempdir().unwrap();
        let cached = tmp.path().join("cache-blob");
        fs::write(&cached, b"layer from the cache").unwrap();
        let digest = crate::model::digest::sha256(b"layer from the cache");

        for dir in [tmp.path().join("new"), tmp.path().join("existing")] {
            if dir.ends_with("existing") {
                TestImage::new("x\n", "amd64").write(&dir, "v1");
            }
            let mut writer = OciLayoutWriter::open(&dir).unwrap();
            assert!(writer.link_or_copy_blob(&digest, &cached).unwrap(), "linked");
            assert!(
                !writer.link_or_copy_blob(&digest, &cached).unwrap(),
                "already there"
            );
            writer.commit().unwrap();
            let blob = dir
                .join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap());
            let (a, b) = (fs::metadata(&cached).unwrap(), fs::metadata(&blob).unwrap());
            assert_eq!(a.ino(), b.ino(), "same inode");
            assert_eq!(a.dev(), b.dev());
            assert_eq!(b.nlink(), 2);
            fs::remove_file(&blob).unwrap();
        }
    }

    #[test]
    fn oci_layout_copies_blobs_across_filesystems() {
        // /dev/shm is a tmpfs on Linux; when it is another filesystem than the temp dir, a
        // link is impossible and the blob must be copied.
        let shm = Path::new("/dev/shm");
        let tmp = tempfile::tempdir().unwrap();
        let Ok(other) = tempfile::tempdir_in(shm) else {
            eprintln!("skipped: no /dev/shm");
            return;
        };
        if fs::metadata(other.path()).unwrap().dev() == fs::metadata(tmp.path()).unwrap().dev() {
            eprintln!("skipped: /dev/shm is on the same filesystem as the temp dir");
            return;
        }
        let cached = other.path().join("blob");
        fs::write(&cached, b"copied").unwrap();
        let digest = crate::model::digest::sha256(b"copied");
        let dir = tmp.path().join("layout");
        let mut writer = OciLayoutWriter::open(&dir).unwrap();
        assert!(
            !writer.link_or_copy_blob(&digest, &cached).unwrap(),
            "copied, not linked"
        );
        writer.commit().unwrap();
        let blob = dir
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap());
        assert_eq!(fs::read(blob).unwrap(), b"copied");
        assert_eq!(fs::metadata(&cached).unwrap().nlink(), 1);
    }

    #[test]
    fn oci_layout_stores_a_whole_index() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let amd64 = TestImage::new("amd64 build\n", "amd64");
        let arm64 = TestImage::new("arm64 build\n", "arm64");
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [amd64.descriptor(), arm64.descriptor()],
        }))
        .unwrap();
        let index_digest = crate::model::digest::sha256(&index);

        let mut writer = OciLayoutWriter::open(&dir).unwrap();
        writer.put_blob(&index_digest, &index).unwrap();
        amd64.write_blobs(&mut writer);
        arm64.write_blobs(&mut writer);
        let descriptor = DescriptorBuilder::default()
            .media_type(MediaType::ImageIndex)
            .digest(index_digest.parse::<oci_spec::image::Digest>().unwrap())
            .size(index.len() as u64)
            .build()
            .unwrap();
        writer.add_manifest(descriptor, Some("all"));
        writer.commit().unwrap();

        let layout_index = index_of(&dir);
        assert_eq!(layout_index.manifests().len(), 1);
        let entry = &layout_index.manifests()[0];
        assert_eq!(entry.digest().to_string(), index_digest);
        assert_eq!(entry.media_type(), &MediaType::ImageIndex);
        assert_eq!(ref_name_of(entry), Some("all"));
        assert_eq!(blob_files(&dir).len(), 7);

        let mut inspect = tool("skopeo");
        inspect
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:all", dir.display()));
        assert_eq!(
            run(inspect),
            index,
            "skopeo returns the stored index byte for byte"
        );
    }

    #[test]
    fn oci_layout_refuses_a_directory_that_is_not_a_layout() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), b"mine").unwrap();
        let err = OciLayoutWriter::open(tmp.path()).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
        assert!(message.contains("not an OCI image layout"), "{message}");
        assert!(message.contains(&tmp.path().display().to_string()), "{message}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1, "nothing written");

        let file = tmp.path().join("notes.txt");
        let err = OciLayoutWriter::open(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");

        let bad = tmp.path().join("bad");
        fs::create_dir(&bad).unwrap();
        fs::write(bad.join(LAYOUT_FILE), br#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
        let err = OciLayoutWriter::open(&bad).unwrap_err().to_string();
        assert!(err.contains("imageLayoutVersion"), "{err}");
        fs::write(bad.join(LAYOUT_FILE), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        fs::write(bad.join(INDEX_FILE), b"{not json").unwrap();
        let err = OciLayoutWriter::open(&bad).unwrap_err().to_string();
        assert!(
            err.contains("index.json") && err.contains("not a valid OCI image index"),
            "{err}"
        );
    }

    #[test]
    fn oci_layout_is_locked_while_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        TestImage::new("locked\n", "amd64").write(&dir, "v1");
        let first = OciLayoutWriter::open(&dir).unwrap();
        let err = OciLayoutWriter::open(&dir).unwrap_err().to_string();
        assert!(err.contains("another writer"), "{err}");
        // Released while the next writer waits for it: taken.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        OciLayoutWriter::open(&dir).unwrap();
        release.join().unwrap();
    }

    #[test]
    fn oci_layout_rejects_malformed_digests() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        TestImage::new("digests\n", "amd64").write(&dir, "v1");
        let before = files(tmp.path());
        let hex64 = "a".repeat(64);
        let bad = [
            "sha256:../../../../escape".to_owned(),
            format!("sha256:../{}", &hex64[3..]),
            format!("sha256:{}", hex64.to_uppercase()),
            format!("sha256:{}", &hex64[1..]),
            format!("sha256:{hex64}0"),
            format!("sha512:{hex64}"),
            format!("md5:{}", &hex64[..32]),
            format!("sha256/{hex64}"),
            format!("sha256:{}/x", &hex64[2..]),
            hex64.clone(),
            String::new(),
        ];
        let source = tmp.path().join("source");
        fs::write(&source, b"x").unwrap();
        let before_with_source = files(tmp.path());
        let mut writer = OciLayoutWriter::open(&dir).unwrap();
        for digest in &bad {
            assert!(!writer.has_blob(digest), "{digest}");
            assert!(writer.blob_path(digest).is_err(), "{digest}");
            let err = writer.put_blob(digest, b"x").unwrap_err();
            assert!(matches!(err, Error::InvalidConfig(_)), "{digest}: {err:?}");
            assert!(err.to_string().contains("invalid blob digest"), "{err}");
            assert!(writer.link_or_copy_blob(digest, &source).is_err(), "{digest}");
            assert!(writer.blob_writer(digest).is_err(), "{digest}");
        }
        // A well-formed digest that does not match the bytes is refused too.
        let err = writer.put_blob(&format!("sha256:{hex64}"), b"x").unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
        assert_eq!(files(tmp.path()), before_with_source, "no file created anywhere");
        drop(writer);
        fs::remove_file(&source).unwrap();
        assert_eq!(files(tmp.path()), before);
    }

    #[test]
    fn oci_layout_commit_requires_the_manifest_blob() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let image = TestImage::new("missing manifest\n", "amd64");
        let mut writer = OciLayoutWriter::open(&dir).unwrap();
        writer.put_blob(&image.config_digest, &image.config).unwrap();
        writer.add_manifest(image.descriptor(), Some("v1"));
        let err = writer.commit().unwrap_err().to_string();
        assert!(err.contains(&image.manifest_digest), "{err}");
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "failed commit leaves nothing"
        );
    }

    #[test]
    fn oci_layout_removes_stale_temporary_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        TestImage::new("stale\n", "amd64").write(&dir, "v1");
        let stale = dir
            .join("blobs/sha256")
            .join(format!(".{}.partial-0123456789abcdef", "b".repeat(64)));
        fs::write(&stale, b"killed mid-download").unwrap();
        let writer = OciLayoutWriter::open(&dir).unwrap();
        assert!(!stale.exists());
        drop(writer);
    }
}
