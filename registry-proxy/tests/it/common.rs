//! A cache server for the tests, on its own thread and runtime (so that it
//! keeps answering while a test blocks on podman or skopeo), and the
//! configuration of a cache in front of test registries.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use conformance::harness::fault_proxy::FaultProxy;
use conformance::harness::fixtures::{OCI_CONFIG, OCI_MANIFEST};
use conformance::harness::{Pusher, noise};
use registry_client::driver::oci::OciOption;
use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient, RetryConfig};
use registry_proxy::{Config, Proxy, RouteConfig};
use serde_json::json;
use tokio::sync::oneshot;

/// A running cache; stopped (gracefully) on drop. Every error answer it
/// sends is checked for the cache's directory: a client must never learn a
/// local path (the drop fails the test that saw one).
pub struct RunningProxy {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    leaks: Arc<Mutex<Vec<String>>>,
}

/// What the tap looks for, and what it found.
#[derive(Clone)]
struct Leaks {
    directory: String,
    found: Arc<Mutex<Vec<String>>>,
}

/// Reads every error answer's body (they are small) and notes those that
/// name the cache's directory.
async fn no_local_paths(
    axum::extract::State(leaks): axum::extract::State<Leaks>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let target = request.uri().to_string();
    let response = next.run(request).await;
    if response.status().as_u16() < 400 {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1024 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    if text.contains(&leaks.directory) {
        leaks
            .found
            .lock()
            .unwrap()
            .push(format!("{target} -> {} {text}", parts.status));
    }
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

impl RunningProxy {
    /// Serves `config` on `127.0.0.1:<free port>` (`config.listen` is ignored).
    pub fn start(config: &Config) -> RunningProxy {
        let proxy = Proxy::new(config, |builder| {
            // Hermetic: never the developer's docker config. Fast retries.
            builder
                .option(OciOption::DockerConfig, "/nonexistent/config.json")
                .retry(
                    RetryConfig::default()
                        .with_initial_backoff(Duration::from_millis(10))
                        .with_max_backoff(Duration::from_millis(50)),
                )
        })
        .expect("build the proxy");
        Self::serve(proxy)
    }

    pub fn serve(proxy: Proxy) -> RunningProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let leaks = Leaks {
            directory: proxy.directory().to_string_lossy().into_owned(),
            found: Arc::default(),
        };
        let found = leaks.found.clone();
        let thread = std::thread::Builder::new()
            .name("mcreg-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let tap = |router: axum::Router| {
                        router.layer(axum::middleware::from_fn_with_state(leaks, no_local_paths))
                    };
                    proxy
                        .serve_with(
                            listener,
                            async {
                                let _ = stop.await;
                            },
                            tap,
                        )
                        .await
                        .expect("serve");
                });
            })
            .expect("spawn the proxy thread");
        RunningProxy {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
            leaks: found,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server (as SIGTERM does) and returns how long it took.
    pub fn stop(mut self) -> std::time::Duration {
        let started = std::time::Instant::now();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        started.elapsed()
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let leaks = self.leaks.lock().unwrap_or_else(|p| p.into_inner());
        if !leaks.is_empty() && !std::thread::panicking() {
            panic!("error answers named the cache's directory:\n{}", leaks.join("\n"));
        }
    }
}

/// A cache in `dir` with one default route per upstream registry host (the
/// first is the default route).
/// A client for the tests' own requests, never sent through a proxy the
/// environment names (everything here is on loopback).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

pub fn config(dir: &Path, registries: &[String]) -> Config {
    let mut config =
        Config::for_registries("127.0.0.1:0".parse().unwrap(), dir.to_owned(), registries).expect("config");
    for (i, route) in config.routes.iter_mut().enumerate() {
        route.default = i == 0;
    }
    config
}

/// A cache in `dir` with exactly `routes`.
pub fn config_with_routes(dir: &Path, routes: Vec<RouteConfig>) -> Config {
    Config::with_routes("127.0.0.1:0".parse().unwrap(), dir.to_owned(), routes)
}

/// A recording fault proxy in front of the registry at `url`.
pub async fn recorded(url: &str) -> FaultProxy {
    FaultProxy::start(url.parse().expect("upstream URL")).await
}

