//! A flattened root filesystem: an image's layers applied in order, with OCI/AUFS whiteouts,
//! written as one tar stream.
//!
//! # Design: one streaming pass from the top layer down
//!
//! Layers are read top layer first; each entry is written to the output as soon as it is read,
//! or skipped because a layer above already decided that path. What a layer records applies
//! only to the layers below it (OCI "Whiteouts": a whiteout never hides an entry of its own
//! layer), so a record carries its layer index and is checked with a strict `>`:
//!
//! - `nodes`: every path an upper layer put an entry at (with its layer, whether it is a
//!   directory, whether it was written). A lower entry at the same path is skipped; a lower
//!   entry *below* an upper non-directory is skipped too (a file replacing a directory removes
//!   the directory's lower contents); a directory replacing a file simply wins its path.
//! - `whiteouts`: `.wh.<name>` hides `<name>` and everything below it in lower layers.
//! - `opaque`: `.wh..wh..opq` in `D` hides everything below `D` in lower layers (not `D` itself).
//!
//! Why not two passes bottom-up: the layer readers are one-shot streams, so a second pass
//! would have to spool every layer to disk. One pass top-down reads each blob once and
//! never holds file contents; the price is the two ordering wrinkles below.
//!
//! **Memory** grows with the number of paths (three maps of path strings) plus one header per
//! deferred hard link, never with file sizes: data is copied entry by entry through a fixed
//! buffer.
//!
//! **Hard links.** A hard link whose target was written earlier from the same layer is written
//! at once. One whose target lives in a lower layer (not read yet) is deferred to the end of
//! the stream and written only if its target was written; otherwise it is dropped. A link whose
//! target is hidden by a layer above the link is dropped as well: the content it should keep
//! is no longer in the stream (an overlay mount would keep it; we cannot without spooling).
//!
//! **Parent directories.** Each layer's own tar lists a directory before its children, and
//! layers made by docker, buildkit and umoci carry the parent directories of what they change,
//! so the topmost (winning) entry of a directory is normally written before everything under
//! it. Only when a parent's sole entry lives in a lower layer than a child does the parent come
//! after that child. We keep it that way rather than buffer or synthesise entries (synthesised
//! parents would need metadata we have not read yet): tar extractors create missing parents
//! and apply the directory's metadata when its entry arrives (checked with GNU tar and the
//! `tar` crate, which both apply directory metadata last anyway; docker's and containerd's
//! layer appliers create missing parents as well).
//!
//! # Other choices
//!
//! - Layer tars are read as Go's `archive/tar` reads them (see `tar_reader`): a stream
//!   that stops right after the last entry's data is a whole archive.
//! - Paths are normalised lexically: `./a/b`, `a/b/`, `/a/b` and `a/x/../b` are all `a/b`,
//!   and `..` stops at the root (`../../etc/passwd` is `etc/passwd`), as containerd's
//!   applier and `umoci unpack` have it. A non-directory at the root itself is skipped.
//! - No entry is written below a symlink, so extracting the output never follows a link out
//!   of the root. An entry below a symlink of its own layer is written where the link leads,
//!   resolved inside the root (an absolute target starts at the root, `..` stops there), as
//!   containerd's `fs.RootPath` and umoci's `securejoin` resolve it; more than 255 links on
//!   one path skip the entry. A symlink (or any non-directory) at a path that entries already
//!   written lie below is skipped: those entries make it a directory. An entry below a
//!   symlink of a *higher* layer is hidden by it, as below any file. Symlink targets are
//!   kept verbatim (they are data, not paths we write to).
//! - A hard link's target is resolved the same way; a link whose target is not a regular
//!   file of the image is dropped with a warning.
//! - Output entries keep the input header (type, mode, uid/gid, uname/gname, mtime, device
//!   numbers) and the input's PAX records (xattrs `SCHILY.xattr.*`, sub-second times, ...)
//!   except `path`, `linkpath` and `size`, which are rewritten. Names or link names longer
//!   than the 100-byte header fields go out as PAX `path`/`linkpath` records. The root
//!   directory entry, if a layer has one, is written as `./`.
//! - Two entries at the same path within one layer (malformed, rare): the first one wins,
//!   where extracting that layer would leave the last one.
//! - AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`, ...) is skipped; PAX global headers and
//!   tar types with no filesystem meaning (volume labels, multi-volume continuations) too.
//!   Old GNU sparse files are written as regular files with their holes filled in.
//!
//! # Errors
//!
//! - A layer that is not valid gzip/zstd, or not a valid tar (bad checksum, truncated data,
//!   bad trailer), is [`Error::InvalidResponse`] with `host: "layer"` and a message naming the
//!   layer (1-based, bottom first); for an entry whose data stops short, the entry too. The decompressed stream is read to its end after the tar's
//!   end marker, so a damaged gzip/zstd trailer is caught too.
//! - An error returned by a layer *reader* itself is passed on: as the [`Error`] it wraps if the
//!   reader put one in an `io::Error` (`io::Error::other(err)`), else as [`Error::Io`].
//! - A failure writing `out` is [`Error::Io`]. After any error nothing more is written to
//!   `out` (no end-of-archive marker), so a partial output never looks complete.
//!
//! Layers are read top layer first: readers of lower layers stay untouched until their turn.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::rc::Rc;

use tar::{Builder, EntryType, Header};

use super::Compression;
use crate::error::{Error, Result};
use crate::formats::tar_reader::TarReader;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Largest size an octal `size` header field holds; larger ones also get a PAX `size` record.
const MAX_OCTAL_SIZE: u64 = 0o777_7777_7777;
/// Symlinks followed in one path before giving up on it, as containerd's `fs.RootPath` does.
const MAX_SYMLINKS: usize = 255;

