//! The cache in an S3 bucket (moto's S3 server), shared by replicas: what
//! one replica fetched is a hit on another, tag records included, two
//! replicas filling the same blob at once leave it whole and right, and a
//! replica killed mid-fill leaves nothing partial behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{RunningProxy, config, pull_through};
use conformance::harness::fault_proxy::{Fault, FaultProxy, Matcher};
use conformance::harness::{AuthMode, Pusher, TestRegistry, free_port, moto_url};
use registry_client::driver::oci::OciOption;
use registry_proxy::{Config, Proxy, S3Config};
use url::Url;

/// A new, empty bucket on moto's S3.
async fn bucket() -> S3Config {
    let name = format!("mcreg-cache-{}", rand_suffix());
    let created = reqwest::Client::new()
        .put(format!("{}/{name}", moto_url()))
        .send()
        .await
        .expect("create the bucket");
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
    S3Config {
        bucket: name,
        prefix: Some("cache".into()),
        endpoint: Some(moto_url().to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some("AKIDMCREGMOTO".into()),
        secret_access_key: Some("mcreg-moto-secret".into()),
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A replica: its own local spool, the shared bucket.
fn replica(upstream: &str, s3: &S3Config, dir: &std::path::Path) -> Config {
    let mut config = config(dir, &[upstream.to_owned()]);
    config.s3 = Some(s3.clone());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_bucket_share_the_cache() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let upstream = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    let s3 = bucket().await;
    let (dir_a, dir_b) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    let a = RunningProxy::start(&replica(&upstream.host(), &s3, dir_a.path()));
    let b = RunningProxy::start(&replica(&upstream.host(), &s3, dir_b.path()));
    let image = &registry.fixtures().many_layers;
    let name = format!("{}:v1", image.repository);

    assert_eq!(pull_through(&a, &name).await, image.digest);
    let fetched = upstream.requests().len();
    assert!(upstream.requests().iter().any(|r| r.is_blob_get()));

    // Replica B finds everything in the bucket: the tag record (still
    // fresh), the manifest, every blob. The upstream is not asked.
    assert_eq!(pull_through(&b, &name).await, image.digest);
    assert_eq!(
        upstream.requests().len(),
        fetched,
        "{:?}",
        &upstream.requests()[fetched..]
    );
    let blob = format!(
        "{}/v2/{}/blobs/{}",
        b.url(),
        image.repository,
        image.layers[0].digest
    );
    let answer = reqwest::get(&blob).await.expect("GET");
    assert_eq!(answer.headers()["x-cache"], "HIT");
    assert_eq!(answer.bytes().await.expect("body"), image.layers[0].data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_filling_one_blob_at_once_leave_it_whole() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let data: Vec<u8> = (0..12 * 1024 * 1024_u32).map(|i| (i % 253) as u8).collect();
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    let upstream = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    // Both replicas are filling when the first answer starts.
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Delay {
            duration: Duration::from_millis(300),
            times: 2,
        },
    );
    let s3 = bucket().await;
    let (dir_a, dir_b, dir_c) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
        tempfile::tempdir().expect("c"),
    );
    let a = RunningProxy::start(&replica(&upstream.host(), &s3, dir_a.path()));
    let b = RunningProxy::start(&replica(&upstream.host(), &s3, dir_b.path()));
    let get = |proxy: &RunningProxy| reqwest::get(format!("{}/v2/big/blob/blobs/{digest}", proxy.url()));
    let (from_a, from_b) = tokio::join!(get(&a), get(&b));
    let (from_a, from_b) = (from_a.expect("a"), from_b.expect("b"));
    assert_eq!(from_a.headers()["x-cache"], "MISS");
    assert_eq!(from_b.headers()["x-cache"], "MISS");
    assert_eq!(from_a.bytes().await.expect("a body").as_ref(), data.as_slice());
    assert_eq!(from_b.bytes().await.expect("b body").as_ref(), data.as_slice());
    assert_eq!(upstream.requests().iter().filter(|r| r.is_blob_get()).count(), 2);

    // A third replica reads the bucket's one object: whole, right.
    let c = RunningProxy::start(&replica(&upstream.host(), &s3, dir_c.path()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&c).await.expect("c");
        if answer.headers()["x-cache"] == "HIT" {
            assert_eq!(answer.bytes().await.expect("c body").as_ref(), data.as_slice());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never committed to the bucket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A replica as a process of its own, so that it can be killed outright:
/// SIGKILL, no shutdown, no clean-up. The process is this test binary,
/// running [`replica_process`] on a config file. Killed on drop.
struct ServeProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// The variable that gives a `ServeProcess` the bucket's secret key.
const SECRET_VARIABLE: &str = "MCREG_TEST_S3_SECRET";
/// The variables that tell [`replica_process`] what to serve, and where.
const CONFIG_VARIABLE: &str = "MCREG_TEST_REPLICA_CONFIG";
const LISTEN_VARIABLE: &str = "MCREG_TEST_REPLICA_LISTEN";

/// The body of a [`ServeProcess`]: loads the config file, as `mcreg serve
/// --config` does, and serves until killed. Ignored, so a normal run skips
/// it; a `ServeProcess` runs it with `--ignored --exact`.
#[test]
#[ignore = "the replica process that a_replica_killed_mid_fill_… starts and kills"]
fn replica_process() {
    let file = PathBuf::from(std::env::var_os(CONFIG_VARIABLE).expect("a config file"));
    let listen = std::env::var(LISTEN_VARIABLE).expect("an address");
    let config = registry_proxy::config::load(&file, file.with_file_name("spool")).expect("the config");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let proxy = Proxy::new(&config, |builder| {
            builder.option(OciOption::DockerConfig, "/nonexistent/config.json")
        })
        .expect("build the proxy");
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        proxy
            .serve(listener, std::future::pending())
            .await
            .expect("serve");
    });
}

impl ServeProcess {
    /// A replica named `replica` with its spool in `dir`, caching `upstream`
    /// in the bucket `s3`.
    fn start(replica: &str, upstream: &str, s3: &S3Config, dir: &Path) -> ServeProcess {
        let file = dir.join("proxy.toml");
        let config = format!(
            r#"
[storage]
path = "{spool}"
replica = "{replica}"

[storage.s3]
bucket = "{bucket}"
prefix = "{prefix}"
endpoint = "{endpoint}"
region = "{region}"
access_key_id = "{key}"
secret_access_key_env = "{SECRET_VARIABLE}"

[[route]]
registry = "{upstream}"
default = true
"#,
            spool = dir.join("spool").display(),
            bucket = s3.bucket,
            prefix = s3.prefix.as_deref().unwrap_or_default(),
            endpoint = s3.endpoint.as_deref().unwrap_or_default(),
            region = s3.region.as_deref().unwrap_or_default(),
            key = s3.access_key_id.as_deref().unwrap_or_default(),
        );
        std::fs::write(&file, config).expect("write the config");
        let (port, log) = (free_port(), dir.join("serve.log"));
        let test = conformance::harness::own_process::test_name(module_path!(), "replica_process");
        let child = Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--ignored", "--exact", &test, "--nocapture"])
            .env(CONFIG_VARIABLE, &file)
            .env(LISTEN_VARIABLE, format!("127.0.0.1:{port}"))
            // Hermetic: never the developer's docker config or AWS settings.
            .env("HOME", dir)
            .env(
                SECRET_VARIABLE,
                s3.secret_access_key.as_deref().unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log file"))
            .spawn()
            .expect("start the replica");
        let mut server = ServeProcess { child, port, log };
        server.wait_listening();
        server
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the replica exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the replica never listened:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and waits until it is gone.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL of an object of the cache in the bucket (moto answers unsigned
/// requests).
fn object_url(s3: &S3Config, key: &str) -> String {
    let prefix = s3.prefix.as_deref().unwrap_or_default();
    format!("{}/{}/{prefix}/{key}", moto_url(), s3.bucket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_fill_leaves_the_other_serving_whole_bytes() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let data: Vec<u8> = (0..16 * 1024 * 1024_u32).map(|i| (i % 251) as u8).collect();
    let digest = Pusher::new(&registry.url()).blob("big/blob", &data).await;
    let upstream = FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await;
    // A's download crawls (16 s at 1 MiB/s): it is still filling when killed.
    // The rule is used up by then: B's download runs at full speed.
    upstream.inject_when(
        Matcher::blob_gets(),
        Fault::Throttle {
            bytes_per_second: 1024 * 1024,
            times: 1,
        },
    );
    let s3 = bucket().await;
    let (dir_a, dir_b) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    let mut a = ServeProcess::start("a", &upstream.host(), &s3, dir_a.path());
    let blob = |base: &str| format!("{base}/v2/big/blob/blobs/{digest}");
    // The route's default name is its registry with `.` and `:` as `-`.
    let route = upstream.host().replace(['.', ':'], "-");
    let hex = digest.trim_start_matches("sha256:");
    let object = object_url(&s3, &format!("routes/{route}/blobs/sha256/{hex}"));
    let http = reqwest::Client::new();

    // A starts the fill: its first bytes reach us, and then A dies.
    let mut from_a = reqwest::get(blob(&a.url())).await.expect("GET from A");
    assert_eq!(from_a.headers()["x-cache"], "MISS", "{}", a.log());
    let first = from_a.chunk().await.expect("A's first bytes").expect("a chunk");
    a.kill();
    let mut received = first.len();
    let cut = loop {
        match from_a.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(
        cut && received < data.len(),
        "A's answer must end short, with an error: {received} bytes, cut: {cut}"
    );
    // Nothing partial under the blob's key: A never committed it.
    let head = http.head(&object).send().await.expect("HEAD the object");
    assert_eq!(head.status(), 404, "an object under {object} after A died");

    // B has no fill of A's to wait for: it fetches the blob again, whole.
    let b = RunningProxy::start(&replica(&upstream.host(), &s3, dir_b.path()));
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        let answer = reqwest::get(blob(&b.url())).await.expect("GET from B");
        let cache = answer.headers()["x-cache"].to_str().expect("text").to_owned();
        (cache, answer.bytes().await.expect("B's body"))
    })
    .await
    .expect("B answered within 30 s");
    assert_eq!(answer.0, "MISS");
    assert_eq!(answer.1.len(), data.len());
    assert_eq!(registry_client::model::digest::sha256(&answer.1), digest);
    assert_eq!(upstream.upstream_blob_gets(), 2, "A's fetch and B's");

    // B committed it (its answer may end before the upload to the bucket
    // does): a HIT, and the bucket holds the whole blob.
    common::wait_for_hit(&blob(&b.url())).await;
    let again = reqwest::get(blob(&b.url())).await.expect("GET from B");
    assert_eq!(again.headers()["x-cache"], "HIT");
    assert_eq!(again.bytes().await.expect("body").as_ref(), data.as_slice());
    let head = http.head(&object).send().await.expect("HEAD the object");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], data.len().to_string().as_str());
    assert_eq!(upstream.upstream_blob_gets(), 2);
}
