//! The byte-stream faults: a body stream reset after some bytes, throttled, cut short (the
//! request body) or with one byte flipped, each a wrapper around a [`ByteStream`].

use std::error::Error as StdError;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::watch;

pub(super) type BoxError = Box<dyn StdError + Send + Sync>;
pub(super) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// Upper bound on how long a `ResetAfter` body waits for its last bytes to be flushed to the
/// socket before aborting the connection anyway (a client that stops reading).
const RESET_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Pass the first `limit` bytes of `inner`, wait until the connection has flushed them to the
/// socket, then fail the body so the server aborts the connection (hyper drops its unflushed
/// write buffer when a body fails, so failing right away could lose some of the `limit` bytes).
/// A body shorter than `limit` passes through unchanged.
pub(super) fn reset_after(inner: ByteStream, limit: u64, flushes: watch::Receiver<u64>) -> ByteStream {
    struct St {
        inner: ByteStream,
        sent: u64,
        done: bool,
        flushes: watch::Receiver<u64>,
    }
    let st = St {
        inner,
        sent: 0,
        done: false,
        flushes,
    };
    Box::pin(futures::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if st.sent >= limit {
                // Our last chunk is in hyper's write buffer now; the next completed flush of the
                // connection has written it to the socket.
                st.flushes.borrow_and_update();
                let _ = tokio::time::timeout(RESET_FLUSH_TIMEOUT, st.flushes.changed()).await;
                st.done = true;
                let err: BoxError = Box::new(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    format!("fault proxy: connection reset after {limit} body bytes"),
                ));
                return Some((Err(err), st));
            }
            match st.inner.next().await {
                Some(Ok(mut chunk)) => {
                    let room = limit - st.sent;
                    if chunk.len() as u64 > room {
                        chunk.truncate(room as usize);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    st.sent += chunk.len() as u64;
                    return Some((Ok(chunk), st));
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => return None,
            }
        }
    }))
}

/// Pass `inner` on at about `rate` bytes a second: in slices of a tenth of a second's worth,
/// each sent after the time it takes at that rate.
pub(super) fn throttle(inner: ByteStream, rate: u64) -> ByteStream {
    let rate = rate.max(1);
    let slice = (rate / 10).max(1) as usize;
    let slices = inner
        .map_ok(move |chunk| {
            let pieces: Vec<Result<Bytes, BoxError>> = (0..chunk.len())
                .step_by(slice)
                .map(|at| Ok(chunk.slice(at..(at + slice).min(chunk.len()))))
                .collect();
            futures::stream::iter(pieces)
        })
        .try_flatten();
    Box::pin(slices.then(move |piece| async move {
        if let Ok(bytes) = &piece {
            tokio::time::sleep(Duration::from_secs_f64(bytes.len() as f64 / rate as f64)).await;
        }
        piece
    }))
}

/// The first `limit` bytes of `inner`, then an error.
pub(super) fn cut_after(inner: ByteStream, limit: u64) -> ByteStream {
    let mut passed = 0u64;
    Box::pin(inner.map(move |item| {
        let chunk = item?;
        if passed >= limit {
            return Err(BoxError::from("fault proxy: request body cut"));
        }
        let keep = (limit - passed).min(chunk.len() as u64) as usize;
        passed += keep as u64;
        if keep < chunk.len() {
            // What fits goes on; the next poll ends the body with the error.
            return Ok(chunk.slice(..keep));
        }
        Ok(chunk)
    }))
}

/// Flip (XOR 0xFF) the byte at `offset` of the stream.
pub(super) fn corrupt_byte(inner: ByteStream, offset: u64) -> ByteStream {
    let mut pos = 0u64;
    Box::pin(inner.map_ok(move |chunk| {
        let start = pos;
        pos += chunk.len() as u64;
        if offset >= start && offset < pos {
            let mut b = BytesMut::from(&chunk[..]);
            b[(offset - start) as usize] ^= 0xFF;
            b.freeze()
        } else {
            chunk
        }
    }))
}
