//! Upstreams that never answer, on loopback: one that accepts connections
//! and then says nothing (a process stuck behind its listener), and one
//! whose handshakes never complete (a host that drops packets).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// An address that never answers; it stops on drop.
pub struct HungServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// What keeps the listen queue of [`HungServer::unreachable`] full.
    _held: Vec<TcpStream>,
    _listener: Option<TcpListener>,
}

impl HungServer {
    /// Accepts every connection and reads what comes, but never sends a byte.
    pub fn accepting() -> HungServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hung-accepting".into())
            .spawn(move || {
                let mut open = Vec::new();
                let mut buffer = [0; 4096];
                while !stopped.load(Ordering::Relaxed) {
                    if let Ok((stream, _)) = listener.accept() {
                        stream.set_nonblocking(true).expect("nonblocking");
                        open.push(stream);
                    }
                    // Drain what clients send, so that their writes never block.
                    for stream in &mut open {
                        while let Ok(n) = stream.read(&mut buffer) {
                            if n == 0 {
                                break;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .expect("spawn");
        HungServer {
            addr,
            stop,
            thread: Some(thread),
            _held: Vec::new(),
            _listener: None,
        }
    }

    /// A listener whose queue is full and never drained: the kernel drops
    /// new handshakes, so a connection attempt hangs until its own timeout.
    pub fn unreachable() -> HungServer {
        Self::unreachable_at("127.0.0.1:0".parse().expect("address"))
    }

    /// [`unreachable`](Self::unreachable) at `addr` (the address of an
    /// upstream that just went away, say).
    pub fn unreachable_at(addr: SocketAddr) -> HungServer {
        // An upstream that was just told to stop may hold the port a moment longer.
        let started = std::time::Instant::now();
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(listener) => break listener,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && started.elapsed() < Duration::from_secs(5) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        // The smallest queue; listen() again only changes its length.
        // SAFETY: a valid, listening socket of ours.
        let listened = unsafe { libc::listen(listener.as_raw_fd(), 0) };
        assert_eq!(listened, 0, "listen: {}", std::io::Error::last_os_error());
        let addr = listener.local_addr().expect("address");
        let mut held = Vec::new();
        // Fill the queue: once full, further handshakes get no answer.
        while let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            held.push(stream);
            assert!(held.len() < 64, "the listen queue of {addr} never fills");
        }
        HungServer {
            addr,
            stop: Arc::new(AtomicBool::new(true)),
            thread: None,
            _held: held,
            _listener: Some(listener),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn an_accepting_server_takes_the_request_and_never_answers() {
        let hung = HungServer::accepting();
        let mut stream = TcpStream::connect(hung.addr()).expect("connect");
        stream
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let error = stream.read(&mut [0; 16]).expect_err("no answer");
        assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{error}"
        );
    }

    #[test]
    fn an_unreachable_server_never_completes_a_handshake() {
        let hung = HungServer::unreachable();
        let error =
            TcpStream::connect_timeout(&hung.addr(), Duration::from_millis(300)).expect_err("no handshake");
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
    }
}