/// Applies `layers` (bottom first, each a reader of the blob as stored plus its compression)
/// in order with OCI/AUFS whiteouts, writing one tar of the resulting filesystem to `out`.
///
/// See the [module documentation](self) for the semantics, ordering and errors.
pub fn flatten<W: Write>(layers: Vec<(Box<dyn Read + Send>, Compression)>, out: W) -> Result<W> {
    let mut builder = Builder::new(Output {
        inner: out,
        write_failed: false,
        closed: false,
    });
    match Flattener::default().run(layers, &mut builder) {
        Ok(()) => Ok(builder.into_inner()?.inner),
        Err(err) => {
            // `Builder` writes the end-of-archive marker when dropped; refuse it.
            builder.get_mut().closed = true;
            Err(err)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Node {
    layer: usize,
    dir: bool,
    written: bool,
}

/// A hard link waiting for its lower-layer target to be written.
struct DeferredLink {
    path: Vec<u8>,
    target: Vec<u8>,
    header: Header,
    pax: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct Flattener {
    /// Path → the (topmost) entry at it.
    nodes: HashMap<Vec<u8>, Node>,
    /// Whited-out path → topmost layer that whited it out.
    whiteouts: HashMap<Vec<u8>, usize>,
    /// Opaque directory → topmost layer that marked it opaque.
    opaque: HashMap<Vec<u8>, usize>,
    /// Every proper ancestor of a written path → the topmost layer that wrote below it:
    /// a directory there, whether or not a layer has an entry for it.
    parents: HashMap<Vec<u8>, usize>,
    /// The symlinks of the layer being read (path → target), the first at a path winning:
    /// later entries of that layer below them are written where they lead.
    layer_symlinks: HashMap<Vec<u8>, Vec<u8>>,
    deferred: Vec<DeferredLink>,
}

impl Flattener {
    fn run<W: Write>(
        &mut self,
        layers: Vec<(Box<dyn Read + Send>, Compression)>,
        out: &mut Builder<Output<W>>,
    ) -> Result<()> {
        let count = layers.len();
        for (index, (reader, compression)) in layers.into_iter().enumerate().rev() {
            let source_error = Rc::new(RefCell::new(None));
            let source = Source {
                inner: reader,
                error: Rc::clone(&source_error),
            };
            let result = match compression {
                Compression::None => self.apply_layer(index, source, out),
                Compression::Gzip => self.apply_layer(index, flate2::read::MultiGzDecoder::new(source), out),
                Compression::Zstd => zstd::stream::read::Decoder::new(source)
                    .and_then(|decoder| self.apply_layer(index, decoder, out)),
            };
            if let Err(err) = result {
                if out.get_ref().write_failed {
                    return Err(Error::from(err));
                }
                if let Some(source_err) = source_error.borrow_mut().take() {
                    return Err(from_reader_error(source_err));
                }
                let what = match compression {
                    Compression::None => "uncompressed",
                    Compression::Gzip => "gzip",
                    Compression::Zstd => "zstd",
                };
                return Err(Error::InvalidResponse {
                    host: "layer".to_owned(),
                    message: format!(
                        "layer {} of {count} ({what}): {}",
                        index + 1,
                        crate::error::display_chain(&err)
                    ),
                });
            }
        }
        self.write_deferred_links(out).map_err(Error::from)
    }

    fn apply_layer<R: Read, W: Write>(
        &mut self,
        layer: usize,
        reader: R,
        out: &mut Builder<W>,
    ) -> io::Result<()> {
        self.layer_symlinks.clear();
        let mut tar = TarReader::new(reader);
        tar.for_each_entry(|entry| self.apply_entry(layer, entry, out))?;
        // Read past the end-of-archive marker to the end of the stream, so that the
        // decompressor checks its trailer (gzip CRC and length, zstd frame end).
        io::copy(&mut tar.into_inner(), &mut io::sink())?;
        Ok(())
    }

    fn apply_entry<R: Read, W: Write>(
        &mut self,
        layer: usize,
        entry: &mut tar::Entry<'_, R>,
        out: &mut Builder<W>,
    ) -> io::Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let mut entry_type = entry.header().entry_type();
        match entry_type {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // Pre-POSIX tars mark directories with a trailing slash only.
                if raw_path.ends_with(b"/") && entry.size() == 0 {
                    entry_type = EntryType::Directory;
                } else if entry_type == EntryType::Continuous {
                    entry_type = EntryType::Regular;
                }
            }
            EntryType::Link
            | EntryType::Symlink
            | EntryType::Char
            | EntryType::Block
            | EntryType::Directory
            | EntryType::Fifo => {}
            EntryType::XGlobalHeader => return Ok(()),
            other => {
                tracing::warn!(path = %String::from_utf8_lossy(&raw_path), kind = ?other, "skipping tar entry of unsupported type");
                return Ok(());
            }
        }
        let Some(path) = self.resolve(&normalize(&raw_path)) else {
            tracing::warn!(path = %String::from_utf8_lossy(&raw_path), "skipping tar entry: too many symlinks on its path");
            return Ok(());
        };
        if path.is_empty() && !entry_type.is_dir() {
            tracing::warn!(path = %String::from_utf8_lossy(&raw_path), kind = ?entry_type, "skipping tar entry at the root that is not a directory");
            return Ok(());
        }
        let (parent, name) = split_parent(&path);

        if name == OPAQUE_MARKER {
            self.opaque.entry(parent.to_vec()).or_insert(layer);
            return Ok(());
        }
        if path
            .split(|&b| b == b'/')
            .any(|part| part.starts_with(WHITEOUT_META_PREFIX))
        {
            return Ok(()); // AUFS metadata
        }
        if let Some(hidden_name) = name.strip_prefix(WHITEOUT_PREFIX) {
            if !matches!(hidden_name, b"" | b"." | b"..") {
                self.whiteouts.entry(join(parent, hidden_name)).or_insert(layer);
            }
            return Ok(());
        }

        if self.hidden(&path, layer, true) {
            return Ok(());
        }
        if !entry_type.is_dir() && self.parents.get(&path).is_some_and(|&l| l >= layer) {
            // Entries read before this one (from above, or earlier in this layer) lie below
            // this path: it stays their directory. A symlink here would lead them elsewhere.
            tracing::debug!(path = %String::from_utf8_lossy(&path), "skipping entry where a directory's contents already are");
            return Ok(());
        }

        if entry_type.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .and_then(|target| self.resolve(&normalize(&target)));
            let Some(target) = target.filter(|target| !target.is_empty()) else {
                tracing::warn!(path = %String::from_utf8_lossy(&path), "skipping hard link without a file for a target");
                return Ok(());
            };
            let pax = forwarded_pax(entry)?;
            let header = entry.header().clone();
            self.nodes.insert(
                path.clone(),
                Node {
                    layer,
                    dir: false,
                    written: false,
                },
            );
            match self.nodes.get(&target) {
                Some(node) if node.written && node.layer == layer => {
                    if !node.dir {
                        write_entry(out, header, &path, false, Some(&target), &pax, 0, io::empty())?;
                        self.mark_written(&path, layer);
                    }
                }
                _ if self.hidden(&target, layer, false) => {
                    tracing::debug!(path = %String::from_utf8_lossy(&path), "dropping hard link to a removed file");
                }
                _ => self.deferred.push(DeferredLink {
                    path,
                    target,
                    header,
                    pax,
                }),
            }
            return Ok(());
        }

        let dir = entry_type.is_dir();
        let link = if entry_type.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default();
            self.layer_symlinks
                .entry(path.clone())
                .or_insert_with(|| target.clone());
            Some(target)
        } else {
            None
        };
        let size = match entry_type {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => entry.size(),
            _ => 0,
        };
        let pax = forwarded_pax(entry)?;
        let mut header = entry.header().clone();
        if entry_type != header.entry_type() {
            header.set_entry_type(entry_type);
        }
        let data = ExactReader {
            inner: entry,
            remaining: size,
        };
        write_entry(out, header, &path, dir, link.as_deref(), &pax, size, data)?;
        self.nodes.insert(
            path.clone(),
            Node {
                layer,
                dir,
                written: false,
            },
        );
        self.mark_written(&path, layer);
        Ok(())
    }

    /// `path` (normalised) with its parent resolved through the symlinks of the layer being
    /// read, inside the root, as containerd's applier (`fs.RootPath`) resolves it: an
    /// absolute target starts again at the root and `..` stops at the root. The last
    /// component is not followed (an entry there replaces it). `None` after too many links.
    fn resolve(&self, path: &[u8]) -> Option<Vec<u8>> {
        let through_symlink = ancestors(path).any(|a| self.layer_symlinks.contains_key(a));
        if !through_symlink {
            return Some(path.to_vec());
        }
        let (parent, name) = split_parent(path);
        let mut resolved: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<Vec<u8>> = parent.split(|&b| b == b'/').rev().map(<[u8]>::to_vec).collect();
        let mut followed = 0;
        while let Some(part) = pending.pop() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    resolved.pop();
                    continue;
                }
                _ => resolved.push(part),
            }
            let Some(target) = self.layer_symlinks.get(&resolved.join(&b'/')) else {
                continue;
            };
            followed += 1;
            if followed > MAX_SYMLINKS {
                return None;
            }
            resolved.pop();
            if target.starts_with(b"/") {
                resolved.clear();
            }
            pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
        }
        resolved.push(name.to_vec());
        Some(normalize(&resolved.join(&b'/')))
    }

    /// Whether an entry at `path` in `layer` is hidden by what the layers above recorded
    /// (and, with `same_layer`, by an earlier entry of the same layer at that path or at a
    /// non-directory ancestor).
    fn hidden(&self, path: &[u8], layer: usize, same_layer: bool) -> bool {
        let covers = |node: &Node| node.layer > layer || (same_layer && node.layer == layer);
        let above = |map: &HashMap<Vec<u8>, usize>, key: &[u8]| map.get(key).is_some_and(|&l| l > layer);
        if self.nodes.get(path).is_some_and(covers) || above(&self.whiteouts, path) {
            return true;
        }
        ancestors(path).any(|ancestor| {
            above(&self.opaque, ancestor)
                || above(&self.whiteouts, ancestor)
                || self
                    .nodes
                    .get(ancestor)
                    .is_some_and(|node| !node.dir && covers(node))
        })
    }

    /// Records that `path` went out, from `layer`: its node, and the directories above it.
    fn mark_written(&mut self, path: &[u8], layer: usize) {
        if let Some(node) = self.nodes.get_mut(path) {
            node.written = true;
        }
        for ancestor in ancestors(path) {
            self.parents.entry(ancestor.to_vec()).or_insert(layer);
        }
    }

    /// Writes the deferred hard links whose targets were written; drops the others.
    fn write_deferred_links<W: Write>(&mut self, out: &mut Builder<W>) -> io::Result<()> {
        // Bottom layers first: a link to a link is then usually resolved in one round.
        let mut pending: Vec<DeferredLink> = std::mem::take(&mut self.deferred).into_iter().rev().collect();
        loop {
            let before = pending.len();
            let mut waiting = Vec::new();
            for link in pending {
                let target = self.nodes.get(&link.target);
                if target.is_some_and(|node| node.written && !node.dir) {
                    let DeferredLink {
                        path,
                        target,
                        header,
                        pax,
                    } = link;
                    let layer = self.nodes.get(&path).map_or(0, |node| node.layer);
                    write_entry(out, header, &path, false, Some(&target), &pax, 0, io::empty())?;
                    self.mark_written(&path, layer);
                } else {
                    waiting.push(link);
                }
            }
            pending = waiting;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        for link in pending {
            tracing::warn!(
                path = %String::from_utf8_lossy(&link.path),
                target = %String::from_utf8_lossy(&link.target),
                "dropping hard link: its target is not a file of the image"
            );
        }
        Ok(())
    }
}

