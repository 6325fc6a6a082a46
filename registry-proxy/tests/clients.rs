//! Real clients pull through the cache: podman through a `registries.conf`
//! mirror (the default route, then a route chosen by a path prefix) and
//! over HTTPS with the cache's CA trusted through `certs.d`, skopeo
//! into OCI layouts (one image, a whole index, a 300 MB image through a
//! cache on a 40 MiB disk), containerd through a
//! `hosts.toml` mirror (`?ns=` routing, and a prefix URL with
//! `override_path`); a pull by a virtual host name (`vhost_suffix`); and
//! the `/v2/` protocol checked directly with reqwest (headers, cache
//! states, refusals, bad names and digests, tag-list pages).
//!
//! Each upstream is a real Distribution registry with two recording proxies
//! in front of it: `via_cache`, the only way the cache reaches it, and
//! `direct`, the registry as the clients name it. A request that reaches
//! `direct` went around the cache.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    RunningProxy, Tmpfs, config, config_with_routes, fetched_blobs, http, metric, metrics, push_noise_image,
    route, wait_for_hit, walk,
};
use conformance::harness::fault_proxy::FaultProxy;
use conformance::harness::tools::{self, layout_digest};
use conformance::harness::{
    AuthMode, Containerd, ImageFixture, Pusher, TestRegistry, fixtures, sha256_digest,
    write_ca_signed_tls_files,
};
use registry_proxy::{Config, RouteConfig, UpstreamConfig};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LINK};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use url::Url;

/// A registry and two recording proxies in front of it.
struct Upstream {
    /// What the cache fetches from.
    via_cache: FaultProxy,
    /// The registry as the clients name it: nothing should arrive here.
    direct: FaultProxy,
    /// The registry itself, asked only to learn what it holds.
    registry: TestRegistry,
}

impl Upstream {
    async fn start() -> Upstream {
        let registry = TestRegistry::start(AuthMode::None).await;
        let url = Url::parse(&registry.url()).expect("registry URL");
        let (via_cache, direct) = tokio::join!(FaultProxy::start(url.clone()), FaultProxy::start(url));
        Upstream {
            via_cache,
            direct,
            registry,
        }
    }

    /// A route for the registry as clients name it, fetching from
    /// `via_cache` first (the registry, asked after it, must see nothing).
    fn route_via_cache(&self, prefix: Option<&str>) -> RouteConfig {
        let mut route = route(&self.direct.host());
        route.prefix = prefix.map(str::to_owned);
        route.mirrors = vec![UpstreamConfig {
            url: format!("http://{}", self.via_cache.host()),
            credentials: None,
            insecure: true,
        }];
        route
    }

    /// The blob digests the cache fetched (GETs that reached the registry).
    fn blob_gets(&self) -> Vec<String> {
        fetched_blobs(&self.via_cache)
    }

    fn assert_not_contacted_directly(&self) {
        let requests = self.direct.requests();
        assert!(
            requests.is_empty(),
            "the registry was asked directly, around the cache: {requests:#?}"
        );
    }
}

/// An upstream and a cache whose one (default) route fetches from it.
struct Cached {
    up: Upstream,
    cache: RunningProxy,
    dir: tempfile::TempDir,
}

impl Cached {
    async fn start() -> Cached {
        let up = Upstream::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = RunningProxy::start(&config(&dir.path().join("cache"), &[up.via_cache.host()]));
        Cached { up, cache, dir }
    }

    /// `http://<cache>/v2/<rest>`.
    fn url(&self, rest: &str) -> String {
        format!("{}/v2/{rest}", self.cache.url())
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("an ASCII header").to_owned())
}

/// The status and the first error code of a registry error answer.
async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let text = response.text().await.expect("error body");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not a JSON error ({e}): {text}"));
    let code = body["errors"][0]["code"].as_str().unwrap_or_default().to_owned();
    (status, code)
}

/// Runs a real tool and returns its stdout; fails the test with its output
/// when it fails or is missing.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} could not run ({e}): run scripts/install-test-tools.sh"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// podman with a storage of its own under `dir` and `registries_conf`.
fn podman(dir: &Path, registries_conf: &Path, args: &[&str]) -> String {
    run(&mut podman_command(dir, registries_conf, args))
}

/// The command [`podman`] runs, for a test that expects it to fail.
fn podman_command(dir: &Path, registries_conf: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("podman");
    command
        .env("CONTAINERS_REGISTRIES_CONF", registries_conf)
        .args(["--root", utf8(&dir.join("root"))])
        .args(["--runroot", utf8(&dir.join("run"))])
        .args(["--storage-driver", "vfs"])
        .args(args);
    command
}

/// A `registries.conf` sending pulls from `registry` to the mirror `mirror`
/// (`host[:port][/namespace]`).
fn write_registries_conf(path: &Path, registry: &str, mirror: &str) {
    let text = format!(
        "[[registry]]\nlocation = \"{registry}\"\ninsecure = true\n\n\
         [[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = true\n"
    );
    std::fs::write(path, text).expect("write registries.conf");
}

/// Pulls `image` into the podman storage under `dir` and returns the
/// digest podman gives the image.
fn podman_pull(dir: &Path, registries_conf: &Path, image: &str) -> String {
    std::fs::create_dir_all(dir).expect("podman dir");
    podman(dir, registries_conf, &["pull", "--quiet", image]);
    let digest = podman(
        dir,
        registries_conf,
        &["image", "inspect", "--format", "{{.Digest}}", image],
    );
    digest.trim().to_owned()
}

/// The config and layer digests of `images`, sorted.
fn blob_digests<'f>(images: impl IntoIterator<Item = &'f ImageFixture>) -> Vec<String> {
    let mut digests: Vec<String> = images
        .into_iter()
        .flat_map(|image| {
            std::iter::once(image.config_digest.clone()).chain(image.layers.iter().map(|l| l.digest.clone()))
        })
        .collect();
    digests.sort();
    digests
}

/// The platform podman picks from an index on this machine.
fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux/arm64/v8",
        "arm" => "linux/arm/v7",
        _ => "linux/amd64",
    }
}

/// podman through a mirror in `registries.conf`, requests without a prefix:
/// the cache's default route serves them, the registry is never asked, the
/// digests are the registry's, and a second pull into a fresh storage is
/// answered from the cache alone.
#[tokio::test]
async fn podman_pulls_through_a_registries_conf_mirror() {
    let cached = Cached::start().await;
    let up = &cached.up;
    let conf = cached.dir.path().join("registries.conf");
    write_registries_conf(&conf, &up.direct.host(), &cached.cache.host());
    let single = &fixtures().single_oci;
    let multi = &fixtures().multi_oci;

    let digest = podman_pull(
        &cached.dir.path().join("podman1"),
        &conf,
        &single.reference(&up.direct.host()),
    );
    assert_eq!(digest, single.digest, "podman's digest of single/oci");
    assert_eq!(up.blob_gets(), blob_digests([single]), "each blob fetched once");

    // An index: podman resolves the tag, then its platform's child by digest.
    up.via_cache.clear_log();
    let digest = podman_pull(
        &cached.dir.path().join("podman1"),
        &conf,
        &multi.reference(&up.direct.host()),
    );
    assert_eq!(digest, multi.digest, "podman's digest of multi/oci");
    assert_eq!(up.blob_gets(), blob_digests([multi.child(host_platform())]));

    // Pulled again into an empty storage: the tag is fresh, every blob cached.
    up.via_cache.clear_log();
    let digest = podman_pull(
        &cached.dir.path().join("podman2"),
        &conf,
        &single.reference(&up.direct.host()),
    );
    assert_eq!(digest, single.digest);
    let requests = up.via_cache.requests();
    assert!(requests.is_empty(), "a warm pull asked upstream: {requests:#?}");
    up.assert_not_contacted_directly();
}

