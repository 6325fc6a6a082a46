//! Reading a tar stream as leniently as Go's `archive/tar`, which podman, containerd, umoci
//! and crane use to read layers, and no more.
//!
//! The `tar` crate is strict about the end of a stream: it wants each entry's data padded to
//! 512 bytes. Go's reader, and so every image tool built on it, also takes a stream that stops
//! right after the last entry's data (`umoci insert` 0.4.7 writes such layers, with no
//! padding and no end-of-archive blocks). The other lenient cases need nothing from us: the
//! `tar` crate already ends an archive at a stream that stops on an entry boundary, or at a
//! single zero block, and whatever follows the end marker is left unread.
//!
//! What stays an error: a stream that stops inside an entry's data (fewer bytes than its
//! header's size) names the entry and how much of it came; one that stops inside a header is
//! the `tar` crate's own error.
//!
//! Every reader of tars in this crate goes through [`TarReader`], so the rules are the same
//! wherever a tar is read.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use tar::{Archive, Entry};

const BLOCK: u64 = 512;

/// A tar stream read entry by entry; see the [module documentation](self).
pub(crate) struct TarReader<R: Read> {
    archive: Archive<Framed<R>>,
    /// The entry last handed out, which the stream under the archive needs to know.
    current: Rc<RefCell<Option<CurrentEntry>>>,
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(inner: R) -> TarReader<R> {
        let current = Rc::new(RefCell::new(None));
        let framed = Framed {
            inner,
            current: Rc::clone(&current),
            position: 0,
            padding: 0,
        };
        TarReader {
            archive: Archive::new(framed),
            current,
        }
    }

    /// Calls `each` with every entry in order. An entry's data not read by `each` is
    /// skipped; `each` may read part of it.
    pub(crate) fn for_each_entry(
        &mut self,
        mut each: impl FnMut(&mut Entry<'_, Framed<R>>) -> io::Result<()>,
    ) -> io::Result<()> {
        for entry in self.archive.entries()? {
            let mut entry = entry?;
            let start = entry.raw_file_position();
            *self.current.borrow_mut() = Some(CurrentEntry {
                name: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                start,
                end: start + entry.size(),
            });
            each(&mut entry)?;
        }
        Ok(())
    }

    /// The rest of the stream after the end of the archive (trailing blocks, or anything).
    pub(crate) fn into_inner(self) -> R {
        self.archive.into_inner().inner
    }
}

/// Where an entry's data starts and ends in the stream.
struct CurrentEntry {
    name: String,
    start: u64,
    end: u64,
}

/// The stream under the `tar` crate: counts bytes, and where the stream stops after an
/// entry's data but before its padding, supplies the missing zeros.
pub(crate) struct Framed<R> {
    inner: R,
    current: Rc<RefCell<Option<CurrentEntry>>>,
    /// Bytes handed to the archive so far.
    position: u64,
    /// Zero bytes still to supply before the end of the stream.
    padding: u64,
}

impl<R: Read> Read for Framed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = if self.padding > 0 {
            let n = buf.len().min(usize::try_from(self.padding).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            self.padding -= n as u64;
            n
        } else {
            let n = self.inner.read(buf)?;
            if n == 0 {
                return self.stream_ended(buf);
            }
            n
        };
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read> Framed<R> {
    /// The inner stream has no more bytes at `position`.
    fn stream_ended(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let position = self.position;
        let current = self.current.borrow();
        let Some(entry) = current.as_ref() else {
            return Ok(0);
        };
        if position < entry.end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the data of entry `{}` ends after {} of its {} bytes (truncated)",
                    entry.name,
                    position - entry.start,
                    entry.end - entry.start
                ),
            ));
        }
        let padded_end = entry.end.div_ceil(BLOCK) * BLOCK;
        if position >= padded_end {
            return Ok(0);
        }
        // The entry's data is whole and only its padding is missing: Go's reader ends the
        // archive here, and so do we, after the zeros the `tar` crate expects.
        self.padding = padded_end - position;
        drop(current);
        self.read(buf)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tar of `files` as the `tar` crate writes it (padded, with the end marker).
    pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// (path, data) of every entry of `bytes`, or the error.
    fn read_all(bytes: &[u8]) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut reader = TarReader::new(bytes);
        let mut entries = Vec::new();
        reader.for_each_entry(|entry| {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            entries.push((entry.path()?.to_string_lossy().into_owned(), data));
            Ok(())
        })?;
        Ok(entries)
    }

    fn want() -> Vec<(String, Vec<u8>)> {
        vec![("a".into(), b"first".to_vec()), ("b".into(), b"second!".to_vec())]
    }

    /// The two files' tar, cut just after the last byte of `b`'s data.
    fn unpadded() -> Vec<u8> {
        let mut bytes = tar_of(&[("a", b"first"), ("b", b"second!")]);
        bytes.truncate(512 * 3 + 7);
        bytes
    }

    #[test]
    fn a_stream_ending_after_the_last_data_byte_is_a_whole_archive() {
        assert_eq!(read_all(&unpadded()).unwrap(), want());
        // The same when the last entry's data is not read, only skipped.
        let mut count = 0;
        let bytes = unpadded();
        let mut reader = TarReader::new(&bytes[..]);
        reader
            .for_each_entry(|_| {
                count += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(count, 2);
    }

    #[test]
    fn partial_padding_missing_end_blocks_and_trailers_are_accepted() {
        let full = tar_of(&[("a", b"first"), ("b", b"second!")]);
        let mut partial_padding = full.clone();
        partial_padding.truncate(512 * 3 + 100);
        let mut no_end_blocks = full.clone();
        no_end_blocks.truncate(512 * 4);
        let mut one_zero_block = full.clone();
        one_zero_block.truncate(512 * 5);
        let mut garbage = full.clone();
        garbage.extend_from_slice(b"not a tar header, not zeros either");
        for (what, bytes) in [
            ("partial padding", partial_padding),
            ("no end blocks", no_end_blocks),
            ("one zero block", one_zero_block),
            ("garbage after the end", garbage),
        ] {
            assert_eq!(read_all(&bytes).unwrap(), want(), "{what}");
        }
    }

    #[test]
    fn the_rest_after_the_end_marker_is_left_to_read() {
        let mut bytes = tar_of(&[("a", b"first")]);
        bytes.extend_from_slice(b"trailer");
        let mut reader = TarReader::new(&bytes[..]);
        reader.for_each_entry(|_| Ok(())).unwrap();
        let mut rest = Vec::new();
        reader.into_inner().read_to_end(&mut rest).unwrap();
        assert!(rest.ends_with(b"trailer"), "{rest:?}");
    }

    #[test]
    fn a_stream_ending_inside_data_names_the_entry() {
        let mut bytes = unpadded();
        bytes.truncate(512 * 3 + 3);
        let err = read_all(&bytes).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            err.to_string().contains("entry `b` ends after 3 of its 7 bytes"),
            "{err}"
        );
        // Skipped rather than read: the same error.
        let mut reader = TarReader::new(&bytes[..]);
        let err = reader.for_each_entry(|_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("entry `b` ends after 3"), "{err}");
    }

    #[test]
    fn a_stream_ending_inside_a_header_is_an_error() {
        let mut bytes = unpadded();
        bytes.truncate(512 * 2 + 100);
        assert!(read_all(&bytes).is_err());
    }
}