/// Writes one entry: `header` as read, with the name, link name and size replaced.
#[allow(clippy::too_many_arguments)]
fn write_entry<W: Write>(
    out: &mut Builder<W>,
    mut header: Header,
    path: &[u8],
    dir: bool,
    link: Option<&[u8]>,
    pax: &[(String, Vec<u8>)],
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let name = if path.is_empty() {
        b"./".to_vec()
    } else if dir {
        [path, b"/"].concat()
    } else {
        path.to_vec()
    };
    let size_text = size.to_string();
    let mut records: Vec<(&str, &[u8])> = pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();

    if header.entry_type().is_gnu_sparse() {
        header.set_entry_type(EntryType::Regular);
        if let Some(gnu) = header.as_gnu_mut() {
            for block in gnu.sparse.iter_mut() {
                block.offset = [0; 12];
                block.numbytes = [0; 12];
            }
            gnu.isextended = [0];
            gnu.realsize = [0; 12];
        }
    }
    if let Some(ustar) = header.as_ustar_mut() {
        ustar.prefix = [0; 155];
    }
    if !set_field(&mut header.as_old_mut().name, &name) {
        records.push(("path", &name));
    }
    if !set_field(&mut header.as_old_mut().linkname, link.unwrap_or_default()) {
        records.push(("linkpath", link.unwrap_or_default()));
    }
    header.set_size(size);
    if size > MAX_OCTAL_SIZE {
        records.push(("size", size_text.as_bytes()));
    }
    header.set_cksum();
    if !records.is_empty() {
        out.append_pax_extensions(records)?;
    }
    out.append(&header, data)
}

/// Copies `value` into a fixed header field; when it does not fit, stores a truncated copy
/// (for readers that ignore PAX) and returns false.
fn set_field(slot: &mut [u8], value: &[u8]) -> bool {
    slot.fill(0);
    let fits = value.len() <= slot.len() && !value.contains(&0);
    let len = value.len().min(slot.len());
    slot[..len].copy_from_slice(&value[..len]);
    fits
}

/// The entry's PAX records to carry over (all but the ones `write_entry` rewrites).
fn forwarded_pax<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut records = Vec::new();
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions {
            let extension = extension?;
            let Ok(key) = extension.key() else { continue };
            if matches!(key, "path" | "linkpath" | "size") || key.starts_with("GNU.sparse.") {
                continue;
            }
            records.push((key.to_owned(), extension.value_bytes().to_vec()));
        }
    }
    Ok(records)
}

/// Lexical normalisation: no leading `/` or `./`, no trailing `/`, no `.` or empty
/// components, `..` resolved and stopping at the root (`/../etc` is `etc`), as a chroot,
/// containerd and umoci have it. The root is empty.
fn normalize(raw: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join(&b'/')
}

/// `(parent, name)` of a normalised path; the root's parent is the root.
fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

/// The proper ancestors of a normalised path, the root (empty) first.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let root = (!path.is_empty()).then_some(&path[..0]);
    let inner = path
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(move |(i, _)| &path[..i]);
    root.into_iter().chain(inner)
}

/// An error from a layer reader: the crate error it carries, or `Error::Io`.
fn from_reader_error(err: io::Error) -> Error {
    if !err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Error::from(err);
    }
    match err.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(inner)) => *inner,
        Some(Err(other)) => Error::from(io::Error::other(other)),
        None => Error::from(io::Error::other("layer reader failed")),
    }
}

/// The raw layer reader; remembers its own errors so they are not blamed on the layer's format.
struct Source {
    inner: Box<dyn Read + Send>,
    error: Rc<RefCell<Option<io::Error>>>,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(err) if err.kind() != io::ErrorKind::Interrupted => {
                let copy = io::Error::new(err.kind(), err.to_string());
                *self.error.borrow_mut() = Some(err);
                Err(copy)
            }
            result => result,
        }
    }
}