/// podman through a mirror with a namespace (`<cache>/up`): the route whose
/// prefix is `up` serves it although another route is the default.
#[tokio::test]
async fn podman_pulls_through_a_mirror_with_a_prefix() {
    let (up, other) = tokio::join!(Upstream::start(), Upstream::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut default = route(&other.via_cache.host());
    default.default = true;
    let mut prefixed = route(&up.via_cache.host());
    prefixed.prefix = Some("up".into());
    let cache = RunningProxy::start(&hand_made(dir.path(), vec![default, prefixed]));
    let conf = dir.path().join("registries.conf");
    write_registries_conf(&conf, &up.direct.host(), &format!("{}/up", cache.host()));

    for (n, image) in [&fixtures().single_oci, &fixtures().nested]
        .into_iter()
        .enumerate()
    {
        up.via_cache.clear_log();
        let digest = podman_pull(
            &dir.path().join(format!("podman{n}")),
            &conf,
            &image.reference(&up.direct.host()),
        );
        assert_eq!(digest, image.digest, "podman's digest of {}", image.repository);
        assert_eq!(up.blob_gets(), blob_digests([image]));
    }
    up.assert_not_contacted_directly();
    let requests = other.via_cache.requests();
    assert!(requests.is_empty(), "the default route was used: {requests:#?}");
}

/// The digest of `repository:tag` and of its image's config, as the registry
/// itself answers them (not the fixture's idea of them).
async fn upstream_digests(registry: &TestRegistry, repository: &str, tag: &str) -> (String, String) {
    let response = http()
        .get(format!("{}/v2/{repository}/manifests/{tag}", registry.url()))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .expect("GET the manifest from the registry");
    assert_eq!(response.status(), StatusCode::OK);
    let digest = header(response.headers(), "docker-content-digest").expect("Docker-Content-Digest");
    let manifest: Value = response.json().await.expect("a JSON manifest");
    let config = manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_owned();
    (digest, config)
}

/// podman pulls from a cache that serves HTTPS (`[server] tls_cert`, a
/// certificate for 127.0.0.1 signed by a test CA), verifying it: no
/// `--tls-verify=false`, no `insecure = true` for the cache. podman trusts
/// the CA as containers-certs.d(5) says, a `ca.crt` in a directory named
/// `certs.d/<host:port>`, given with `--cert-dir` (the test leaves
/// `/etc/containers/certs.d` alone). Without it the pull fails on the
/// certificate; with it the pull by the cache's name, and then through a
/// `registries.conf` mirror, gives the image the registry holds, fetched once
/// by the cache over its TLS-only port (its metrics and `X-Cache` agree).
// Multi-threaded: the HTTPS client's idle connection must be able to close
// while the cache stops at the end (else the stop waits out its grace period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pulls_over_tls_trusting_the_cache_ca() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = write_ca_signed_tls_files(dir.path());
    let mut config = config(&dir.path().join("cache"), &[up.via_cache.host()]);
    config.server.tls = Some((tls.tls.cert_path.clone(), tls.tls.key_path.clone()));
    let route = config.routes[0].name.clone();
    let cache = RunningProxy::start(&config);
    let host = cache.host();
    let https = format!("https://{host}");

    // What the user does: the CA (not the server's certificate) as ca.crt.
    let cert_dir = dir.path().join("certs.d").join(&host);
    std::fs::create_dir_all(&cert_dir).expect("certs.d/<host:port>");
    std::fs::copy(&tls.ca_path, cert_dir.join("ca.crt")).expect("ca.crt");
    let cert_dir = utf8(&cert_dir);
    let no_mirrors = dir.path().join("no-mirrors.conf");
    std::fs::write(&no_mirrors, "").expect("registries.conf");

    let single = &fixtures().single_oci;
    let (manifest_digest, config_digest) = upstream_digests(&up.registry, &single.repository, "v1").await;
    let image_id = config_digest.strip_prefix("sha256:").expect("sha256");
    let by_cache_name = single.reference(&host);

    // The CA not trusted: podman refuses the certificate, nothing is fetched.
    let output = podman_command(
        &dir.path().join("untrusted"),
        &no_mirrors,
        &["pull", "--quiet", &by_cache_name],
    )
    .output()
    .expect("podman runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "pulled without trusting the CA: {stderr}"
    );
    assert!(
        stderr.contains("x509: certificate signed by unknown authority"),
        "not a certificate error: {stderr}"
    );
    let asked = up.via_cache.requests();
    assert!(asked.is_empty(), "an untrusted pull reached upstream: {asked:#?}");

    // Trusted: by the cache's name, every blob fetched once upstream.
    let pull = |storage: &str, conf: &Path, image: &str| {
        let storage = dir.path().join(storage);
        std::fs::create_dir_all(&storage).expect("podman dir");
        podman(
            &storage,
            conf,
            &["pull", "--quiet", "--cert-dir", cert_dir, image],
        );
        let inspect = podman(
            &storage,
            conf,
            &["image", "inspect", "--format", "{{.Digest}} {{.Id}}", image],
        );
        let (digest, id) = inspect.trim().split_once(' ').expect("digest and ID");
        (digest.to_owned(), id.to_owned())
    };
    let (digest, id) = pull("by-name", &no_mirrors, &by_cache_name);
    assert_eq!(digest, manifest_digest, "the registry's manifest digest");
    assert_eq!(id, image_id, "the image ID is the registry's config digest");
    assert_eq!(up.blob_gets(), blob_digests([single]), "each blob fetched once");

    // Trusted: through a verified mirror (no `insecure` on it), the registry
    // named as usual; everything from the cache, the registry never asked.
    up.via_cache.clear_log();
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n\n\
             [[registry.mirror]]\nlocation = \"{host}\"\n",
            up.direct.host()
        ),
    )
    .expect("write registries.conf");
    let (digest, id) = pull("by-mirror", &conf, &single.reference(&up.direct.host()));
    assert_eq!(
        (digest.as_str(), id.as_str()),
        (manifest_digest.as_str(), image_id)
    );
    let asked = up.via_cache.requests();
    assert!(asked.is_empty(), "a warm pull asked upstream: {asked:#?}");
    up.assert_not_contacted_directly();

    // The cache's side, over TLS verified against the same CA: the manifest
    // and both blobs were a miss once and a hit once, and are cached.
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).expect("CA"))
        .build()
        .expect("HTTPS client");
    let metrics = client
        .get(format!("{https}/metrics"))
        .send()
        .await
        .expect("GET /metrics over TLS")
        .text()
        .await
        .expect("metrics");
    for (result, count) in [("miss", 3.0), ("hit", 3.0)] {
        let series = format!("mcreg_cache_results_total{{route=\"{route}\",result=\"{result}\"}}");
        assert_eq!(metric(&metrics, &series), count, "{series}\n{metrics}");
    }
    let response = client
        .get(format!("{https}/v2/{}/manifests/v1", single.repository))
        .send()
        .await
        .expect("GET the manifest over TLS");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(header(response.headers(), "x-cache").as_deref(), Some("HIT"));
    assert_eq!(
        header(response.headers(), "docker-content-digest"),
        Some(manifest_digest)
    );
    // The port speaks TLS only: what podman got came over TLS.
    assert!(http().get(format!("{}/v2/", cache.url())).send().await.is_err());
}

