//! Checking a blob against its digest while its bytes pass by: hashed on the
//! blocking pool in batches, one batch hashing while the next gathers, so that
//! the async threads only receive and no sink needs a hasher of its own.

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::model::digest::Hasher;

/// Bytes gathered before they are hashed on the blocking pool.
const BATCH_BYTES: usize = 512 * 1024;
/// A last batch this small is hashed in place: a trip to the blocking pool
/// costs more than hashing it (a config, the tail of a layer).
const INLINE_BYTES: usize = 64 * 1024;

/// The running hash of a blob's bytes, in order.
pub(crate) struct Verifier {
    expected: String,
    /// `None` while a batch is hashing (its task has the hasher).
    idle: Option<Hasher>,
    in_flight: Option<JoinHandle<Hasher>>,
    batch: Vec<Bytes>,
    batch_bytes: usize,
}

impl Verifier {
    /// A verifier for `digest`; an algorithm we cannot compute is refused here,
    /// before anything is downloaded.
    pub(crate) fn new(digest: &str) -> Result<Self> {
        Ok(Verifier {
            expected: digest.to_owned(),
            idle: Some(Hasher::for_digest(digest)?),
            in_flight: None,
            batch: Vec::new(),
            batch_bytes: 0,
        })
    }

    /// Takes the next bytes (a reference to them: `Bytes` are shared, not copied).
    pub(crate) async fn update(&mut self, chunk: &Bytes) -> Result<()> {
        self.batch_bytes += chunk.len();
        self.batch.push(chunk.clone());
        if self.batch_bytes >= BATCH_BYTES {
            self.hash_batch().await?;
        }
        Ok(())
    }

    /// Forgets every byte: the blob comes again from its first.
    pub(crate) async fn reset(&mut self) -> Result<()> {
        self.batch.clear();
        self.batch_bytes = 0;
        let hasher = self.wait().await?;
        self.idle = Some(hasher.fresh());
        Ok(())
    }

    /// Whether the bytes so far hash to the digest asked for; the verifier
    /// can still be [`reset`](Self::reset) afterwards.
    pub(crate) async fn check(&mut self) -> Result<()> {
        let hasher = if self.batch_bytes <= INLINE_BYTES {
            let mut hasher = self.wait().await?;
            for chunk in self.batch.drain(..) {
                hasher.update(&chunk);
            }
            self.batch_bytes = 0;
            hasher
        } else {
            self.hash_batch().await?;
            self.wait().await?
        };
        let actual = hasher.clone().finish();
        self.idle = Some(hasher);
        if actual == self.expected {
            Ok(())
        } else {
            Err(Error::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            })
        }
    }

    /// Hands the gathered bytes to the blocking pool once the previous batch is hashed.
    async fn hash_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut hasher = self.wait().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                hasher.update(chunk);
            }
            hasher
        }));
        Ok(())
    }

    /// The hasher, once no batch is hashing.
    async fn wait(&mut self) -> Result<Hasher> {
        match (self.in_flight.take(), self.idle.take()) {
            (Some(task), _) => task.await.map_err(|e| Error::from(std::io::Error::other(e))),
            (None, Some(hasher)) => Ok(hasher),
            (None, None) => unreachable!("a verifier always has its hasher or a task holding it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digest::sha256;

    /// Chunks of odd sizes across several batches, one of them empty.
    fn chunks() -> Vec<Bytes> {
        (0..40u8)
            .map(|i| Bytes::from(vec![i; (i as usize * 7919) % 100_000]))
            .collect()
    }

    #[tokio::test]
    async fn the_bytes_in_order_pass_and_anything_else_fails() {
        let chunks = chunks();
        let digest = sha256(&chunks.concat());
        let mut verifier = Verifier::new(&digest).unwrap();
        for chunk in &chunks {
            verifier.update(chunk).await.unwrap();
        }
        verifier.check().await.unwrap();

        let mut reversed = Verifier::new(&digest).unwrap();
        for chunk in chunks.iter().rev() {
            reversed.update(chunk).await.unwrap();
        }
        let err = reversed.check().await.unwrap_err();
        assert!(
            matches!(&err, Error::DigestMismatch { expected, .. } if *expected == digest),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_reset_forgets_what_came_before() {
        let chunks = chunks();
        let digest = sha256(&chunks.concat());
        let mut verifier = Verifier::new(&digest).unwrap();
        verifier.update(&Bytes::from_static(b"garbage")).await.unwrap();
        assert!(verifier.check().await.is_err());
        verifier.reset().await.unwrap();
        for chunk in &chunks {
            verifier.update(chunk).await.unwrap();
        }
        verifier.check().await.unwrap();
    }

    #[test]
    fn unknown_algorithms_are_refused_up_front() {
        assert!(Verifier::new("md5:00").is_err());
        assert!(Verifier::new("nocolon").is_err());
    }
}