/// An entry's data, which must be exactly `remaining` bytes long (a short read is a truncated layer).
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tar entry data ends early (truncated layer)",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The output: remembers write failures, and can be closed so nothing more reaches it.
struct Output<W> {
    inner: W,
    write_failed: bool,
    closed: bool,
}

impl<W> Output<W> {
    fn check(&self) -> io::Result<()> {
        if self.closed {
            Err(io::Error::other("flattening failed; output closed"))
        } else {
            Ok(())
        }
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.inner.write(buf).inspect_err(|_| self.write_failed = true)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.inner.flush().inspect_err(|_| self.write_failed = true)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Cursor;
    use std::path::Path;
    use std::process::Command;

    use tar::Archive;

    use super::*;

    const MTIME: u64 = 1_700_000_000;
    type LayerInput = (Box<dyn Read + Send>, Compression);

    // ---- building layers ----

    struct Layer {
        builder: Builder<Vec<u8>>,
    }

    fn layer() -> Layer {
        Layer {
            builder: Builder::new(Vec::new()),
        }
    }

    fn raw_set(slot: &mut [u8], value: &[u8]) {
        slot.fill(0);
        slot[..value.len()].copy_from_slice(value);
    }

    impl Layer {
        fn header(kind: EntryType, mode: u32, size: u64) -> Header {
            let mut header = Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(1000);
            header.set_gid(1000);
            header.set_username("user").unwrap();
            header.set_groupname("group").unwrap();
            header.set_mtime(MTIME);
            header.set_size(size);
            header
        }

        /// Short names are written raw (so `..` and `/abs` survive); long ones as GNU long names.
        fn add(mut self, mut header: Header, path: &str, link: Option<&str>, data: &[u8]) -> Self {
            if path.len() <= 100 && link.is_none_or(|l| l.len() <= 100) {
                raw_set(&mut header.as_old_mut().name, path.as_bytes());
                raw_set(
                    &mut header.as_old_mut().linkname,
                    link.unwrap_or_default().as_bytes(),
                );
                header.set_cksum();
                self.builder.append(&header, data).unwrap();
            } else if let Some(link) = link {
                self.builder.append_link(&mut header, path, link).unwrap();
            } else {
                self.builder.append_data(&mut header, path, data).unwrap();
            }
            self
        }

        /// A header with its name already set.
        fn raw(mut self, header: &Header, data: &[u8]) -> Self {
            self.builder.append(header, data).unwrap();
            self
        }

        fn dir(self, path: &str, mode: u32) -> Self {
            self.add(Self::header(EntryType::Directory, mode, 0), path, None, b"")
        }

        fn file(self, path: &str, mode: u32, content: &str) -> Self {
            let header = Self::header(EntryType::Regular, mode, content.len() as u64);
            self.add(header, path, None, content.as_bytes())
        }

        fn symlink(self, path: &str, target: &str) -> Self {
            self.add(
                Self::header(EntryType::Symlink, 0o777, 0),
                path,
                Some(target),
                b"",
            )
        }

        fn hardlink(self, path: &str, target: &str) -> Self {
            self.add(Self::header(EntryType::Link, 0o644, 0), path, Some(target), b"")
        }

        fn device(self, kind: EntryType, path: &str, major: u32, minor: u32) -> Self {
            let mut header = Self::header(kind, 0o666, 0);
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
            self.add(header, path, None, b"")
        }

        fn fifo(self, path: &str) -> Self {
            self.add(Self::header(EntryType::Fifo, 0o600, 0), path, None, b"")
        }

        /// PAX records for the next entry.
        fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
            self.builder
                .append_pax_extensions(records.iter().copied())
                .unwrap();
            self
        }

        fn tar(self) -> Vec<u8> {
            self.builder.into_inner().unwrap()
        }

        fn plain(self) -> LayerInput {
            (Box::new(Cursor::new(self.tar())), Compression::None)
        }

        fn gzip_bytes(self) -> Vec<u8> {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&self.tar()).unwrap();
            encoder.finish().unwrap()
        }

        fn gzip(self) -> LayerInput {
            (Box::new(Cursor::new(self.gzip_bytes())), Compression::Gzip)
        }

        fn zstd_bytes(self) -> Vec<u8> {
            zstd::encode_all(Cursor::new(self.tar()), 3).unwrap()
        }