/// skopeo, kept off the machine's files (see the harness), and its output.
fn skopeo(dir: &Path, args: &[&str]) -> String {
    run(tools::skopeo(dir).args(args))
}

fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("blob {digest}: {e}"))
}

/// A cache on a 40 MiB disk asked for a 300 MB image: its layers do not
/// fit, so each is passed through from the upstream, verified, and skopeo
/// gets the whole image. With the disk full to the last byte even manifests
/// cannot be stored: the next pull still works, `/ready` says the storage
/// is failing (naming no path), and says ready again by itself once there
/// is room. Nothing half-written is left in the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_a_300_mb_image_whole_through_a_cache_on_a_40_mb_disk() {
    const MB: usize = 1000 * 1000;
    let Some(disk) = Tmpfs::mount("40m") else { return };
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let big = push_noise_image(&pusher, "big/image", 7, &[100 * MB; 3]).await;
    let small = push_noise_image(&pusher, "small/image", 8, &[2 * MB]).await;
    let cache = RunningProxy::start(&config(disk.path(), &[registry.host()]));
    let work = tempfile::tempdir().expect("tempdir");
    let copy = |repository: &str| {
        let layout = work.path().join(repository.replace('/', "-"));
        skopeo(
            work.path(),
            &[
                "copy",
                "--src-tls-verify=false",
                // The layers as they are (uncompressed noise), digests and all.
                "--dest-oci-accept-uncompressed-layers",
                "--preserve-digests",
                &format!("docker://{}/{repository}:v1", cache.host()),
                &format!("oci:{}:v1", utf8(&layout)),
            ],
        );
        layout
    };

    let layout = copy("big/image");
    assert_eq!(layout_digest(&layout, "v1"), big.digest);
    for (digest, data) in &big.blobs {
        assert_eq!(layout_blob(&layout, digest).len(), data.len(), "{digest}");
    }
    let text = metrics(&cache).await;
    assert!(
        metric(&text, "mcreg_fills_stopped_total{reason=\"no_room\"}") >= 3.0,
        "{text}"
    );

    let ballast = disk.fill_up();
    let layout = copy("small/image");
    assert_eq!(layout_digest(&layout, "v1"), small.digest);
    let ready = http()
        .get(format!("{}/ready", cache.url()))
        .send()
        .await
        .expect("GET /ready");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = ready.text().await.expect("body");
    assert!(body.contains("storage is failing"), "{body}");
    assert!(!body.contains(utf8(disk.path())), "{body}");
    assert!(metric(&metrics(&cache).await, "mcreg_storage_errors_total{") >= 1.0);

    std::fs::remove_file(ballast).expect("make room");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ready = http()
            .get(format!("{}/ready", cache.url()))
            .send()
            .await
            .expect("GET /ready");
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // What was stored is whole; nothing is left in the spool.
    let stored = walk(&disk.path().join("store/routes"));
    let blob = |f: &&PathBuf| {
        let path = f.to_string_lossy();
        path.contains("/blobs/sha256/") && !path.contains("/_links/")
    };
    for file in stored.iter().filter(blob) {
        let name = file.file_name().expect("name").to_string_lossy();
        let data = std::fs::read(file).expect("read");
        assert_eq!(
            sha256_digest(&data),
            format!("sha256:{name}"),
            "{}",
            file.display()
        );
    }
    let spooled = walk(&disk.path().join("spool"));
    assert!(spooled.is_empty(), "{spooled:?}");
}

/// `skopeo copy` from the cache into OCI layouts: one image (the default
/// route), a nested name (its route's prefix), and a whole index with
/// `--all`. The layouts hold the registry's exact manifests; a second copy
/// asks the registry nothing.
#[tokio::test]
async fn skopeo_copies_through_the_cache() {
    let cached = Cached::start().await;
    let up = &cached.up;
    let dir = cached.dir.path();
    let cache = cached.cache.host();
    let prefix = up.via_cache.host().replace(':', "-");
    let (single, nested, multi) = (&fixtures().single_oci, &fixtures().nested, &fixtures().multi_oci);

    let copy = |source: &str, layout: &PathBuf, all: bool| {
        let destination = format!("oci:{}:v1", utf8(layout));
        let mut args = vec!["copy", "--src-tls-verify=false"];
        if all {
            args.push("--all");
        }
        args.extend([source, destination.as_str()]);
        skopeo(dir, &args);
    };

    let layout = dir.join("single");
    copy(&format!("docker://{cache}/single/oci:v1"), &layout, false);
    assert_eq!(layout_digest(&layout, "v1"), single.digest);
    let raw = skopeo(dir, &["inspect", "--raw", &format!("oci:{}:v1", utf8(&layout))]);
    assert_eq!(
        raw.as_bytes(),
        single.manifest.as_ref(),
        "the manifest, byte for byte"
    );
    assert_eq!(up.blob_gets(), blob_digests([single]));

    up.via_cache.clear_log();
    let layout = dir.join("nested");
    copy(&format!("docker://{cache}/{prefix}/a/b/c/d:v1"), &layout, false);
    assert_eq!(layout_digest(&layout, "v1"), nested.digest);
    assert_eq!(up.blob_gets(), blob_digests([nested]));

    up.via_cache.clear_log();
    let layout = dir.join("multi");
    copy(&format!("docker://{cache}/multi/oci:v1"), &layout, true);
    assert_eq!(layout_digest(&layout, "v1"), multi.digest);
    assert_eq!(layout_blob(&layout, &multi.digest), multi.manifest.as_ref());
    for child in &multi.children {
        assert_eq!(
            layout_blob(&layout, &child.digest),
            child.manifest.as_ref(),
            "{}",
            child.platform
        );
    }
    assert_eq!(up.blob_gets(), blob_digests(&multi.children));

    // Again, into a fresh layout: everything from the cache.
    up.via_cache.clear_log();
    let layout = dir.join("multi-again");
    copy(&format!("docker://{cache}/multi/oci:v1"), &layout, true);
    assert_eq!(layout_digest(&layout, "v1"), multi.digest);
    let requests = up.via_cache.requests();
    assert!(requests.is_empty(), "a warm copy asked upstream: {requests:#?}");
    up.assert_not_contacted_directly();
}

/// `<hosts>/<registry>/hosts.toml` for `ctr --hosts-dir`: containerd's
/// mirror configuration, the registry itself as the last resort.
fn write_hosts_toml(hosts: &Path, registry: &str, mirrors: &str) {
    let file = hosts.join(registry).join("hosts.toml");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("hosts dir");
    std::fs::write(&file, format!("server = \"http://{registry}\"\n\n{mirrors}")).expect("write hosts.toml");
}

/// `ctr images pull` into `namespace` through the mirrors in `hosts`,
/// unpacked with the native snapshotter (no overlayfs in a container).
fn ctr_pull(containerd: &Containerd, namespace: &str, hosts: &Path, image: &str, all_platforms: bool) {
    let mut args = vec![
        "--namespace",
        namespace,
        "images",
        "pull",
        "--snapshotter",
        "native",
    ];
    if all_platforms {
        args.push("--all-platforms");
    } else {
        args.extend(["--platform", "linux/amd64"]);
    }
    args.extend(["--hosts-dir", utf8(hosts), "--plain-http", image]);
    containerd.ctr(&args);
}

