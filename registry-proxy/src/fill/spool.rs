//! Writing a fill's bytes into its spool file: in batches on the blocking
//! pool, with room made on a full disk, shown to readers as they land.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use registry_client::{BlobSink, RestartRefused};
use tokio::sync::watch;

use super::state::{FillState, Readers};
use crate::error::Error;
use crate::maintenance::Maintenance;
use crate::storage::Storage;

/// Bytes gathered before they are written to the spool (and shown to readers).
const FLUSH_BYTES: usize = 256 * 1024;
/// A fill without clients that has at most this much left is finished.
pub const FINISH_WITHIN: u64 = 64 * 1024 * 1024;
/// How long a fill without clients waits for one to come back before it
/// stops (when it is not worth finishing).
pub const LINGER: Duration = Duration::from_secs(5);
/// Room kept free beside a blob being filled (manifests, tag records).
const MARGIN: u64 = 1024 * 1024;

/// Whether a fill without clients is worth finishing: at least half done,
/// or little left.
fn worth_finishing(written: u64, size: Option<u64>) -> bool {
    match size {
        Some(size) => {
            let left = size.saturating_sub(written);
            left <= FINISH_WITHIN || written >= left
        }
        None => false,
    }
}

/// Writes a fill into its spool file in batches, and tells readers.
pub(crate) struct SpoolSink<'a> {
    pub(crate) file: Arc<std::fs::File>,
    pub(crate) pending: Vec<Bytes>,
    pub(crate) pending_bytes: usize,
    /// Bytes in the file.
    pub(crate) written: u64,
    /// Bytes shown to readers.
    pub(crate) published: u64,
    pub(crate) size: Option<u64>,
    pub(crate) state: &'a watch::Sender<FillState>,
    pub(crate) storage: &'a Storage,
    pub(crate) maintenance: &'a Maintenance,
    pub(crate) readers: &'a Readers,
    /// Whether the blob's room on disk was looked at.
    pub(crate) room_checked: bool,
    /// Why the fill stopped itself (the error the download then ends with
    /// is this, not the upstream's).
    pub(crate) stopped: Option<(&'static str, Option<Error>)>,
}

impl SpoolSink<'_> {
    /// Stops the fill for `reason`: the download ends with this error.
    fn stop(&mut self, reason: &'static str, error: Option<Error>) -> registry_client::Error {
        let message = match &error {
            Some(error) => error.to_string(),
            None => format!("fill stopped: {reason}"),
        };
        self.stopped = Some((reason, error));
        registry_client::Error::from(std::io::Error::other(message))
    }

    /// Before the first bytes: is there room for the blob? Evicts to make
    /// some when a size limit allows.
    async fn check_room(&mut self) -> registry_client::Result<()> {
        self.room_checked = true;
        let (Some(size), Some(free)) = (self.size, self.storage.free_space()) else {
            return Ok(());
        };
        let needed = size.saturating_add(MARGIN);
        if free >= needed {
            return Ok(());
        }
        if self.maintenance.make_room(needed - free).await
            && self.storage.free_space().is_some_and(|free| free >= needed)
        {
            return Ok(());
        }
        let error = Error::storage(
            format!("no room for a blob of {size} bytes: {free} bytes free"),
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        );
        Err(self.stop("no_room", Some(error)))
    }

    /// Writes what is gathered; shows it to readers if `publish`.
    /// The last bytes are not shown until the blob is verified: a reader
    /// must never reach the end of a blob that fails. A full disk is given
    /// one more chance: evicting (with a size limit), then writing again.
    pub(crate) async fn flush(&mut self, publish: bool) -> registry_client::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(std::mem::take(&mut self.pending));
        self.pending_bytes = 0;
        let (file, offset) = (self.file.clone(), self.written);
        let written_batch = batch.clone();
        let mut written = tokio::task::spawn_blocking(move || write_batch(&file, &written_batch, offset))
            .await
            .map_err(|e| registry_client::Error::from(std::io::Error::other(e)))?;
        if written
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::StorageFull)
        {
            let wanted = self.size.map_or(0, |size| size.saturating_sub(offset)) + MARGIN;
            if self.maintenance.make_room(wanted).await {
                let file = self.file.clone();
                written = tokio::task::spawn_blocking(move || write_batch(&file, &batch, offset))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r);
            }
        }
        let written = match written {
            Ok(written) => written,
            Err(error) => {
                let error = Error::storage("cannot write a spool file", error);
                return Err(self.stop("storage", Some(error)));
            }
        };
        self.written = written;
        if publish {
            self.published = written;
            self.state.send_replace(FillState::Running {
                written,
                size: self.size,
            });
        }
        Ok(())
    }

    /// Whether a fill without clients should stop now.
    fn abandoned(&self) -> bool {
        self.readers
            .alone_for()
            .is_some_and(|alone| alone >= LINGER && !worth_finishing(self.written, self.size))
    }
}

/// Writes `batch` at `offset`; the new end.
fn write_batch(file: &std::fs::File, batch: &[Bytes], offset: u64) -> std::io::Result<u64> {
    let mut at = offset;
    for chunk in batch {
        file.write_all_at(chunk, at)?;
        at += chunk.len() as u64;
    }
    Ok(at)
}

impl BlobSink for SpoolSink<'_> {
    async fn write(&mut self, chunk: Bytes) -> registry_client::Result<()> {
        if !self.room_checked {
            self.check_room().await?;
        }
        self.pending_bytes += chunk.len();
        self.pending.push(chunk);
        if self.pending_bytes >= FLUSH_BYTES {
            self.flush(true).await?;
            if self.abandoned() {
                return Err(self.stop("abandoned", None));
            }
        }
        Ok(())
    }

    async fn restart(&mut self) -> Result<(), RestartRefused> {
        // Readers may have the bytes already: they cannot be taken back.
        if self.published > 0 {
            return Err(RestartRefused::new(
                "its first bytes were already sent to clients",
            ));
        }
        self.pending.clear();
        self.pending_bytes = 0;
        self.written = 0;
        Ok(())
    }

    fn expect_size(&mut self, size: u64) {
        self.size = Some(size);
        self.state.send_modify(|state| {
            if let FillState::Running { size: known, .. } = state {
                *known = Some(size);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_without_clients_is_finished_when_half_done_or_nearly_done() {
        const MIB: u64 = 1024 * 1024;
        assert!(worth_finishing(0, Some(FINISH_WITHIN)), "little to go");
        assert!(!worth_finishing(0, Some(FINISH_WITHIN + 1)));
        assert!(worth_finishing(500 * MIB, Some(1000 * MIB)), "half done");
        assert!(!worth_finishing(400 * MIB, Some(1000 * MIB)));
        assert!(!worth_finishing(10 * MIB, None), "no size: nothing to go by");
    }
}