        fn zstd(self) -> LayerInput {
            (Box::new(Cursor::new(self.zstd_bytes())), Compression::Zstd)
        }
    }

    // ---- reading the output ----

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Kind {
        File(String),
        Dir,
        Symlink(String),
        HardLink(String),
        Char(u32, u32),
        Block(u32, u32),
        Fifo,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Item {
        kind: Kind,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        xattrs: BTreeMap<String, Vec<u8>>,
    }

    impl Item {
        fn new(kind: Kind, mode: u32) -> Item {
            Item {
                kind,
                mode,
                uid: 1000,
                gid: 1000,
                mtime: MTIME,
                xattrs: BTreeMap::new(),
            }
        }
    }

    fn file(mode: u32, content: &str) -> Item {
        Item::new(Kind::File(content.to_owned()), mode)
    }

    fn dir(mode: u32) -> Item {
        Item::new(Kind::Dir, mode)
    }

    fn symlink(target: &str) -> Item {
        Item::new(Kind::Symlink(target.to_owned()), 0o777)
    }

    fn hardlink(target: &str) -> Item {
        Item::new(Kind::HardLink(target.to_owned()), 0o644)
    }

    struct Output {
        order: Vec<String>,
        items: BTreeMap<String, Item>,
    }

    impl Output {
        fn position(&self, path: &str) -> usize {
            self.order
                .iter()
                .position(|p| p == path)
                .unwrap_or_else(|| panic!("{path} not in output"))
        }
    }

    fn read_output(tar: &[u8]) -> Output {
        let mut archive = Archive::new(tar);
        let mut order = Vec::new();
        let mut items = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let raw = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let path = match raw.trim_end_matches('/') {
                "" | "." => ".".to_owned(),
                p => p.to_owned(),
            };
            assert!(
                !path.split('/').any(|c| c.starts_with(".wh.") || c == ".."),
                "whiteout or `..` in output: {raw}"
            );
            let header = entry.header().clone();
            let link = || String::from_utf8(entry.link_name_bytes().unwrap().into_owned()).unwrap();
            let device = || {
                (
                    header.device_major().unwrap().unwrap(),
                    header.device_minor().unwrap().unwrap(),
                )
            };
            let kind = match header.entry_type() {
                EntryType::Regular => Kind::File(String::new()),
                EntryType::Directory => Kind::Dir,
                EntryType::Symlink => Kind::Symlink(link()),
                EntryType::Link => Kind::HardLink(link()),
                EntryType::Char => Kind::Char(device().0, device().1),
                EntryType::Block => Kind::Block(device().0, device().1),
                EntryType::Fifo => Kind::Fifo,
                other => panic!("unexpected entry type {other:?} at {raw}"),
            };
            let mut xattrs = BTreeMap::new();
            if let Some(extensions) = entry.pax_extensions().unwrap() {
                for extension in extensions {
                    let extension = extension.unwrap();
                    if let Some(name) = extension.key().unwrap().strip_prefix("SCHILY.xattr.") {
                        xattrs.insert(name.to_owned(), extension.value_bytes().to_vec());
                    }
                }
            }
            let kind = match kind {
                Kind::File(_) => {
                    let mut content = String::new();
                    entry.read_to_string(&mut content).unwrap();
                    Kind::File(content)
                }
                other => other,
            };
            let item = Item {
                kind,
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                mtime: header.mtime().unwrap(),
                xattrs,
            };
            assert!(items.insert(path.clone(), item).is_none(), "{path} written twice");
            order.push(path);
        }
        Output { order, items }
    }

    fn run(layers: Vec<LayerInput>) -> Output {
        read_output(&flatten(layers, Vec::new()).unwrap())
    }

    fn expect(pairs: Vec<(&str, Item)>) -> BTreeMap<String, Item> {
        pairs.into_iter().map(|(p, i)| (p.to_owned(), i)).collect()
    }

    fn assert_items(got: &Output, want: BTreeMap<String, Item>) {
        for (path, item) in &want {
            assert_eq!(got.items.get(path), Some(item), "at {path}");
        }
        let extra: Vec<_> = got.items.keys().filter(|p| !want.contains_key(*p)).collect();
        assert!(extra.is_empty(), "unexpected paths in output: {extra:?}");
    }

    // ---- tests ----

    #[test]
    fn rootfs_whiteouts_replacements_and_opaque_dirs() {
        let l0 = layer()
            .dir("a", 0o755)
            .file("a/f1", 0o644, "one")
            .file("a/f2", 0o644, "two")
            .dir("d", 0o755)
            .file("d/x", 0o644, "x")
            .dir("d/sub", 0o755)
            .file("d/sub/y", 0o644, "y")
            .dir("o", 0o755)
            .file("o/lower", 0o644, "l")
            .dir("o/lowdir", 0o755)
            .file("o/lowdir/z", 0o644, "z")
            .dir("q", 0o750)
            .file("q/old", 0o644, "old")
            .file("keep", 0o644, "k")
            .file("same", 0o644, "s0");
        let l1 = layer()
            .file("a/f1", 0o600, "ONE")
            .file("a/.wh.f2", 0o644, "")
            .file(".wh.d", 0o644, "")
            .dir("o", 0o700)
            .file("o/.wh..wh..opq", 0o644, "")
            .file("o/upper", 0o644, "u")
            .dir("o/updir", 0o755)
            .file("q/.wh..wh..opq", 0o644, "")
            .file("q/new", 0o644, "new")
            // Whiteouts of paths only this layer has: no effect on this layer's own entries.
            .file(".wh.same2", 0o644, "")
            .file("same2", 0o644, "s2")
            .file("same3", 0o644, "s3")
            .file(".wh.same3", 0o644, "")
            .file(".wh.nothing", 0o644, "");
        let l2 = layer().dir("d", 0o711).file("d/new", 0o644, "back");
        let got = run(vec![l0.plain(), l1.plain(), l2.plain()]);
        assert_items(
            &got,
            expect(vec![
                ("a", dir(0o755)),
                ("a/f1", file(0o600, "ONE")),
                ("d", dir(0o711)),
                ("d/new", file(0o644, "back")),
                ("o", dir(0o700)),
                ("o/upper", file(0o644, "u")),
                ("o/updir", dir(0o755)),
                ("q", dir(0o750)),
                ("q/new", file(0o644, "new")),
                ("keep", file(0o644, "k")),
                ("same", file(0o644, "s0")),
                ("same2", file(0o644, "s2")),
                ("same3", file(0o644, "s3")),
            ]),
        );
    }

    #[test]
    fn rootfs_file_and_directory_replace_each_other() {
        let l0 = || {
            layer()
                .file("p", 0o644, "p")
                .dir("q", 0o755)
                .file("q/child", 0o644, "c")
                .dir("q/deep", 0o755)
                .file("q/deep/x", 0o644, "x")
                .symlink("r", "p")
        };
        let l1 = || {
            layer()
                .dir("p", 0o700)
                .file("p/new", 0o644, "n")
                .file("q", 0o600, "q")
                .dir("r", 0o755)
        };
        let got = run(vec![l0().plain(), l1().plain()]);
        assert_items(
            &got,
            expect(vec![
                ("p", dir(0o700)),
                ("p/new", file(0o644, "n")),
                ("q", file(0o600, "q")),
                ("r", dir(0o755)),
            ]),
        );
        // A third layer turns the directory back into a file: its contents go too.
        let l2 = layer().file("p", 0o644, "file again").symlink("q", "p");
        let got = run(vec![l0().plain(), l1().plain(), l2.plain()]);
        assert_items(
            &got,
            expect(vec![
                ("p", file(0o644, "file again")),
                ("q", symlink("p")),
                ("r", dir(0o755)),
            ]),
        );
    }

    #[test]
    fn rootfs_special_entries_links_long_names_and_xattrs() {
        let long_gnu = format!("deep/{}/file", "g".repeat(190));
        let long_pax = format!("deep/{}/pax", "p".repeat(190));
        let long_ustar = format!("deep/{}/u", "u".repeat(120)); // fits the ustar prefix field
        let long_target = format!("/usr/lib/{}", "t".repeat(150));
        assert!(long_gnu.len() >= 200);

        let mut ustar_header = Header::new_ustar();
        ustar_header.set_entry_type(EntryType::Regular);
        ustar_header.set_mode(0o644);
        ustar_header.set_uid(1000);
        ustar_header.set_gid(1000);
        ustar_header.set_mtime(MTIME);
        ustar_header.set_size(1);
        ustar_header.set_path(&long_ustar).unwrap();
        ustar_header.set_cksum();
        assert!(!ustar_header.as_ustar().unwrap().prefix.iter().all(|&b| b == 0));

        let l0 = layer()
            .dir("bin", 0o755)
            .file("bin/tool", 0o4755, "tool")
            .dir("tmp", 0o1777)
            .symlink("bin/sh", "tool")
            .hardlink("bin/same-layer-hard", "bin/tool")
            .file("t", 0o644, "target")
            .file("gone", 0o644, "gone")
            .hardlink("gone-hard", "gone")
            .file("x1", 0o644, "x1")
            .device(EntryType::Char, "dev/null", 1, 3)
            .device(EntryType::Block, "dev/sda", 8, 0)
            .fifo("run/fifo")
            .file(&long_gnu, 0o644, "gnu long")
            .pax(&[("path", long_pax.as_bytes())])
            .file("placeholder", 0o644, "pax long")
            .raw(&ustar_header, b"u")
            .symlink("long-symlink", &long_target)
            .pax(&[
                ("SCHILY.xattr.user.key", b"value"),
                (
                    "SCHILY.xattr.security.capability",
                    b"\x01\x00\x00\x02\x00\x20\x00\x00",
                ),
            ])
            .file("caps", 0o755, "cap");
        let l1 = layer()
            .hardlink("lower-hard", "t")
            .hardlink("lower-long-hard", &long_gnu)
            .hardlink("x1-hard", "x1")
            .file(".wh.gone", 0o644, "")
            .file("l1file", 0o644, "l1")
            .hardlink("l1hard", "l1file");
        let l2 = layer().file(".wh.x1", 0o644, "");
        let got = run(vec![l0.plain(), l1.plain(), l2.plain()]);

        let mut caps = file(0o755, "cap");
        caps.xattrs.insert("user.key".into(), b"value".to_vec());
        caps.xattrs.insert(
            "security.capability".into(),
            b"\x01\x00\x00\x02\x00\x20\x00\x00".to_vec(),
        );
        let mut null = Item::new(Kind::Char(1, 3), 0o666);
        null.mode = 0o666;
        assert_items(
            &got,
            expect(vec![
                ("bin", dir(0o755)),
                ("bin/tool", file(0o4755, "tool")),
                ("tmp", dir(0o1777)),
                ("bin/sh", symlink("tool")),
                ("bin/same-layer-hard", hardlink("bin/tool")),
                ("t", file(0o644, "target")),
                ("dev/null", null),
                ("dev/sda", Item::new(Kind::Block(8, 0), 0o666)),
                ("run/fifo", Item::new(Kind::Fifo, 0o600)),
                (&long_gnu, file(0o644, "gnu long")),
                (&long_pax, file(0o644, "pax long")),
                (&long_ustar, file(0o644, "u")),
                ("long-symlink", symlink(&long_target)),
                ("caps", caps),
                ("lower-hard", hardlink("t")),
                ("lower-long-hard", hardlink(&long_gnu)),
                ("l1file", file(0o644, "l1")),
                ("l1hard", hardlink("l1file")),
            ]),
        );
        // Hard links to lower-layer files come after their targets.
        assert!(got.position("lower-hard") > got.position("t"));
        assert!(got.position("lower-long-hard") > got.position(&long_gnu));
        assert!(got.position("l1hard") > got.position("l1file"));
        assert!(got.position("bin/same-layer-hard") > got.position("bin/tool"));
    }

    #[test]
    fn rootfs_hard_link_chains_across_layers() {
        let l0 = layer().file("f", 0o644, "data");
        let l1 = layer().hardlink("h1", "f");
        let l2 = layer().hardlink("h2", "h1");
        let got = run(vec![l0.plain(), l1.plain(), l2.plain()]);
        assert_items(
            &got,
            expect(vec![
                ("f", file(0o644, "data")),
                ("h1", hardlink("f")),
                ("h2", hardlink("h1")),
            ]),
        );
        assert!(got.position("f") < got.position("h1"));
        assert!(got.position("h1") < got.position("h2"));
    }

    #[test]
    fn rootfs_mixed_compression() {
        let l0 = layer()
            .dir("etc", 0o755)
            .file("etc/a", 0o644, "gz")
            .file("etc/b", 0o644, "gz");
        let l1 = layer().file("etc/b", 0o644, "zst").file("etc/.wh.a", 0o644, "");
        let l2 = layer().file("etc/c", 0o644, "plain");
        let got = run(vec![l0.gzip(), l1.zstd(), l2.plain()]);
        assert_items(
            &got,
            expect(vec![
                ("etc", dir(0o755)),
                ("etc/b", file(0o644, "zst")),
                ("etc/c", file(0o644, "plain")),
            ]),
        );
    }

    fn big_layer() -> Layer {
        let content: String = (0..20_000)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        layer().file("one", 0o644, &content).file("two", 0o644, &content)
    }

    fn assert_layer_error(result: Result<Vec<u8>>, what: &str) {
        match result {
            Err(Error::InvalidResponse { host, message }) => {
                assert_eq!(host, "layer", "{what}");
                assert!(message.contains("layer 1 of 2"), "{what}: {message}");
            }
            other => panic!("{what}: expected an invalid layer error, got {other:?}"),
        }
    }

    #[test]
    fn rootfs_corrupt_layers_are_errors() {
        let top = || layer().file("top", 0o644, "t").plain();
        let gz = big_layer().gzip_bytes();
        let zst = big_layer().zstd_bytes();
        let tar = big_layer().tar();
        let cases: Vec<(&str, Vec<u8>, Compression)> = vec![
            ("truncated gzip", gz[..gz.len() / 2].to_vec(), Compression::Gzip),
            (
                "gzip without trailer",
                gz[..gz.len() - 4].to_vec(),
                Compression::Gzip,
            ),
            ("garbage gzip", b"not gzip at all".to_vec(), Compression::Gzip),
            ("truncated zstd", zst[..zst.len() / 2].to_vec(), Compression::Zstd),
            ("truncated tar", tar[..tar.len() / 3].to_vec(), Compression::None),
            (
                "tar cut in the first entry's data",
                tar[..700].to_vec(),
                Compression::None,
            ),
            (
                "tar cut in the second header",
                tar[..512 + 20_480 + 100].to_vec(),
                Compression::None,
            ),
        ];
        for (what, bytes, compression) in cases {
            let mut out = Vec::new();
            let result = flatten(vec![(Box::new(Cursor::new(bytes)), compression), top()], &mut out);
            assert_layer_error(result.map(|_| Vec::new()), what);
            // Nothing that looks like a complete archive is left behind.
            assert!(
                !out.ends_with(&[0; 1024]),
                "{what}: end-of-archive marker written"
            );
        }
    }

    struct FailingReader(fn() -> io::Error);

    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err((self.0)())
        }
    }

    #[derive(Debug)]
    struct FailingWriter;

    impl Write for FailingWriter {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rootfs_reader_and_writer_errors_pass_through() {
        let reader = |f: fn() -> io::Error| -> LayerInput { (Box::new(FailingReader(f)), Compression::Gzip) };
        let err = flatten(vec![reader(|| io::Error::other("boom"))], Vec::new()).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source: e, .. } if e.to_string() == "boom"),
            "{err:?}"
        );
        let err = flatten(
            vec![reader(|| {
                io::Error::other(Error::Timeout {
                    host: "registry.example".into(),
                })
            })],
            Vec::new(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Timeout { host } if host == "registry.example"),
            "{err:?}"
        );
        let err = flatten(vec![layer().file("f", 0o644, "x").plain()], FailingWriter).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source: e, .. } if e.kind() == io::ErrorKind::StorageFull),
            "{err:?}"
        );
    }

    #[test]
    fn rootfs_paths_climbing_above_the_root_stop_at_it() {
        let l0 = layer()
            .file("../evil", 0o644, "evil")
            .file("a/../../evil2", 0o644, "evil")
            .file("../.wh.keep", 0o644, "")
            .dir("..", 0o755)
            .file("ok/../fine", 0o644, "fine")
            .file("/abs/file", 0o644, "abs")
            .hardlink("escaping-hard", "../../etc/passwd")
            .symlink("sym", "../../etc/passwd")
            .file("keep", 0o644, "k")
            .file("..", 0o644, "a file at the root");
        let l1 = layer()
            .file("x/../../.wh.keep", 0o644, "")
            .file("../../../x", 0o644, "");
        let got = run(vec![l0.plain(), l1.plain()]);
        assert_items(
            &got,
            expect(vec![
                (".", dir(0o755)),
                ("evil", file(0o644, "evil")),
                ("evil2", file(0o644, "evil")),
                ("fine", file(0o644, "fine")),
                ("abs/file", file(0o644, "abs")),
                // Symlink targets are data: kept as they are.
                ("sym", symlink("../../etc/passwd")),
                ("x", file(0o644, "")),
            ]),
        );
    }

    #[test]
    fn rootfs_entries_below_a_symlink_go_where_it_leads_inside_the_root() {
        let l0 = layer()
            .dir("etc", 0o755)
            .file("etc/passwd", 0o644, "base")
            .dir("usr/bin", 0o755);
        let l1 = layer()
            .symlink("abs", "/etc")
            .symlink("up", "../../..")
            .symlink("bin", "usr/bin")
            .symlink("loop1", "loop2")
            .symlink("loop2", "loop1")
            .file("abs/passwd", 0o644, "through abs")
            .file("up/etc/shadow", 0o600, "through up")
            .file("bin/tool", 0o755, "tool")
            .file("loop1/x", 0o644, "never: too many links")
            .hardlink("hard", "abs/passwd")
            .hardlink("hard-outside", "up/../../passwd");
        let got = run(vec![l0.plain(), l1.plain()]);
        assert_items(
            &got,
            expect(vec![
                ("etc", dir(0o755)),
                ("etc/passwd", file(0o644, "through abs")),
                ("etc/shadow", file(0o600, "through up")),
                ("usr/bin", dir(0o755)),
                ("usr/bin/tool", file(0o755, "tool")),
                ("abs", symlink("/etc")),
                ("up", symlink("../../..")),
                ("bin", symlink("usr/bin")),
                ("loop1", symlink("loop2")),
                ("loop2", symlink("loop1")),
                ("hard", hardlink("etc/passwd")),
            ]),
        );
        // No written path lies below a written symlink: extracting it cannot leave the root.
        for path in got.items.keys() {
            for (link, item) in &got.items {
                if matches!(item.kind, Kind::Symlink(_)) {
                    assert!(
                        !path.starts_with(&format!("{link}/")),
                        "{path} below symlink {link}"
                    );
                }
            }
        }
    }

    #[test]
    fn rootfs_a_symlink_where_other_entries_already_are_is_not_written() {
        // From a layer above: `data/x` makes `data` a directory, whatever was below.
        let l0 = layer().symlink("data", "/etc").file("was-a-file", 0o644, "f");
        let l1 = layer()
            .file("data/x", 0o644, "x")
            .file("was-a-file/y", 0o644, "y");
        // In one layer: the first entry at a path wins, here the directory's contents.
        let l2 = layer().file("same/inner", 0o644, "i").symlink("same", "/etc");
        let got = run(vec![l0.plain(), l1.plain(), l2.plain()]);
        assert_items(
            &got,
            expect(vec![
                ("data/x", file(0o644, "x")),
                ("was-a-file/y", file(0o644, "y")),
                ("same/inner", file(0o644, "i")),
            ]),
        );
    }

    /// `tar` without its end-of-archive blocks and without the padding of its last entry's
    /// data (whose last byte must not be zero): what `umoci insert` 0.4.7 writes.
    fn unpadded(tar: &[u8]) -> Vec<u8> {
        let end = tar.iter().rposition(|&b| b != 0).expect("data") + 1;
        tar[..end].to_vec()
    }

    fn gzip_members(parts: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for part in parts {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(part).unwrap();
            bytes.extend(encoder.finish().unwrap());
        }
        bytes
    }

    #[test]
    fn rootfs_reads_layer_tars_as_go_tools_do() {
        let two_files = || layer().file("a", 0o644, "first").file("b", 0o644, "second!");
        let tar = two_files().tar();
        let want = || expect(vec![("a", file(0o644, "first")), ("b", file(0o644, "second!"))]);
        let with = |extra: &[u8]| [&tar[..], extra].concat();
        let cases: Vec<(&str, Vec<u8>, Compression)> = vec![
            ("no padding, no end blocks", unpadded(&tar), Compression::None),
            (
                "no padding, no end blocks, gzip",
                gzip_members(&[&unpadded(&tar)]),
                Compression::Gzip,
            ),
            (
                "no end blocks",
                tar[..tar.len() - 1024].to_vec(),
                Compression::None,
            ),
            (
                "one zero block",
                tar[..tar.len() - 512].to_vec(),
                Compression::None,
            ),
            ("trailing zeros", with(&[0; 4096]), Compression::None),
            (
                "garbage after the end",
                with(b"garbage, not a header"),
                Compression::None,
            ),
            (
                "two gzip members, split mid-header",
                gzip_members(&[&tar[..700], &tar[700..]]),
                Compression::Gzip,
            ),
            (
                "three gzip members, the last unpadded",
                gzip_members(&[&tar[..512], &tar[512..1030], &unpadded(&tar)[1030..]]),
                Compression::Gzip,
            ),
            (
                "two zstd frames",
                [
                    zstd::encode_all(&tar[..600], 3).unwrap(),
                    zstd::encode_all(&tar[600..], 3).unwrap(),
                ]
                .concat(),
                Compression::Zstd,
            ),
        ];
        for (what, bytes, compression) in cases {
            let mut out = Vec::new();
            flatten(vec![(Box::new(Cursor::new(bytes)), compression)], &mut out)
                .unwrap_or_else(|err| panic!("{what}: {err}"));
            let got = read_output(&out);
            assert_eq!(got.items, want(), "{what}");
        }
    }

    #[test]
    fn rootfs_a_truncated_entry_names_its_layer_and_itself() {
        let data = "x".repeat(2000);
        let tar = layer()
            .file("fine", 0o644, "ok")
            .file("etc/big", 0o644, &data)
            .tar();
        // Cut 1000 bytes into etc/big's data: two headers and `fine`'s padded data before it.
        let cut = tar[..512 * 3 + 1000].to_vec();
        for (bytes, compression) in [
            (cut.clone(), Compression::None),
            (gzip_members(&[&cut]), Compression::Gzip),
        ] {
            let top = layer().file("top", 0o644, "t").plain();
            let err = flatten(vec![(Box::new(Cursor::new(bytes)), compression), top], Vec::new())
                .unwrap_err()
                .to_string();
            assert!(err.contains("layer 1 of 2"), "{err}");
            assert!(
                err.contains("entry `etc/big` ends after 1000 of its 2000 bytes"),
                "{err}"
            );
        }
        // Hidden by the layer above, so skipped rather than read: the same error.
        let top = layer().file("etc/big", 0o644, "replaced").plain();
        let err = flatten(
            vec![(Box::new(Cursor::new(cut)), Compression::None), top],
            Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("entry `etc/big` ends after 1000"), "{err}");
    }

    #[test]
    fn rootfs_paths_are_normalised() {
        let l0 = layer()
            .dir("./", 0o755)
            .dir("./n/", 0o755)
            .file("./n/y", 0o644, "1")
            .file("n//z", 0o644, "z");
        let l1 = layer()
            .dir("/n", 0o700)
            .file("/n/y", 0o600, "2")
            .file("n/./.wh.z", 0o644, "");
        let l2 = layer().dir(".", 0o750).file("n/y/", 0o644, "top");
        let got = run(vec![l0.plain(), l1.plain(), l2.plain()]);
        assert_items(
            &got,
            expect(vec![
                (".", dir(0o750)),
                ("n", dir(0o700)),
                ("n/y", file(0o644, "top")),
            ]),
        );
    }

    // ---- against umoci ----

    fn umoci(args: &[&str]) {
        let output = Command::new("umoci").args(args).output().unwrap_or_else(|err| {
            panic!("this test needs `umoci` (install it with scripts/install-test-tools.sh): {err}")
        });
        assert!(
            output.status.success(),
            "umoci {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// path → (kind, mode bits, content or link target); hard links resolved to file contents.
    type Tree = BTreeMap<String, (&'static str, u32, String)>;

    fn tree_of_dir(root: &Path) -> Tree {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        fn walk(root: &Path, dir: &Path, tree: &mut Tree) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let rel = path.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                let mode = meta.permissions().mode() & 0o7777;
                let kind = meta.file_type();
                let value = if kind.is_dir() {
                    walk(root, &path, tree);
                    ("dir", mode, String::new())
                } else if kind.is_symlink() {
                    let target = std::fs::read_link(&path).unwrap();
                    ("symlink", mode, target.to_str().unwrap().to_owned())
                } else if kind.is_file() {
                    ("file", mode, std::fs::read_to_string(&path).unwrap())
                } else if kind.is_fifo() {
                    ("fifo", mode, String::new())
                } else {
                    ("other", mode, String::new())
                };
                tree.insert(rel, value);
            }
        }
        let mut tree = Tree::new();
        walk(root, root, &mut tree);
        tree
    }

    fn tree_of_output(output: &Output) -> Tree {
        let mut tree = Tree::new();
        for (path, item) in &output.items {
            if path == "." {
                continue;
            }
            let (kind, value) = match &item.kind {
                Kind::File(content) => ("file", content.clone()),
                Kind::Dir => ("dir", String::new()),
                Kind::Symlink(target) => ("symlink", target.clone()),
                Kind::HardLink(target) => match &output.items[target].kind {
                    Kind::File(content) => ("file", content.clone()),
                    other => panic!("hard link {path} to {other:?}"),
                },
                Kind::Fifo => ("fifo", String::new()),
                _ => ("other", String::new()),
            };
            let mode = if kind == "symlink" {
                0o777
            } else {
                item.mode & 0o7777
            };
            tree.insert(path.clone(), (kind, mode, value));
        }
        tree
    }

    #[test]
    fn rootfs_matches_umoci_unpack() {
        use std::fs;
        use std::os::unix::fs::{PermissionsExt, symlink};

        let temp = tempfile::tempdir().unwrap();
        let layout = temp.path().join("layout");
        let bundle = temp.path().join("bundle");
        let final_bundle = temp.path().join("final");
        let (layout_s, bundle_s) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
        let image = format!("{layout_s}:t");
        let chmod =
            |path: &Path, mode: u32| fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        let long_dir = "l".repeat(120);

        umoci(&["init", "--layout", layout_s]);
        umoci(&["new", "--image", &image]);

        // Layer 1.
        umoci(&["unpack", "--rootless", "--image", &image, bundle_s]);
        let root = bundle.join("rootfs");
        for d in ["etc", "bin", "data/sub", "tmp", "opq", "replace-me-dir"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("etc/passwd"), "root:x:0:0\n").unwrap();
        fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::write(root.join("bin/tool"), "#!/bin/sh\n").unwrap();
        chmod(&root.join("bin/tool"), 0o4755);
        symlink("tool", root.join("bin/link")).unwrap();
        fs::hard_link(root.join("bin/tool"), root.join("bin/hard")).unwrap();
        fs::write(root.join("data/a"), "a").unwrap();
        fs::write(root.join("data/sub/b"), "b").unwrap();
        fs::write(root.join("removeme"), "bye").unwrap();
        fs::write(root.join("replace-me"), "file").unwrap();
        fs::write(root.join("replace-me-dir/inner"), "inner").unwrap();
        fs::write(root.join("opq/old"), "old").unwrap();
        chmod(&root.join("tmp"), 0o1777);
        let status = Command::new("mkfifo").arg(root.join("fifo")).status().unwrap();
        assert!(status.success());
        umoci(&["repack", "--image", &image, bundle_s]);
        fs::remove_dir_all(&bundle).unwrap();

        // Layer 2: deletions, replacements, additions.
        umoci(&["unpack", "--rootless", "--image", &image, bundle_s]);
        fs::remove_file(root.join("removeme")).unwrap();
        fs::remove_dir_all(root.join("data")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0\nuser:x:1000:1000\n").unwrap();
        fs::remove_file(root.join("bin/link")).unwrap();
        symlink("/etc/passwd", root.join("bin/link")).unwrap();
        fs::remove_file(root.join("replace-me")).unwrap();
        fs::create_dir(root.join("replace-me")).unwrap();
        fs::write(root.join("replace-me/inside"), "inside").unwrap();
        fs::remove_dir_all(root.join("replace-me-dir")).unwrap();
        fs::write(root.join("replace-me-dir"), "now a file").unwrap();
        fs::remove_dir_all(root.join("opq")).unwrap();
        fs::create_dir(root.join("opq")).unwrap();
        fs::write(root.join("opq/new"), "new").unwrap();
        fs::create_dir_all(root.join(&long_dir).join(&long_dir)).unwrap();
        fs::write(root.join(&long_dir).join(&long_dir).join("deep"), "deep").unwrap();
        umoci(&["repack", "--image", &image, bundle_s]);

        umoci(&[
            "unpack",
            "--rootless",
            "--image",
            &image,
            final_bundle.to_str().unwrap(),
        ]);
        let want = tree_of_dir(&final_bundle.join("rootfs"));

        // Flatten the layout's layer blobs ourselves.
        let read_json =
            |path: &Path| -> serde_json::Value { serde_json::from_slice(&fs::read(path).unwrap()).unwrap() };
        let blob = |digest: &str| layout.join("blobs").join(digest.replace(':', "/"));
        let index = read_json(&layout.join("index.json"));
        let manifest_digest = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "t")
            .expect("tag t in index.json")["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let manifest = read_json(&blob(&manifest_digest));
        let layers: Vec<LayerInput> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let compression = Compression::from_media_type(l["mediaType"].as_str().unwrap()).unwrap();
                let file = fs::File::open(blob(l["digest"].as_str().unwrap())).unwrap();
                (Box::new(file) as Box<dyn Read + Send>, compression)
            })
            .collect();
        assert_eq!(layers.len(), 2, "umoci should have written two layers");
        let layer2 = manifest["layers"][1]["digest"].as_str().unwrap();
        let mut names = Vec::new();
        for entry in Archive::new(flate2::read::GzDecoder::new(
            fs::File::open(blob(layer2)).unwrap(),
        ))
        .entries()
        .unwrap()
        {
            names.push(entry.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        assert!(
            names.iter().any(|n| n.contains(".wh.")),
            "umoci wrote no whiteout in {names:?}"
        );

        let got = tree_of_output(&run(layers));
        assert_eq!(got, want, "flatten output differs from `umoci unpack`");
        assert_eq!(want["bin/tool"], ("file", 0o4755, "#!/bin/sh\n".to_owned()));
        assert!(!want.contains_key("data/a") && !want.contains_key("removeme"));
    }
}