/// The manifest digest containerd recorded for `image` (`ctr images ls`),
/// after checking that `ctr images check` finds all its content there.
fn ctr_image_digest(containerd: &Containerd, namespace: &str, image: &str) -> String {
    let columns = |listing: String| -> Vec<String> {
        listing
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|columns| columns.first().map(String::as_str) == Some(image))
            .unwrap_or_else(|| panic!("no {image} in:\n{listing}"))
    };
    // REF TYPE DIGEST STATUS SIZE UNPACKED
    let check = columns(containerd.ctr(&["--namespace", namespace, "images", "check"]));
    assert!(
        check.get(3).is_some_and(|status| status.starts_with("complete")),
        "{image} is not complete in containerd: {check:?}"
    );
    // REF TYPE DIGEST SIZE PLATFORMS LABELS
    let listed = columns(containerd.ctr(&["--namespace", namespace, "images", "ls"]));
    listed[2].clone()
}

/// The `ns=` parameter of a recorded request.
fn ns_of(request: &conformance::harness::fault_proxy::RecordedRequest) -> Option<String> {
    request
        .query
        .as_deref()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "ns"))
        .map(|(_, v)| v.into_owned())
}

/// The digest the registry itself gives `repository:tag` (a `HEAD`
/// accepting manifests and indexes).
async fn registry_digest(registry: &TestRegistry, repository: &str, tag: &str) -> String {
    let response = http()
        .head(format!("{}/v2/{repository}/manifests/{tag}", registry.url()))
        .header(
            "accept",
            "application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .expect("HEAD the manifest at the registry");
    assert_eq!(response.status(), StatusCode::OK, "{repository}:{tag}");
    header(response.headers(), "docker-content-digest").expect("Docker-Content-Digest")
}

/// containerd through a `hosts.toml` mirror: it sends `?ns=<registry>`, and
/// the cache finds the route for that registry (not the default route, no
/// prefix in the path), which fetches from its mirror. `ctr images pull`
/// (native snapshotter: no overlayfs needed) unpacks the image, and the
/// image containerd records has the registry's own manifest digest. A
/// second pull in a fresh namespace is answered from the cache alone.
#[tokio::test]
async fn containerd_pulls_through_a_hosts_toml_mirror() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = up.direct.host();
    let mut default = route("default.invalid");
    default.default = true;
    // The route is for the registry containerd names; it fetches from the
    // recording proxy first (and would fall back to the registry, which
    // must then see nothing).
    let by_ns = up.route_via_cache(None);
    let cache = RunningProxy::start(&hand_made(dir.path(), vec![default, by_ns]));
    // What containerd sends the cache, recorded.
    let front = FaultProxy::start(Url::parse(&cache.url()).expect("URL")).await;

    let containerd = Containerd::start();
    let hosts = dir.path().join("hosts");
    write_hosts_toml(
        &hosts,
        &registry,
        &format!(
            "[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            front.host()
        ),
    );
    let (single, multi) = (&fixtures().single_oci, &fixtures().multi_oci);
    let single_digest = registry_digest(&up.registry, &single.repository, "v1").await;
    let multi_digest = registry_digest(&up.registry, &multi.repository, "v1").await;

    let image = single.reference(&registry);
    ctr_pull(&containerd, "one", &hosts, &image, false);
    assert_eq!(
        ctr_image_digest(&containerd, "one", &image),
        single_digest,
        "containerd's image is the registry's manifest"
    );
    assert_eq!(up.blob_gets(), blob_digests([single]));
    let sent = front.requests();
    assert!(!sent.is_empty(), "containerd did not ask the cache");
    for request in &sent {
        assert_eq!(ns_of(request).as_deref(), Some(registry.as_str()), "{request:?}");
        assert!(
            matches!(request.status, Some(200)),
            "containerd's request answered {:?}: {request:?}",
            request.status
        );
    }

    // A fresh namespace pulls every blob again, from the cache.
    up.via_cache.clear_log();
    ctr_pull(&containerd, "two", &hosts, &image, false);
    assert_eq!(ctr_image_digest(&containerd, "two", &image), single_digest);
    let requests = up.via_cache.requests();
    assert!(requests.is_empty(), "a warm pull asked upstream: {requests:#?}");

    // An index and all its platforms.
    up.via_cache.clear_log();
    let image = multi.reference(&registry);
    ctr_pull(&containerd, "three", &hosts, &image, true);
    assert_eq!(ctr_image_digest(&containerd, "three", &image), multi_digest);
    assert_eq!(up.blob_gets(), blob_digests(&multi.children));
    up.assert_not_contacted_directly();

    // The cache names the registry it answered for.
    let response = http()
        .get(format!(
            "{}/v2/single/oci/manifests/v1?ns={registry}",
            cache.url()
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "oci-namespace"),
        Some(registry.clone())
    );
    assert_eq!(header(response.headers(), "x-cache").as_deref(), Some("HIT"));
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        single.manifest.as_ref()
    );
    // Without ns= this cache's default route (another registry) is asked.
    let response = http()
        .get(format!("{}/v2/single/oci/manifests/v1", cache.url()))
        .send()
        .await
        .expect("GET");
    assert!(
        !response.status().is_success(),
        "the default route served the ns= route's image"
    );
    up.assert_not_contacted_directly();
}

/// `GET /v2/` and `HEAD /v2/`: the API version check.
#[tokio::test]
async fn version_check() {
    let cached = Cached::start().await;
    for request in [http().get(cached.url("")), http().head(cached.url(""))] {
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(response.headers(), "docker-distribution-api-version").as_deref(),
            Some("registry/2.0"),
            "{:?}",
            response.headers()
        );
    }
}

/// `Docker-Distribution-API-Version: registry/2.0` is on every answer, not
/// only `/v2/`: manifests (`GET`, `HEAD`), blobs, tag lists, and each kind
/// of error (404, 405, 400, the endpoints the cache does not serve).
#[tokio::test]
async fn every_answer_carries_the_api_version() {
    let cached = Cached::start().await;
    let client = http();
    let layer = &fixtures().single_oci.layers[0].digest;
    let cases = [
        (client.get(cached.url("single/oci/manifests/v1")), 200, None),
        (client.head(cached.url("single/oci/manifests/v1")), 200, None),
        (
            client.get(cached.url(&format!("single/oci/blobs/{layer}"))),
            200,
            None,
        ),
        (client.get(cached.url("tags/many/tags/list")), 200, None),
        (
            client.get(cached.url("single/oci/manifests/nope")),
            404,
            Some("MANIFEST_UNKNOWN"),
        ),
        (
            client.put(cached.url("single/oci/manifests/v2")).body("{}"),
            405,
            Some("UNSUPPORTED"),
        ),
        (
            client.get(cached.url("Single/oci/manifests/v1")),
            400,
            Some("NAME_INVALID"),
        ),
        (client.get(cached.url("_catalog")), 404, Some("UNSUPPORTED")),
        (
            client.get(format!("{}/not-the-api", cached.cache.url())),
            404,
            Some("NOT_FOUND"),
        ),
    ];
    for (request, status, code) in cases {
        let request = request.build().expect("request");
        let what = format!("{} {}", request.method(), request.url());
        let response = client.execute(request).await.expect("send");
        assert_eq!(
            header(response.headers(), "docker-distribution-api-version").as_deref(),
            Some("registry/2.0"),
            "{what}: {:?}",
            response.headers()
        );
        // The answer is the one meant: the header is not only on successes.
        match code {
            Some(code) => assert_eq!(
                error_code(response).await,
                (StatusCode::from_u16(status).expect("status"), code.to_owned()),
                "{what}"
            ),
            None => assert_eq!(response.status().as_u16(), status, "{what}"),
        }
    }
}

