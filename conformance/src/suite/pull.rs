//! Cases for pulls: each output, each media type and platform, many layers,
//! nested names, failures mid-download, the layer cache and progress events.

use registry_client::{Progress, ProgressEvent};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use registry_client::pull::{OutputFormat, PullOptions, PullResult};
use registry_client::{Error, ImageReference, RepositoryClient};
use serde_json::Value;

use super::env::SuiteEnv;
use crate::harness::fault_proxy::{Fault, FaultKind, Matcher};
use crate::harness::{ImageFixture, LayerFixture};

/// Each output format, with a file name for it.
const OUTPUTS: [(&str, OutputFormat); 3] = [
    ("image.tar", OutputFormat::DockerArchive),
    ("layout", OutputFormat::OciLayout),
    ("rootfs.tar", OutputFormat::Rootfs),
];

/// Resolves `reference` and writes it in `format` to `path`.
async fn pull_to(
    client: &RepositoryClient,
    reference: &ImageReference,
    format: OutputFormat,
    path: &Path,
    options: &PullOptions,
) -> PullResult {
    client
        .pull(reference)
        .await
        .unwrap_or_else(|e| panic!("resolve {reference}: {e}"))
        .write(format, path, options)
        .await
        .unwrap_or_else(|e| panic!("pull {reference} as {format:?}: {e}"))
}

/// Authenticates once and forgets the requests that took.
async fn warm_up(client: &RepositoryClient, env: &SuiteEnv) {
    client.ping(&env.target.registry_name).await.expect("ping");
    env.proxy.clear_log();
}

/// The files in a tar, by path: (kind, mode, content or link target).
pub fn tar_entries(bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, u32, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries = BTreeMap::new();
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("tar entry");
        let path = entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().expect("mode");
        let mut data = Vec::new();
        match entry.link_name().expect("link") {
            Some(target) => data.extend_from_slice(target.to_string_lossy().as_bytes()),
            None => {
                entry.read_to_end(&mut data).expect("data");
            }
        }
        entries.insert(path, (kind, mode, data));
    }
    entries
}

fn only_file(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn hex(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, h)| h)
}

fn layer_digests(layers: &[LayerFixture]) -> Vec<String> {
    layers.iter().map(|l| l.digest.clone()).collect()
}

fn check_result(result: &PullResult, fixture: &ImageFixture, format: OutputFormat) {
    assert_eq!(result.digest, fixture.digest);
    assert_eq!(result.media_type, fixture.media_type);
    assert_eq!(result.format, format);
    let pulled: Vec<String> = result.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(pulled, layer_digests(&fixture.layers));
    let layer_bytes: u64 = fixture.layers.iter().map(|l| l.size).sum();
    assert_eq!(result.total_bytes, layer_bytes + fixture.config.len() as u64);
}

/// Checks a docker archive's manifest.json, config and layer files against the fixture.
fn check_docker_archive(path: &Path, fixture: &ImageFixture, repo_tags: &[String]) {
    let entries = tar_entries(&std::fs::read(path).expect("archive"));
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"].2).expect("manifest.json");
    let config_name = format!("{}.json", hex(&fixture.config_digest));
    assert_eq!(manifest[0]["Config"], config_name.as_str());
    assert_eq!(entries[&config_name].2, fixture.config);
    let tags: Vec<String> = serde_json::from_value(manifest[0]["RepoTags"].clone()).unwrap_or_default();
    assert_eq!(tags, repo_tags);
    let layers: Vec<String> = serde_json::from_value(manifest[0]["Layers"].clone()).expect("Layers");
    assert_eq!(layers.len(), fixture.layers.len());
    for (name, layer) in layers.iter().zip(&fixture.layers) {
        assert!(
            name.starts_with(hex(&layer.digest)),
            "{name} for {}",
            layer.digest
        );
        assert_eq!(entries[name].2, layer.data, "layer {name} kept as it is");
    }
}

