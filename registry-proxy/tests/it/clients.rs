//! Real clients pull through the cache: podman through a `registries.conf` mirror (the
//! default route, then a route chosen by a path prefix, Docker Hub names) and over HTTPS
//! with the cache's CA trusted through `certs.d`, skopeo into OCI layouts (one image, a
//! whole index, a 300 MB image through a cache on a 40 MiB disk), containerd through a
//! `hosts.toml` mirror (`?ns=` routing, and a prefix URL with `override_path`). Each
//! upstream is a [`crate::upstream::Upstream`]; the image each client gets must be the
//! registry's, and nothing may reach the registry around the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{RunningProxy, Tmpfs, config, http, metric, metrics, push_noise_image, route, walk};
use crate::upstream::{
    Cached, Upstream, blob_digests, error_code, hand_made, header, hub_route, registry_digest,
};
use conformance::harness::fault_proxy::FaultProxy;
use conformance::harness::tools::{self, layout_digest, run};
use conformance::harness::{
    AuthMode, Containerd, Pusher, TestRegistry, fixtures, sha256_digest, write_ca_signed_tls_files,
};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// podman with a storage of its own under `dir` and `registries_conf`.
fn podman(dir: &Path, registries_conf: &Path, args: &[&str]) -> String {
    run(&mut podman_command(dir, registries_conf, args))
}

/// The command [`podman`] runs, for a test that expects it to fail.
fn podman_command(dir: &Path, registries_conf: &Path, args: &[&str]) -> Command {
    let mut command = tools::podman(dir, Some(registries_conf));
    command.args(args);
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