/// Manifests by tag and by digest: the registry's media type, digest,
/// length and bytes; `X-Cache` MISS, then HIT; `HEAD` the same headers and
/// no body; unknown query parameters ignored.
#[tokio::test]
async fn manifest_answers() {
    let cached = Cached::start().await;
    let client = http();
    for image in [&fixtures().single_oci, &fixtures().single_docker] {
        let tag = image.tag.as_deref().expect("a tag");
        let by_tag = cached.url(&format!("{}/manifests/{tag}", image.repository));
        let by_digest = cached.url(&format!("{}/manifests/{}", image.repository, image.digest));
        let check = |headers: &HeaderMap, cache: &str, what: &str| {
            assert_eq!(
                header(headers, "content-type").as_deref(),
                Some(image.media_type),
                "{what}"
            );
            assert_eq!(
                header(headers, "docker-content-digest").as_deref(),
                Some(image.digest.as_str()),
                "{what}"
            );
            assert_eq!(
                header(headers, "content-length"),
                Some(image.manifest.len().to_string()),
                "{what}"
            );
            assert_eq!(header(headers, "x-cache").as_deref(), Some(cache), "{what}");
        };
        for (cache, url) in [("MISS", &by_tag), ("HIT", &by_tag), ("HIT", &by_digest)] {
            let response = client.get(url).send().await.expect("GET");
            assert_eq!(response.status(), StatusCode::OK, "GET {url}");
            check(response.headers(), cache, &format!("GET {url}"));
            let body = response.bytes().await.expect("body");
            assert_eq!(body.as_ref(), image.manifest.as_ref(), "GET {url}");
        }
        for url in [&by_tag, &by_digest, &format!("{by_tag}?foo=bar&n=1&last=zz")] {
            let response = client.head(url).send().await.expect("HEAD");
            assert_eq!(response.status(), StatusCode::OK, "HEAD {url}");
            check(response.headers(), "HIT", &format!("HEAD {url}"));
            assert!(response.bytes().await.expect("body").is_empty());
        }
        let response = client
            .get(format!("{by_tag}?foo=bar&digest=sha256:00&ns="))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "unknown parameters");
        check(response.headers(), "HIT", "unknown parameters");
    }

    // A HEAD on a cold cache: the registry's answer, nothing fetched.
    let multi = &fixtures().multi_oci;
    let child = multi.child("linux/arm64/v8");
    for (url, media_type, digest, manifest) in [
        (
            cached.url("multi/oci/manifests/v1"),
            multi.media_type,
            &multi.digest,
            &multi.manifest,
        ),
        (
            cached.url(&format!("multi/oci/manifests/{}", child.digest)),
            child.media_type,
            &child.digest,
            &child.manifest,
        ),
    ] {
        let response = client.head(&url).send().await.expect("HEAD");
        assert_eq!(response.status(), StatusCode::OK, "HEAD {url}");
        let headers = response.headers();
        assert_eq!(header(headers, "x-cache").as_deref(), Some("MISS"), "HEAD {url}");
        assert_eq!(
            header(headers, "content-type").as_deref(),
            Some(media_type),
            "HEAD {url}"
        );
        assert_eq!(
            header(headers, "docker-content-digest").as_ref(),
            Some(digest),
            "HEAD {url}"
        );
        assert_eq!(
            header(headers, "content-length"),
            Some(manifest.len().to_string()),
            "HEAD {url}"
        );
        assert!(response.bytes().await.expect("body").is_empty());
    }
    let child_get = cached.url(&format!("multi/oci/manifests/{}", child.digest));
    let response = client.get(&child_get).send().await.expect("GET");
    assert_eq!(header(response.headers(), "x-cache").as_deref(), Some("MISS"));
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        child.manifest.as_ref()
    );
    let gets = cached
        .up
        .via_cache
        .count(|r| r.method == reqwest::Method::GET && r.is_manifest());
    assert_eq!(
        gets, 3,
        "one GET per manifest, for single/oci, single/docker and a child"
    );

    // Not there: the spec's error.
    let response = client
        .get(cached.url("single/oci/manifests/nope"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
}

/// Blobs: bytes, digest and length; MISS then HIT; `HEAD`; a `Range`.
#[tokio::test]
async fn blob_answers() {
    let cached = Cached::start().await;
    let client = http();
    let layer = &fixtures().single_oci.layers[0];
    let url = cached.url(&format!("single/oci/blobs/{}", layer.digest));

    let response = client.head(&url).send().await.expect("HEAD");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "x-cache").as_deref(), Some("MISS"));
    assert_eq!(
        header(response.headers(), "content-length"),
        Some(layer.size.to_string())
    );
    assert_eq!(
        cached.up.blob_gets(),
        Vec::<String>::new(),
        "a HEAD downloads nothing"
    );

    for cache in ["MISS", "HIT"] {
        if cache == "HIT" {
            // The first answer may end before the fill's commit does.
            wait_for_hit(&url).await;
        }
        let response = client.get(&url).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(header(&headers, "x-cache").as_deref(), Some(cache));
        assert_eq!(
            header(&headers, "docker-content-digest").as_deref(),
            Some(layer.digest.as_str())
        );
        assert_eq!(header(&headers, "content-length"), Some(layer.size.to_string()));
        assert_eq!(response.bytes().await.expect("body"), layer.data);
    }
    assert_eq!(cached.up.blob_gets(), vec![layer.digest.clone()], "fetched once");

    let response = client
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(response.headers(), CONTENT_RANGE.as_str()),
        Some(format!("bytes 10-19/{}", layer.size))
    );
    assert_eq!(
        header(response.headers(), CONTENT_LENGTH.as_str()).as_deref(),
        Some("10")
    );
    assert_eq!(response.bytes().await.expect("body"), layer.data.slice(10..20));

    let response = client.head(&url).send().await.expect("HEAD");
    assert_eq!(header(response.headers(), "x-cache").as_deref(), Some("HIT"));

    let missing = format!("sha256:{}", "0".repeat(64));
    let response = client
        .get(cached.url(&format!("single/oci/blobs/{missing}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into())
    );
}

/// Push and delete: `405 UNSUPPORTED`, and nothing reaches the registry.
#[tokio::test]
async fn writes_are_refused() {
    let cached = Cached::start().await;
    let client = http();
    let digest = &fixtures().single_oci.digest;
    let layer = &fixtures().single_oci.layers[0].digest;
    let requests = [
        client
            .put(cached.url("single/oci/manifests/v2"))
            .header(CONTENT_TYPE, fixtures().single_oci.media_type)
            .body(fixtures().single_oci.manifest.clone()),
        client.delete(cached.url(&format!("single/oci/manifests/{digest}"))),
        client.delete(cached.url(&format!("single/oci/blobs/{layer}"))),
        client.post(cached.url("single/oci/blobs/uploads/")),
        client.post(cached.url(&format!(
            "single/oci/blobs/uploads/?mount={layer}&from=single/docker"
        ))),
        client.patch(cached.url("single/oci/blobs/uploads/some-session")),
        client.put(cached.url(&format!("single/oci/blobs/uploads/some-session?digest={layer}"))),
        client.post(cached.url("single/oci/tags/list")),
        client.delete(cached.url("")),
    ];
    for request in requests {
        let request = request.build().expect("request");
        let what = format!("{} {}", request.method(), request.url());
        let response = client.execute(request).await.expect("send");
        assert_eq!(
            error_code(response).await,
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into()),
            "{what}"
        );
    }
    let asked = cached.up.via_cache.requests();
    assert!(asked.is_empty(), "a refused write reached upstream: {asked:#?}");
}