pub async fn pull_docker_archive(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    for fixture in [&env.fixtures().single_oci, &env.fixtures().single_docker] {
        let reference = env.image(fixture);
        let path = dir
            .path()
            .join(format!("{}.tar", fixture.repository.replace('/', "-")));
        let image = client.pull(&reference).await.expect("resolve");
        let result = image
            .write_docker_archive(&path, &PullOptions::default())
            .await
            .expect("pull");
        check_result(&result, fixture, OutputFormat::DockerArchive);
        assert_eq!(result.tag.as_deref(), Some("v1"));
        assert_eq!(result.path.as_deref(), Some(path.as_path()));
        assert_eq!(
            result.downloaded_bytes,
            fixture.layers.iter().map(|l| l.size).sum::<u64>()
        );
        check_docker_archive(&path, fixture, &[reference.to_string()]);
    }
    assert_eq!(
        only_file(dir.path()),
        ["single-docker.tar", "single-oci.tar"],
        "no temporary files"
    );
}

/// By digest: no tag, so the archive names none.
pub async fn pull_by_digest(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().nested;
    let reference = env.reference(&format!("{}@{}", fixture.repository, fixture.digest));
    let path = dir.path().join("image.tar");
    let result = pull_to(
        client,
        &reference,
        OutputFormat::DockerArchive,
        &path,
        &PullOptions::default(),
    )
    .await;
    check_result(&result, fixture, OutputFormat::DockerArchive);
    assert_eq!(result.tag, None);
    check_docker_archive(&path, fixture, &[]);
}

/// Each platform of an OCI index and a Docker manifest list, asked for by alias.
pub async fn pull_each_platform(_client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let asked = [
        ("linux/amd64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm", "linux/arm/v7"),
    ];
    for index in [&env.fixtures().multi_oci, &env.fixtures().multi_docker] {
        for (platform, normalised) in asked {
            let child = index.child(normalised);
            let client = env.builder().platform(platform).build().expect("client");
            let path = dir.path().join("rootfs.tar");
            let result = pull_to(
                &client,
                &env.index(index),
                OutputFormat::Rootfs,
                &path,
                &PullOptions::default(),
            )
            .await;
            assert_eq!(result.digest, child.digest, "{platform} of {}", index.repository);
            assert_eq!(
                result.platform.map(|p| p.to_string()).as_deref(),
                Some(normalised)
            );
            let entries = tar_entries(&std::fs::read(&path).expect("rootfs"));
            let text = String::from_utf8_lossy(&entries["platform.txt"].2).into_owned();
            assert_eq!(text, format!("{} {normalised}\n", index.repository));
        }
    }
}

/// 32 layers applied in order: a whiteout deletes, a later layer rewrites.
pub async fn pull_many_layers_rootfs(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().many_layers;
    let path = dir.path().join("rootfs.tar");
    let result = pull_to(
        client,
        &env.image(fixture),
        OutputFormat::Rootfs,
        &path,
        &PullOptions::default().concurrency(4),
    )
    .await;
    check_result(&result, fixture, OutputFormat::Rootfs);
    let entries = tar_entries(&std::fs::read(&path).expect("rootfs"));
    assert!(!entries.contains_key("layers/00.txt"), "deleted by a whiteout");
    assert!(
        !entries.keys().any(|p| p.contains(".wh.")),
        "whiteouts are not files"
    );
    assert_eq!(entries["layers/01.txt"].2, b"layer 01 rewritten by layer 31\n");
    for n in 2..fixture.layers.len() {
        let name = format!("layers/{n:02}.txt");
        assert_eq!(entries[&name].2, format!("layer {n:02}\n").as_bytes(), "{name}");
    }
}

/// Entry types and modes survive flattening.
pub async fn pull_rootfs_keeps_types(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rootfs.tar");
    let fixture = &env.fixtures().single_oci;
    pull_to(
        client,
        &env.image(fixture),
        OutputFormat::Rootfs,
        &path,
        &PullOptions::default(),
    )
    .await;
    let entries = tar_entries(&std::fs::read(&path).expect("rootfs"));
    let (kind, mode, _) = &entries["bin/hello.sh"];
    assert_eq!((*kind, mode & 0o7777), (tar::EntryType::Regular, 0o755));
    let (kind, _, target) = &entries["etc/hello-link"];
    assert_eq!(
        (*kind, target.as_slice()),
        (tar::EntryType::Symlink, b"hello.txt".as_slice())
    );
    assert_eq!(entries["bin"].0, tar::EntryType::Directory);
    assert_eq!(
        entries["etc/hello.txt"].2,
        format!("hello from {}\n", fixture.repository).as_bytes()
    );
}

fn index_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json")).expect("JSON")
}

fn blob_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .expect("blobs")
        .count()
}