/// The digests of the blob GETs `upstream` forwarded to its registry, sorted.
pub fn fetched_blobs(upstream: &FaultProxy) -> Vec<String> {
    let mut digests: Vec<String> = upstream
        .requests()
        .iter()
        .filter(|r| r.is_blob_get() && r.forwarded)
        .filter_map(|r| r.path.rsplit_once("/blobs/").map(|(_, d)| d.to_owned()))
        .collect();
    digests.sort();
    digests
}

/// A response header as text; empty when missing.
pub fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// One route, as `RouteConfig::for_registry` makes it.
pub fn route(registry: &str) -> RouteConfig {
    RouteConfig::for_registry(registry).expect("route")
}

/// Pulls `image` (`name:tag` or `name@digest`, linux/amd64) through the cache
/// with the SDK into an OCI layout; the manifest digest.
pub async fn pull_through(proxy: &RunningProxy, image: &str) -> String {
    let reference: ImageReference = format!("{}/{image}", proxy.host()).parse().expect("reference");
    let dir = tempfile::tempdir().expect("tempdir");
    RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .platform("linux/amd64")
        .build()
        .expect("client")
        .pull(&reference)
        .await
        .expect("resolve")
        .write_oci_layout(&dir.path().join("layout"), &PullOptions::default())
        .await
        .expect("pull")
        .digest
}

/// The cache's Prometheus text (`GET /metrics`).
pub async fn metrics(proxy: &RunningProxy) -> String {
    reqwest::get(format!("{}/metrics", proxy.url()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics")
}

/// The value of the series whose line starts with `series` (its name and
/// labels) in Prometheus text.
pub fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

/// Waits until the cache has committed a blob (its fill may still be closing).
pub async fn wait_for_hit(blob: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let http = reqwest::Client::new();
    while std::time::Instant::now() < deadline {
        let head = http.head(blob).send().await.expect("HEAD");
        if head.headers().get("x-cache").is_some_and(|v| v == "HIT") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{blob} was never committed");
}

/// An image pushed upstream as `<repository>:v1`.
pub struct Image {
    pub repository: String,
    pub digest: String,
    pub manifest_size: u64,
    /// The config, then the layers.
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl Image {
    /// What it takes upstream: its manifest and its blobs.
    pub fn size(&self) -> u64 {
        self.manifest_size + self.blobs.iter().map(|(_, data)| data.len() as u64).sum::<u64>()
    }
}

/// An OCI image with layers of `sizes` bytes of noise that no other image
/// shares (`seed` makes them), pushed as `<repository>:v1`.
pub async fn push_noise_image(pusher: &Pusher, repository: &str, seed: u64, sizes: &[usize]) -> Image {
    let mut layers = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let data = noise(seed * 100 + n as u64, *size);
        layers.push((pusher.blob(repository, &data).await, data));
    }
    let diff_ids: Vec<&String> = layers.iter().map(|(digest, _)| digest).collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    let config_digest = pusher.blob(repository, &config).await;
    let descriptor = |media_type: &str, digest: &str, size: usize| json!({"mediaType": media_type, "digest": digest, "size": size});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config_digest, config.len()),
        "layers": layers
            .iter()
            .map(|(digest, data)| descriptor("application/vnd.oci.image.layer.v1.tar", digest, data.len()))
            .collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let digest = pusher.manifest(repository, "v1", OCI_MANIFEST, &manifest).await;
    let mut blobs = vec![(config_digest, config)];
    blobs.extend(layers);
    Image {
        repository: repository.to_owned(),
        digest,
        manifest_size: manifest.len() as u64,
        blobs,
    }
}

/// A tmpfs of a given size mounted on a new directory, unmounted on drop:
/// a small disk that fills up. `None`, with the reason printed, when this
/// process may not mount (it is not root).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `size` as mount(8) takes it (`40m`).
    pub fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a {size} tmpfs needs root, and this test runs as another user");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mount a tmpfs on {}", dir.path().display());
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left of it with a file; removing the file frees it.
    pub fn fill_up(&self) -> std::path::PathBuf {
        use std::io::Write;
        let ballast = self.path().join("ballast");
        let mut file = std::fs::File::create(&ballast).expect("ballast");
        let chunk = vec![0_u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // What a whole chunk no longer fits in: byte by byte.
        while file.write_all(&[0]).is_ok() {}
        ballast
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Every file under `dir` (none if it does not exist).
pub fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
