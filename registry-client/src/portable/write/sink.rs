//! Where a downloaded blob goes: a file, written on the blocking pool in
//! batches, so that the async threads only receive (the read path checks the
//! bytes; the sink only writes them).
//!
//! Chunks arrive from the network as `Bytes`; they are kept as they are (no
//! copy into a buffer) until a batch is full, then one blocking task writes
//! them with one `writev`. One batch is written while the
//! next fills, so the network and the disk work at the same time.

use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::driver::protocol::blobs::{BlobSink, RestartRefused};
use crate::error::{Error, Result};

/// Bytes gathered before they are handed to the blocking pool. Two batches
/// per download can be alive at once (one filling, one being written).
const BATCH_BYTES: usize = 512 * 1024;

/// Unless the blob is [`Durability::Buffered`], the kernel is asked to start
/// writing back every this many bytes, so that the final `fsync` has little
/// left to do.
const WRITEBACK_BYTES: u64 = 8 * 1024 * 1024;

/// Whether a downloaded blob must be on disk, and who syncs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Synced when the download completes, while other layers still
    /// download: blobs linked under their final name (OCI layouts, the cache).
    Synced,
    /// Writeback starts as the data arrives; the caller syncs the whole file
    /// once (a region of a docker archive).
    WrittenBack,
    /// Left to the page cache (scratch files).
    Buffered,
}

/// The file, and how far its writeback has gone.
struct Written {
    file: File,
    writeback: Option<Writeback>,
    sync: bool,
}

/// Where the sink started writing and how far writeback has been started.
struct Writeback {
    start: u64,
    written: u64,
    flushed: u64,
}

/// A blob being streamed into a file (from the file's current position).
pub(crate) struct FileSink {
    /// `None` while a batch is being written (the blocking task has them).
    idle: Option<Written>,
    in_flight: Option<JoinHandle<io::Result<Written>>>,
    batch: Vec<Bytes>,
    batch_bytes: usize,
    /// Where in the file the blob starts.
    start: u64,
}

impl FileSink {
    /// A sink writing at `file`'s current position.
    pub(crate) fn new(mut file: File, durability: Durability) -> Result<Self> {
        let start = io::Seek::stream_position(&mut file)?;
        let writeback = match durability {
            Durability::Synced | Durability::WrittenBack => Some(Writeback {
                start,
                written: 0,
                flushed: 0,
            }),
            Durability::Buffered => None,
        };
        Ok(FileSink {
            idle: Some(Written {
                file,
                writeback,
                sync: durability == Durability::Synced,
            }),
            in_flight: None,
            batch: Vec::new(),
            batch_bytes: 0,
            start,
        })
    }

    /// Forgets everything written: back to where the sink started, with a
    /// fresh hash, for a blob sent again from its first byte.
    pub(crate) async fn restart(&mut self) -> Result<()> {
        self.batch.clear();
        self.batch_bytes = 0;
        self.wait().await?;
        let written = self.idle.as_mut().expect("no batch in flight");
        io::Seek::seek(&mut written.file, io::SeekFrom::Start(self.start))?;
        if let Some(writeback) = &mut written.writeback {
            writeback.written = 0;
            writeback.flushed = 0;
        }
        Ok(())
    }

    /// Appends a chunk (written later, in order).
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.batch_bytes += chunk.len();
        self.batch.push(chunk);
        if self.batch_bytes >= BATCH_BYTES {
            self.start_batch().await?;
        }
        Ok(())
    }

    /// Writes what is left and returns the file; a [`Durability::Synced`]
    /// file's data is on disk when this returns.
    pub(crate) async fn finish(mut self) -> Result<File> {
        self.start_batch().await?;
        self.wait().await?;
        let Written { file, sync, .. } = self.idle.take().expect("no batch in flight");
        let file = if sync {
            blocking(move || file.sync_all().map(|()| file)).await?
        } else {
            file
        };
        Ok(file)
    }

    /// Hands the gathered chunks to the blocking pool, once the previous batch is written.
    async fn start_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.wait().await?;
        let mut written = self.idle.take().expect("no batch in flight");
        let batch = std::mem::take(&mut self.batch);
        let bytes = std::mem::take(&mut self.batch_bytes) as u64;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            write_all_vectored(&mut written.file, &batch)?;
            if let Some(wb) = &mut written.writeback {
                wb.written += bytes;
                if wb.written - wb.flushed >= WRITEBACK_BYTES {
                    start_writeback(&written.file, wb.start + wb.flushed, wb.written - wb.flushed);
                    wb.flushed = wb.written;
                }
            }
            Ok(written)
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.take() {
            self.idle = Some(task.await.map_err(join_error)??);
        }
        Ok(())
    }
}

/// `write_all` for several buffers: as few `writev` calls as the kernel allows.
fn write_all_vectored(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut slices = slices.as_mut_slice();
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Starts writing a range of the file back to disk without waiting for it
/// (Linux); elsewhere the final `fsync` does all the work.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on a file descriptor we own; a failure only
    // means the final fsync does the work.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

/// Runs blocking file work on the blocking pool and waits for it.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
) -> Result<T>
where
    T: Send + 'static,
    E: Send + 'static,
    Error: From<E>,
{
    Ok(tokio::task::spawn_blocking(work).await.map_err(join_error)??)
}

pub(crate) fn join_error(e: tokio::task::JoinError) -> Error {
    Error::from(io::Error::other(e))
}

impl BlobSink for FileSink {
    fn write(&mut self, chunk: Bytes) -> impl Future<Output = Result<()>> + Send {
        FileSink::write(self, chunk)
    }

    async fn restart(&mut self) -> std::result::Result<(), RestartRefused> {
        Ok(FileSink::restart(self).await?)
    }
}

/// The archive file opened on its own (own file offset), positioned at `offset`.
pub(crate) fn open_at(path: &Path, offset: u64) -> Result<std::fs::File> {
    let mut file = std::fs::File::options().write(true).open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

/// Copies a cached blob into the archive at `offset` (the kernel copies: copy_file_range).
pub(crate) fn copy_into(cached: &Path, archive: &Path, offset: u64) -> Result<()> {
    let mut from = std::fs::File::open(cached)?;
    let mut to = open_at(archive, offset)?;
    std::io::copy(&mut from, &mut to)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    #[tokio::test]
    async fn writes_every_chunk_in_order() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"HEAD").unwrap();
        // Chunks of odd sizes across several batches, one of them empty.
        let chunks: Vec<Vec<u8>> = (0..40u8)
            .map(|i| vec![i; (i as usize * 7919) % 100_000])
            .collect();
        let expected: Vec<u8> = chunks.concat();

        let mut sink = FileSink::new(file.try_clone().unwrap(), Durability::Synced).unwrap();
        for chunk in &chunks {
            sink.write(Bytes::from(chunk.clone())).await.unwrap();
        }
        sink.finish().await.unwrap();

        let mut written = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut written).unwrap();
        assert_eq!(&written[..4], b"HEAD", "writes start at the file's position");
        assert_eq!(&written[4..], &expected[..]);
    }

    #[tokio::test]
    async fn a_write_error_is_reported() {
        // A file opened read-only cannot be written.
        let path = tempfile::NamedTempFile::new().unwrap();
        let file = File::open(path.path()).unwrap();
        let mut sink = FileSink::new(file, Durability::Buffered).unwrap();
        let big = Bytes::from(vec![0u8; BATCH_BYTES]);
        let first = sink.write(big.clone()).await;
        let result = match first {
            Err(e) => Err(e),
            Ok(()) => sink.finish().await.map(|_| ()),
        };
        assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
    }
}