/// A raw HTTP/1.1 `GET` of `target`, exactly as written (HTTP clients
/// resolve `..` and `%2e%2e` before sending): the status and body.
async fn raw_get(host: &str, target: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The code of a raw answer's JSON error body (chunked or not: the JSON is
/// one chunk).
fn raw_error_code(body: &str) -> String {
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) if start < end => &body[start..=end],
        _ => panic!("no JSON error in {body:?}"),
    };
    let value: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    value["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
}

/// Bad digests are `400 DIGEST_INVALID`; names and tags that climb out of
/// the repository (`..`, encoded or not) are `400 NAME_INVALID` or
/// `TAG_INVALID`, and are never sent upstream.
#[tokio::test]
async fn bad_digests_and_names() {
    let cached = Cached::start().await;
    let client = http();
    for path in [
        "single/oci/blobs/sha256:xyz",
        "single/oci/blobs/sha256:ABCDEF",
        "single/oci/blobs/md5:00",
        "single/oci/blobs/sha256:..%2F..%2Fetc%2Fpasswd",
        "single/oci/manifests/sha256:xyz",
    ] {
        let response = client.get(cached.url(path)).send().await.expect("GET");
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()),
            "{path}"
        );
    }

    // Sent raw, so nothing resolves the `..` first; axum does not
    // normalise the path either, so every one of them reaches the name
    // checks: a `..` component is a bad name, a `..` reference a bad tag.
    let blob = &fixtures().single_oci.layers[0].digest;
    let host = cached.cache.host();
    for (target, code) in [
        ("/v2/../../etc/manifests/v1".to_owned(), "NAME_INVALID"),
        ("/v2/a/%2e%2e/b/manifests/v1".to_owned(), "NAME_INVALID"),
        ("/v2/a/../b/manifests/v1".to_owned(), "NAME_INVALID"),
        (
            "/v2/single/oci/../../single/oci/manifests/v1".to_owned(),
            "NAME_INVALID",
        ),
        (
            "/v2/%2e%2e/%2e%2e/etc/passwd/manifests/v1".to_owned(),
            "NAME_INVALID",
        ),
        ("/v2/..%2f..%2fetc/manifests/v1".to_owned(), "NAME_INVALID"),
        (format!("/v2/../single/oci/blobs/{blob}"), "NAME_INVALID"),
        (format!("/v2/single/%2E%2E/oci/blobs/{blob}"), "NAME_INVALID"),
        ("/v2/../single/oci/tags/list".to_owned(), "NAME_INVALID"),
        ("/v2/single/oci/manifests/..%2f..%2fetc".to_owned(), "TAG_INVALID"),
        ("/v2/single/oci/manifests/..".to_owned(), "TAG_INVALID"),
        // A bogus digest that climbs is a bad digest, whatever its path.
        (
            "/v2/single/oci/blobs/sha256:..%2f..%2fetc%2fpasswd".to_owned(),
            "DIGEST_INVALID",
        ),
        (
            "/v2/single/oci/blobs/sha256:../../etc".to_owned(),
            "DIGEST_INVALID",
        ),
    ] {
        let (status, body) = raw_get(&host, &target).await;
        assert_eq!(
            (status, raw_error_code(&body)),
            (400, code.to_owned()),
            "GET {target}: {body}"
        );
    }
    let asked: Vec<_> = cached
        .up
        .via_cache
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("..") || r.path.to_ascii_lowercase().contains("%2e"))
        .collect();
    assert!(asked.is_empty(), "a climbing name reached upstream: {asked:#?}");
}

/// `?ns=` naming a registry the cache has no route for: `404 NAME_UNKNOWN`,
/// not the default route; the namespace is echoed in `OCI-Namespace`.
#[tokio::test]
async fn unknown_namespace() {
    let cached = Cached::start().await;
    let client = http();
    let fixture = &fixtures().single_oci;
    for path in [
        "single/oci/manifests/v1".to_owned(),
        format!("single/oci/blobs/{}", fixture.layers[0].digest),
        "single/oci/tags/list".to_owned(),
    ] {
        let url = format!("{}?ns=registry.example.com", cached.url(&path));
        let response = client.get(&url).send().await.expect("GET");
        assert_eq!(
            header(response.headers(), "oci-namespace").as_deref(),
            Some("registry.example.com"),
            "{url}"
        );
        assert_eq!(
            error_code(response).await,
            (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into()),
            "{url}"
        );
    }
    let asked = cached.up.via_cache.requests();
    assert!(asked.is_empty(), "an unknown namespace went upstream: {asked:#?}");

    // The cache's own registry by ns= works, and is echoed too.
    let ns = cached.up.via_cache.host();
    let response = client
        .get(format!("{}?ns={ns}", cached.url("single/oci/manifests/v1")))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "oci-namespace"), Some(ns));
}

/// The next page's URL from a `Link: <…>; rel="next"` header, if any.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = header(headers, LINK.as_str())?;
    assert!(link.contains("rel=\"next\""), "{link}");
    let start = link.find('<').expect("<") + 1;
    let end = link.find('>').expect(">");
    Some(link[start..end].to_owned())
}