/// One platform, then a whole index into the same layout, then a repeat: no duplicates.
pub async fn pull_oci_layout(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let single = &env.fixtures().single_oci;
    let result = pull_to(
        client,
        &env.image(single),
        OutputFormat::OciLayout,
        &layout,
        &PullOptions::default(),
    )
    .await;
    check_result(&result, single, OutputFormat::OciLayout);
    let index = index_json(&layout);
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(index["manifests"][0]["digest"], single.digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    assert_eq!(blob_count(&layout), 2 + single.layers.len());

    let multi = &env.fixtures().multi_oci;
    let options = PullOptions::default().ref_name("multi");
    let result = client
        .pull_all_platforms(&env.index(multi))
        .await
        .expect("resolve all")
        .write_oci_layout(&layout, &options)
        .await
        .expect("pull all");
    assert_eq!(result.digest, multi.digest);
    assert_eq!(result.platform, None);
    let index = index_json(&layout);
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2));
    assert_eq!(index["manifests"][1]["digest"], multi.digest.as_str());
    let blobs = blob_count(&layout);
    assert_eq!(
        blobs,
        2 + single.layers.len() + 1 + multi.children.iter().map(|c| 2 + c.layers.len()).sum::<usize>()
    );

    env.proxy.clear_log();
    let again = pull_to(
        client,
        &env.image(single),
        OutputFormat::OciLayout,
        &layout,
        &PullOptions::default(),
    )
    .await;
    assert!(again.layers.iter().all(|l| l.from_cache), "already in the layout");
    assert_eq!(env.proxy.upstream_blob_gets(), 0, "nothing fetched twice");
    assert_eq!(index_json(&layout)["manifests"].as_array().map(Vec::len), Some(2));
    assert_eq!(blob_count(&layout), blobs);
}

/// A missing image fails before anything is written.
pub async fn pull_not_found(client: &RepositoryClient, env: &SuiteEnv) {
    let err = client
        .pull(&env.reference("single/oci:missing"))
        .await
        .expect_err("missing tag");
    assert!(err.is_not_found(), "{err:?}");
}

/// A flipped byte in a layer fails the pull and leaves no file.
pub async fn pull_corrupted_layer(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().single_oci;
    let image = client.pull(&env.image(fixture)).await.expect("resolve");
    for (name, format) in OUTPUTS {
        env.proxy.inject_when(
            Matcher::blob_gets(),
            Fault::CorruptByte {
                offset: 100,
                times: 1,
            },
        );
        let err = image
            .write(format, &dir.path().join(name), &PullOptions::default())
            .await
            .expect_err("corrupted");
        match &err {
            Error::DigestMismatch { expected, .. } => assert_eq!(expected, &fixture.layers[0].digest),
            other => panic!("{format:?}: expected DigestMismatch, got {other:?}"),
        }
    }
    assert!(
        only_file(dir.path()).is_empty(),
        "nothing left: {:?}",
        only_file(dir.path())
    );
}

/// A connection reset mid-layer resumes with `Range` from the last byte received.
pub async fn pull_resumes_with_range(client: &RepositoryClient, env: &SuiteEnv) {
    warm_up(client, env).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().many_layers;
    let image = client.pull(&env.image(fixture)).await.expect("resolve");
    let layer = &fixture.layers[3];
    env.proxy.inject_when(
        Matcher::path_contains(layer.digest.clone()),
        Fault::ResetAfter { bytes: 40, times: 1 },
    );
    let (progress, mut events) = Progress::channel();
    let path = dir.path().join("image.tar");
    image
        .write_docker_archive(&path, &PullOptions::default().progress(progress))
        .await
        .expect("resumed");
    check_docker_archive(&path, fixture, &[env.image(fixture).to_string()]);
    let ranges: Vec<Option<String>> = env
        .proxy
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(&layer.digest))
        .map(|r| r.range.clone())
        .collect();
    assert_eq!(ranges, [None, Some("bytes=40-".to_owned())]);
    let mut retries = 0;
    while let Ok(event) = events.try_recv() {
        retries +=
            usize::from(matches!(event, ProgressEvent::Retry { ref what, .. } if what == &layer.digest));
    }
    assert_eq!(retries, 1, "the resume was reported");
}

