//! Connection tracking, for an exact `ResetAfter`: a listener whose connections count their
//! completed flushes, and the per-connection flush counter the proxy handler gets as connect
//! info.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP listener whose connections count their completed flushes.
pub(super) struct TrackedListener(pub(super) TcpListener);

impl Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let (flushes, _) = watch::channel(0);
                    return (
                        TrackedStream {
                            inner: stream,
                            flushes,
                        },
                        addr,
                    );
                }
                // E.g. EMFILE: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A TCP stream that bumps a counter every time a flush completes. hyper writes its whole
/// buffer into the socket before it flushes the socket, so a completed flush means every byte
/// hyper had buffered until then is in the kernel.
pub(super) struct TrackedStream {
    inner: TcpStream,
    flushes: watch::Sender<u64>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        if let std::task::Poll::Ready(Ok(())) = res {
            self.flushes.send_modify(|n| *n = n.wrapping_add(1));
        }
        res
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Per-connection flush counter, handed to the handler as connect info.
#[derive(Clone)]
pub(super) struct ConnFlushes(pub(super) watch::Receiver<u64>);

impl Connected<IncomingStream<'_, TrackedListener>> for ConnFlushes {
    fn connect_info(stream: IncomingStream<'_, TrackedListener>) -> Self {
        ConnFlushes(stream.io().flushes.subscribe())
    }
}