/// Follows a tag list's pages from `first` and returns each page's tags.
async fn tag_pages(cache: &str, first: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let client = http();
    let base = Url::parse(cache).expect("cache URL");
    let (mut pages, mut links) = (Vec::new(), Vec::new());
    let mut next = Some(first.to_owned());
    while let Some(url) = next.take() {
        assert!(pages.len() < 10, "too many pages");
        let response = client
            .get(base.join(&url).expect("URL"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        next = next_link(response.headers());
        links.extend(next.clone());
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["name"], "tags/many", "{url}");
        let tags = body["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .map(|t| t.as_str().expect("a tag").to_owned())
            .collect();
        pages.push(tags);
    }
    (pages, links)
}

/// Tag lists, paged by the cache (Distribution does not page them):
/// `?n=10` gives t00..t09 and a `Link` to the next page, which keeps the
/// route's prefix or `ns=`; `last` starts after a tag; a bad `n` is refused.
#[tokio::test]
async fn tag_list_pages() {
    let cached = Cached::start().await;
    let expected: Vec<Vec<String>> = fixtures().tags.tags.chunks(10).map(<[String]>::to_vec).collect();
    let cache = cached.cache.url();
    let ns = cached.up.via_cache.host();
    let prefix = ns.replace(':', "-");

    let (pages, links) = tag_pages(&cache, "/v2/tags/many/tags/list?n=10").await;
    assert_eq!(pages, expected);
    assert_eq!(
        links,
        [
            "/v2/tags/many/tags/list?n=10&last=t09",
            "/v2/tags/many/tags/list?n=10&last=t19"
        ]
    );

    let (pages, links) = tag_pages(&cache, &format!("/v2/{prefix}/tags/many/tags/list?n=10")).await;
    assert_eq!(pages, expected, "by prefix");
    assert!(
        links
            .iter()
            .all(|l| l.starts_with(&format!("/v2/{prefix}/tags/many/tags/list?"))),
        "{links:?}"
    );

    let (pages, links) = tag_pages(&cache, &format!("/v2/tags/many/tags/list?n=10&ns={ns}")).await;
    assert_eq!(pages, expected, "by ns=");
    assert!(
        links
            .iter()
            .all(|l| l.contains(&format!("ns={ns}")) || l.contains(&format!("ns={}", ns.replace(':', "%3A")))),
        "{links:?}"
    );

    let (pages, _) = tag_pages(&cache, "/v2/tags/many/tags/list").await;
    assert_eq!(pages, [fixtures().tags.tags.clone()], "no n: every tag, sorted");
    let (pages, _) = tag_pages(&cache, "/v2/tags/many/tags/list?last=t22").await;
    assert_eq!(pages, [vec!["t23".to_owned(), "t24".to_owned()]]);
    let (pages, _) = tag_pages(&cache, "/v2/tags/many/tags/list?n=5&last=t22").await;
    assert_eq!(pages, [vec!["t23".to_owned(), "t24".to_owned()]]);

    let response = http()
        .get(format!("{cache}/v2/tags/many/tags/list?n=ten"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(response).await,
        (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID".into())
    );
    let response = http()
        .get(format!("{cache}/v2/no/such/repository/tags/list"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
}

/// A Docker Hub route whose content comes from a mirror (`mirror_only`).
fn hub_route(mirror: &FaultProxy) -> RouteConfig {
    let mut hub = route("docker.io");
    hub.default = true;
    hub.mirror_only = true;
    hub.mirrors = vec![UpstreamConfig {
        url: format!("http://{}", mirror.host()),
        credentials: None,
        insecure: true,
    }];
    hub
}

fn hand_made(dir: &Path, routes: Vec<RouteConfig>) -> Config {
    config_with_routes(&dir.join("cache"), routes)
}

/// podman pulling `docker.io/…` with the cache as Docker Hub's mirror (the
/// usual set-up): the default route, Docker Hub's, answers from its mirror.
#[tokio::test]
async fn podman_pulls_docker_hub_names_through_the_cache() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = RunningProxy::start(&hand_made(dir.path(), vec![hub_route(&up.via_cache)]));
    let conf = dir.path().join("registries.conf");
    write_registries_conf(&conf, "docker.io", &cache.host());
    let image = &fixtures().nested;
    let digest = podman_pull(&dir.path().join("podman"), &conf, "docker.io/a/b/c/d:v1");
    assert_eq!(digest, image.digest);
    assert_eq!(up.blob_gets(), blob_digests([image]));
}

/// Names are normalised as docker references against the route's registry
/// (`alpine` on Docker Hub is `library/alpine`); a route's `hosts` select it
/// by the `Host` header, whatever its case and port.
#[tokio::test]
async fn docker_hub_names_and_virtual_hosts() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Docker Hub's route fetches through `via_cache`; the route chosen by
    // `Host: mirror.test` is the registry behind `direct`.
    let mut by_host = route(&up.direct.host());
    by_host.hosts = vec!["mirror.test".into()];
    let cache = RunningProxy::start(&hand_made(dir.path(), vec![hub_route(&up.via_cache), by_host]));
    let client = http();
    let get = |path: &str, host: Option<&str>| {
        let mut request = client.get(format!("{}/v2/{path}", cache.url()));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    let single = &fixtures().single_oci;

    for path in ["single/oci/manifests/v1", "docker.io/single/oci/manifests/v1"] {
        let response = get(path, None).await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.bytes().await.expect("body"), single.manifest, "{path}");
    }
    for path in ["alpine/manifests/latest", "library/alpine/manifests/latest"] {
        let response = get(path, None).await.expect("GET");
        assert_eq!(
            error_code(response).await,
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into()),
            "{path}"
        );
    }
    let asked: Vec<String> = up
        .via_cache
        .requests()
        .iter()
        .filter(|r| r.path.contains("alpine"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        !asked.is_empty() && asked.iter().all(|p| p == "/v2/library/alpine/manifests/latest"),
        "{asked:?}"
    );
    assert!(up.direct.requests().is_empty());

    up.via_cache.clear_log();
    for host in ["mirror.test", "MIRROR.test:5000"] {
        let response = get("single/oci/manifests/v1", Some(host)).await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "Host: {host}");
        assert_eq!(response.bytes().await.expect("body"), single.manifest);
    }
    assert!(
        up.direct.count(|r| r.is_manifest()) > 0,
        "the Host route's registry was asked"
    );
    assert!(up.via_cache.requests().is_empty(), "Docker Hub's route was asked");
}

/// A bad repository name is `NAME_INVALID`, whatever words it contains.
#[tokio::test]
async fn invalid_names_are_name_invalid() {
    let cached = Cached::start().await;
    let blob = &fixtures().single_oci.layers[0].digest;
    let mut wrong = Vec::new();
    for path in [
        "Single/oci/manifests/v1".to_owned(),
        "tags/Many/manifests/v1".to_owned(),
        "vintage/Cars/manifests/v1".to_owned(),
        "digest/Many/manifests/v1".to_owned(),
        format!("tags/Many/blobs/{blob}"),
        "tags/Many/tags/list".to_owned(),
        "tags/many/_x/tags/list".to_owned(),
    ] {
        let response = http().get(cached.url(&path)).send().await.expect("GET");
        let (status, code) = error_code(response).await;
        if (status, code.as_str()) != (StatusCode::BAD_REQUEST, "NAME_INVALID") {
            wrong.push(format!("GET /v2/{path}: {status} {code}"));
        }
    }
    assert!(wrong.is_empty(), "not 400 NAME_INVALID: {wrong:#?}");
}

/// A `405` names the methods the resource does allow (RFC 9110 §15.5.6):
/// every case here is refused with `405`, and `Allow` lists exactly the
/// resource's methods, never none. The upload endpoints answer `GET` and
/// `HEAD` (an upload's status: `404 BLOB_UPLOAD_UNKNOWN`, as Distribution
/// says of one it never started) and refuse starting or sending one.
#[tokio::test]
async fn refusals_name_the_allowed_methods() {
    let cached = Cached::start().await;
    let client = http();
    let mut wrong = Vec::new();
    for (request, allowed) in [
        (client.head(cached.url("tags/many/tags/list")), "GET"),
        (client.post(cached.url("tags/many/tags/list")), "GET"),
        (client.delete(cached.url("single/oci/manifests/v1")), "GET, HEAD"),
        (client.post(cached.url("single/oci/manifests/v1")), "GET, HEAD"),
        (client.post(cached.url("single/oci/blobs/uploads/")), "GET, HEAD"),
        (
            client.patch(cached.url("single/oci/blobs/uploads/some-session")),
            "GET, HEAD",
        ),
        (
            client.put(cached.url("single/oci/blobs/uploads/some-session?digest=sha256:00")),
            "GET, HEAD",
        ),
    ] {
        let request = request.build().expect("request");
        let what = format!("{} {}", request.method(), request.url());
        let method = request.method().as_str().to_owned();
        let response = client.execute(request).await.expect("send");
        let status = response.status();
        let allow = header(response.headers(), "allow");
        if status != StatusCode::METHOD_NOT_ALLOWED {
            wrong.push(format!("{what}: {status}, not 405"));
        } else if allow.as_deref() != Some(allowed) {
            wrong.push(format!("{what}: 405 with Allow {allow:?}, not {allowed:?}"));
        } else if allow
            .iter()
            .flat_map(|a| a.split(','))
            .any(|m| m.trim() == method)
        {
            wrong.push(format!("{what}: refused a method it says it allows"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    for path in [
        "single/oci/blobs/uploads/",
        "single/oci/blobs/uploads/some-session",
    ] {
        let response = client.get(cached.url(path)).send().await.expect("GET");
        let (status, code) = error_code(response).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            "{path}"
        );
    }
}

/// Content is served under the repositories that hold it: Distribution
/// answers `404 MANIFEST_UNKNOWN` (`BLOB_UNKNOWN`) for a digest that the
/// named repository does not have.
#[tokio::test]
async fn content_is_served_only_under_its_repository() {
    let cached = Cached::start().await;
    let client = http();
    let image = &fixtures().single_oci;
    let layer = &image.layers[0].digest;
    // Cached under single/oci.
    for path in [
        "single/oci/manifests/v1".to_owned(),
        format!("single/oci/blobs/{layer}"),
    ] {
        let response = client.get(cached.url(&path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.bytes().await.expect("body");
    }
    let mut wrong = Vec::new();
    for (path, code) in [
        (
            format!("no/such/repo/manifests/{}", image.digest),
            "MANIFEST_UNKNOWN",
        ),
        (format!("no/such/repo/blobs/{layer}"), "BLOB_UNKNOWN"),
        (
            format!("single/docker/manifests/{}", image.digest),
            "MANIFEST_UNKNOWN",
        ),
    ] {
        let response = client.get(cached.url(&path)).send().await.expect("GET");
        let (status, x_cache) = (response.status(), header(response.headers(), "x-cache"));
        if status != StatusCode::NOT_FOUND {
            wrong.push(format!(
                "GET /v2/{path}: {status}, X-Cache {x_cache:?}, not 404 {code}"
            ));
        } else {
            assert_eq!(error_code(response).await.1, code, "GET /v2/{path}");
        }
    }
    assert!(
        wrong.is_empty(),
        "served under a repository that does not hold it: {wrong:#?}"
    );
}

/// Virtual hosts by suffix: with `vhost_suffix = "cache.test"`, a request
/// with `Host: registry.test.cache.test:<port>` goes to the route of
/// `registry.test`, not to the default route. A whole pull (manifest by tag,
/// config, layers) by that name gets the registry's bytes, fetched through
/// that route's upstream; the same paths without the virtual host reach the
/// default route's upstream instead.
#[tokio::test]
async fn a_virtual_host_by_suffix_selects_its_registry_route() {
    let (up, other) = tokio::join!(Upstream::start(), Upstream::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut default = route(&other.via_cache.host());
    default.default = true;
    // A registry with a DNS name (a port cannot be part of one), whose
    // content comes from the recording proxy.
    let mut by_suffix = route("registry.test");
    by_suffix.mirror_only = true;
    by_suffix.mirrors = vec![UpstreamConfig {
        url: format!("http://{}", up.via_cache.host()),
        credentials: None,
        insecure: true,
    }];
    let mut config = hand_made(dir.path(), vec![default, by_suffix]);
    config.vhost_suffix = Some("cache.test".into());
    let cache = RunningProxy::start(&config);
    let address: std::net::SocketAddr = cache.host().parse().expect("address");
    // The client names the cache `registry.test.cache.test` (as DNS would),
    // so it sends that `Host` header itself.
    let vhost = reqwest::Client::builder()
        .no_proxy()
        .resolve("registry.test.cache.test", address)
        .build()
        .expect("HTTP client");
    let base = format!("http://registry.test.cache.test:{}/v2", address.port());
    let single = &fixtures().single_oci;

    let response = vhost
        .get(format!("{base}/single/oci/manifests/v1"))
        .header("accept", single.media_type)
        .send()
        .await
        .expect("GET the manifest");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "docker-content-digest").as_deref(),
        Some(single.digest.as_str())
    );
    let manifest: Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("a JSON manifest");
    let mut blobs = vec![manifest["config"]["digest"].as_str().expect("config").to_owned()];
    blobs.extend(
        manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("layer digest").to_owned()),
    );
    for digest in &blobs {
        let response = vhost
            .get(format!("{base}/single/oci/blobs/{digest}"))
            .send()
            .await
            .expect("GET a blob");
        assert_eq!(response.status(), StatusCode::OK, "{digest}");
        assert_eq!(
            Some(response.bytes().await.expect("body")),
            fixtures().blob(digest),
            "{digest}"
        );
    }
    assert_eq!(
        up.blob_gets(),
        blob_digests([single]),
        "fetched by the vhost's route"
    );
    assert!(
        up.via_cache
            .count(|r| r.path.starts_with("/v2/single/oci/manifests/"))
            > 0,
        "the vhost's upstream was not asked for the manifest: {:#?}",
        up.via_cache.requests()
    );
    let asked = other.via_cache.requests();
    assert!(asked.is_empty(), "the default route was used: {asked:#?}");

    // The same request by the cache's address: the default route answers.
    up.via_cache.clear_log();
    let response = http()
        .get(format!("{}/v2/single/oci/manifests/v1", cache.url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        other.via_cache.count(|r| r.is_manifest()) > 0,
        "the default route's upstream"
    );
    assert!(
        up.via_cache.requests().is_empty(),
        "the vhost route without its Host"
    );
}

/// containerd's `override_path` style: a mirror URL with the route's prefix
/// (`http://<cache>/v2/up`) makes containerd send
/// `/v2/up/<name>/manifests/<ref>?ns=<registry>`. `ns` picks the route and,
/// `up` being its prefix, the prefix comes off the name: the route's
/// upstream is asked for `<name>` and `ctr images pull` gets the registry's
/// image. `ns` comes first: another route's prefix in the path stays part of
/// the name.
#[tokio::test]
async fn containerd_override_path_with_a_prefix_reaches_the_ns_route() {
    let (up, other) = tokio::join!(Upstream::start(), Upstream::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = up.direct.host();
    let mut default = route(&other.via_cache.host());
    default.default = true;
    default.prefix = Some("other".into());
    let by_ns = up.route_via_cache(Some("up"));
    let cache = RunningProxy::start(&hand_made(dir.path(), vec![default, by_ns]));
    let front = FaultProxy::start(Url::parse(&cache.url()).expect("URL")).await;

    let containerd = Containerd::start();
    let hosts = dir.path().join("hosts");
    write_hosts_toml(
        &hosts,
        &registry,
        &format!(
            "[host.\"http://{}/v2/up\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
            front.host()
        ),
    );
    let single = &fixtures().single_oci;
    let image = single.reference(&registry);
    ctr_pull(&containerd, "default", &hosts, &image, false);
    assert_eq!(
        ctr_image_digest(&containerd, "default", &image),
        registry_digest(&up.registry, &single.repository, "v1").await
    );

    // containerd sent the prefix and ns=; the cache answered each with 200.
    let sent = front.requests();
    assert!(!sent.is_empty(), "containerd did not ask the cache");
    for request in &sent {
        assert!(request.path.starts_with("/v2/up/single/oci/"), "{request:?}");
        assert_eq!(ns_of(request).as_deref(), Some(registry.as_str()), "{request:?}");
        assert_eq!(request.status, Some(200), "{request:?}");
    }
    // Upstream, the name is the repository itself, without the prefix.
    assert_eq!(up.blob_gets(), blob_digests([single]));
    let paths: Vec<String> = up.via_cache.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.iter().all(|p| p.starts_with("/v2/single/oci/")),
        "{paths:#?}"
    );
    assert!(
        other.via_cache.requests().is_empty(),
        "the default route was used"
    );
    up.assert_not_contacted_directly();

    // ns= wins over another route's prefix, which stays in the name.
    up.via_cache.clear_log();
    let response = http()
        .get(format!(
            "{}/v2/other/single/oci/manifests/v1?ns={registry}",
            cache.url()
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    assert!(
        up.via_cache
            .count(|r| r.path == "/v2/other/single/oci/manifests/v1")
            > 0,
        "{:#?}",
        up.via_cache.requests()
    );
    assert!(
        other.via_cache.requests().is_empty(),
        "the prefix's route was used"
    );
}