/// A server that ignores `Range` on the resumed request (answers 200 with the
/// whole blob) has the bytes already received skipped, and the layer still verifies.
pub async fn pull_resumes_when_range_is_ignored(client: &RepositoryClient, env: &SuiteEnv) {
    warm_up(client, env).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().many_layers;
    let image = client.pull(&env.image(fixture)).await.expect("resolve");
    let layer = &fixture.layers[5];
    let this_layer = || Matcher::path_contains(layer.digest.clone());
    env.proxy
        .inject_when(this_layer(), Fault::ResetAfter { bytes: 30, times: 1 });
    env.proxy
        .inject_when(this_layer(), Fault::IgnoreRange { times: 1 });
    let path = dir.path().join("image.tar");
    image
        .write_docker_archive(&path, &PullOptions::default())
        .await
        .expect("resumed");
    check_docker_archive(&path, fixture, &[env.image(fixture).to_string()]);
    let asked: Vec<(Option<String>, Option<u16>)> = env
        .proxy
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(&layer.digest))
        .map(|r| (r.range.clone(), r.status))
        .collect();
    assert_eq!(
        asked,
        [(None, Some(200)), (Some("bytes=30-".to_owned()), Some(200))]
    );
    assert_eq!(env.proxy.fired(FaultKind::IgnoreRange), 1);
}

/// Two pulls racing into one layer cache both succeed and leave it whole.
pub async fn pull_concurrently_into_one_cache(_client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let fixture = &env.fixtures().many_layers;
    let reference = env.image(fixture);
    let (a, b) = (
        env.builder().layer_cache(&cache).build().expect("client"),
        env.builder().layer_cache(&cache).build().expect("client"),
    );
    let (first, second) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    let options = PullOptions::default();
    tokio::join!(
        pull_to(&a, &reference, OutputFormat::DockerArchive, &first, &options),
        pull_to(&b, &reference, OutputFormat::DockerArchive, &second, &options),
    );
    assert_eq!(
        std::fs::read(&first).expect("a"),
        std::fs::read(&second).expect("b")
    );
    let cached = only_file(&cache.join("blobs/sha256"));
    assert!(
        cached.iter().all(|name| !name.contains("partial")),
        "temporary files left: {cached:?}"
    );
    assert_eq!(
        cached.len(),
        fixture.layers.len() + 1,
        "each layer and the config, once"
    );
    for layer in &fixture.layers {
        let bytes = std::fs::read(cache.join("blobs/sha256").join(hex(&layer.digest))).expect("cached");
        assert_eq!(bytes, layer.data, "{} intact", layer.digest);
    }
}

/// A storm of 429s on blobs is waited out.
pub async fn pull_through_rate_limits(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().single_docker;
    let image = client.pull(&env.image(fixture)).await.expect("resolve");
    env.proxy
        .inject_when(Matcher::blob_gets(), Fault::rate_limited(3, "0"));
    let path = dir.path().join("image.tar");
    let result = image
        .write_docker_archive(&path, &PullOptions::default())
        .await
        .expect("pull");
    check_result(&result, fixture, OutputFormat::DockerArchive);
    assert_eq!(env.proxy.fired(FaultKind::Status), 3);
}

/// Layers redirected to another host come from there, without our credentials.
pub async fn pull_redirected_blobs(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().many_layers;
    let image = client.pull(&env.image(fixture)).await.expect("resolve");
    env.proxy
        .inject_when(Matcher::blob_gets(), Fault::RedirectBlobs { times: usize::MAX });
    let path = dir.path().join("image.tar");
    image
        .write_docker_archive(&path, &PullOptions::default())
        .await
        .expect("pull");
    check_docker_archive(&path, fixture, &[env.image(fixture).to_string()]);
    let redirected = env.proxy.redirect_requests();
    assert_eq!(redirected.len(), fixture.layers.len());
    assert!(
        redirected.iter().all(|r| !r.had_authorization),
        "Authorization went to another host"
    );
}

