//! An axum app served on loopback from a thread and runtime of its own, for the
//! fake services of the tests (token server, cloud auth APIs): it keeps
//! answering while a test's current-thread runtime is blocked (running skopeo,
//! say) or after that runtime is gone.

use std::future::IntoFuture;
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;

use axum::Router;
use tokio::sync::oneshot;

/// A running server; stopped, and its thread joined, on drop.
#[derive(Debug)]
pub struct BackgroundServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Serves `app` on `127.0.0.1:<free port>`.
    pub fn start(name: &str, app: Router) -> BackgroundServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {name}: {e}"));
        Self::serve(name, listener, app)
    }

    /// Serves `app` on a listener bound beforehand (when the address must be known first).
    pub fn serve(name: &str, listener: TcpListener, app: Router) -> BackgroundServer {
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("listener address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let label = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("{label} runtime: {e}"));
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        served = axum::serve(listener, app).into_future() => {
                            served.unwrap_or_else(|e| panic!("{label}: {e}"))
                        }
                        _ = stop => {}
                    }
                });
            })
            .unwrap_or_else(|e| panic!("spawn {name} thread: {e}"));
        BackgroundServer {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