/// A second pull with a warm layer cache sends no blob request; an OCI
/// layout on the cache's filesystem gets hard links, not copies.
pub async fn pull_with_layer_cache(_client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let fixture = &env.fixtures().many_layers;
    let reference = env.image(fixture);
    let cold = env.builder().layer_cache(&cache).build().expect("client");
    let result = pull_to(
        &cold,
        &reference,
        OutputFormat::DockerArchive,
        &dir.path().join("cold.tar"),
        &PullOptions::default(),
    )
    .await;
    assert!(result.layers.iter().all(|l| !l.from_cache));

    env.proxy.clear_log();
    let warm = env.builder().layer_cache(&cache).build().expect("client");
    let (progress, mut events) = Progress::channel();
    let layout = dir.path().join("layout");
    let result = pull_to(
        &warm,
        &reference,
        OutputFormat::OciLayout,
        &layout,
        &PullOptions::default().progress(progress),
    )
    .await;
    assert_eq!(
        env.proxy.count(|r| r.is_blob()),
        0,
        "no blob request with a warm cache"
    );
    assert!(result.layers.iter().all(|l| l.from_cache));
    assert_eq!(result.downloaded_bytes, 0);
    let mut from_cache = 0;
    while let Ok(event) = events.try_recv() {
        from_cache += usize::from(matches!(event, ProgressEvent::BlobFromCache { .. }));
    }
    assert_eq!(from_cache, fixture.layers.len());

    use std::os::unix::fs::MetadataExt;
    for layer in &fixture.layers {
        let in_layout =
            std::fs::metadata(layout.join("blobs/sha256").join(hex(&layer.digest))).expect("blob");
        let in_cache =
            std::fs::metadata(cache.join("blobs/sha256").join(hex(&layer.digest))).expect("cached");
        assert_eq!(in_layout.ino(), in_cache.ino(), "linked, not copied");
    }
    let archive = dir.path().join("warm.tar");
    pull_to(
        &warm,
        &reference,
        OutputFormat::DockerArchive,
        &archive,
        &PullOptions::default(),
    )
    .await;
    assert_eq!(
        std::fs::read(&archive).expect("warm"),
        std::fs::read(dir.path().join("cold.tar")).expect("cold")
    );
    assert_eq!(env.proxy.count(|r| r.is_blob()), 0);
}

/// Progress: resolved first, then started / progress / done for every layer.
pub async fn pull_progress_events(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().many_layers;
    let (progress, mut events) = Progress::channel();
    pull_to(
        client,
        &env.image(fixture),
        OutputFormat::DockerArchive,
        &dir.path().join("image.tar"),
        &PullOptions::default().progress(progress),
    )
    .await;
    let mut all = Vec::new();
    while let Ok(event) = events.try_recv() {
        all.push(event);
    }
    match all.first() {
        Some(ProgressEvent::ManifestResolved {
            digest,
            layers,
            total_bytes,
            ..
        }) => {
            assert_eq!((digest, *layers), (&fixture.digest, fixture.layers.len()));
            assert_eq!(*total_bytes, fixture.layers.iter().map(|l| l.size).sum::<u64>());
        }
        other => panic!("first event {other:?}"),
    }
    for layer in &fixture.layers {
        let about = |e: &&ProgressEvent| match e {
            ProgressEvent::BlobStarted { digest, .. }
            | ProgressEvent::BlobProgress { digest, .. }
            | ProgressEvent::BlobDone { digest, .. } => digest == &layer.digest,
            _ => false,
        };
        let mine: Vec<&ProgressEvent> = all.iter().filter(about).collect();
        assert!(matches!(mine.first(), Some(ProgressEvent::BlobStarted { size, .. }) if *size == layer.size));
        assert!(
            matches!(mine.last(), Some(ProgressEvent::BlobDone { size, .. }) if *size == layer.size),
            "{mine:?}"
        );
        let done: Vec<u64> = mine
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::BlobProgress { done, .. } => Some(*done),
                _ => None,
            })
            .collect();
        assert_eq!(done.last(), Some(&layer.size));
        assert!(done.windows(2).all(|w| w[0] < w[1]), "monotonic");
    }
}

/// A pull cancelled mid-download (its future dropped) leaves nothing behind.
pub async fn pull_cancelled_leaves_nothing(client: &RepositoryClient, env: &SuiteEnv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = &env.fixtures().many_layers;
    let image = client.pull(&env.image(fixture)).await.expect("resolve");
    env.proxy.inject_when(
        Matcher::blob_gets(),
        Fault::Delay {
            duration: Duration::from_secs(5),
            times: usize::MAX,
        },
    );
    for (name, format) in OUTPUTS {
        let (options, path) = (PullOptions::default(), dir.path().join(name));
        let pull = image.write(format, &path, &options);
        let outcome = tokio::time::timeout(Duration::from_millis(300), pull).await;
        assert!(outcome.is_err(), "{format:?}: still downloading when cancelled");
    }
    env.proxy.clear();
    assert!(
        only_file(dir.path()).is_empty(),
        "left behind: {:?}",
        only_file(dir.path())
    );
}
