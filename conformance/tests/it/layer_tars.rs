//! Layer tars as real tools write them, and as Go's `archive/tar` still reads them, pulled
//! from a real registry as a root filesystem and checked against `umoci unpack` of the same
//! image: images built with `umoci insert` (whose layers stop right after the last file's
//! data), layers written byte by byte in each lenient form, and hostile paths.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use conformance::harness::fixtures::{OCI_CONFIG, OCI_MANIFEST};
use conformance::harness::{AuthMode, Pusher, TestRegistry, run_tool};
use conformance::suite::{Tree, tree_from_dir, tree_from_tar};
use registry_client::driver::oci::OciOption;
use registry_client::model::digest::sha256;
use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient};
use serde_json::json;

const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn client() -> RepositoryClient {
    RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .build()
        .expect("client")
}

fn reference(registry: &TestRegistry, repository: &str) -> ImageReference {
    format!("{}/{repository}:v1", registry.host())
        .parse()
        .expect("reference")
}

/// Our root filesystem of `repository:v1`, as a tree.
async fn our_rootfs(registry: &TestRegistry, repository: &str, dir: &Path) -> Tree {
    let path = dir.join(format!("{}.rootfs.tar", repository.replace('/', "-")));
    client()
        .pull(&reference(registry, repository))
        .await
        .expect("resolve")
        .write_rootfs(&path, &PullOptions::default())
        .await
        .unwrap_or_else(|err| panic!("rootfs of {repository}: {err}"));
    tree_from_tar(&std::fs::read(&path).expect("read the rootfs"))
}

/// `umoci unpack` of the OCI layout `layout` at `tag`, as a tree.
fn umoci_rootfs(layout: &Path, tag: &str, dir: &Path) -> Tree {
    let bundle = dir.join(format!("bundle-{}", rand_name()));
    let image = format!("{}:{tag}", utf8(layout));
    run_tool(
        "umoci",
        &["unpack", "--rootless", "--image", &image, utf8(&bundle)],
    );
    tree_from_dir(&bundle.join("rootfs"))
}

/// A name no other bundle of this process has.
fn rand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// Compares with a message that shows where the trees differ. A directory that no layer
/// has an entry for is in umoci's tree (it made it for what is below) and not in our tar,
/// where it is implied by the paths below it (every extractor makes it).
fn assert_same_tree(ours: &Tree, theirs: &Tree, what: &str) {
    assert!(!theirs.is_empty(), "{what}: umoci unpacked nothing");
    let implied = |dir: &str| ours.keys().any(|path| path.starts_with(&format!("{dir}/")));
    for (path, entry) in theirs {
        if entry.0 == 'd' && !ours.contains_key(path) && implied(path) {
            continue;
        }
        assert_eq!(ours.get(path), Some(entry), "{what}: {path} differs from umoci's");
    }
    let extra: Vec<&String> = ours.keys().filter(|p| !theirs.contains_key(*p)).collect();
    assert!(extra.is_empty(), "{what}: not in umoci's tree: {extra:?}");
}

// ---- images built by umoci ----

/// An OCI layout with an empty image `t`, made by `umoci`.
fn umoci_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    run_tool("umoci", &["init", "--layout", utf8(&layout)]);
    run_tool("umoci", &["new", "--image", &format!("{}:t", utf8(&layout))]);
    layout
}

/// `umoci insert SOURCE TARGET` into image `t` of `layout`: one new layer.
fn insert(layout: &Path, source: &Path, target: &str, extra: &[&str]) {
    let image = format!("{}:t", utf8(layout));
    let mut args = vec!["insert", "--rootless", "--image", &image];
    args.extend(extra);
    args.extend([utf8(source), target]);
    run_tool("umoci", &args);
}

/// `umoci insert --whiteout TARGET`: a layer that removes `target`.
fn remove(layout: &Path, target: &str) {
    let image = format!("{}:t", utf8(layout));
    run_tool(
        "umoci",
        &["insert", "--rootless", "--image", &image, "--whiteout", target],
    );
}

/// Copies image `t` of `layout` to `repository:v1` with skopeo, blobs as they are.
fn push_layout(layout: &Path, registry: &TestRegistry, repository: &str) {
    run_tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:t", utf8(layout)),
            &format!("docker://{}/{repository}:v1", registry.host()),
        ],
    );
}

/// The uncompressed layer tars of image `t` of `layout`.
fn layout_layer_tars(layout: &Path) -> Vec<Vec<u8>> {
    let read = |digest: &str| -> Vec<u8> {
        let (algorithm, hex) = digest.split_once(':').expect("digest");
        std::fs::read(layout.join("blobs").join(algorithm).join(hex)).expect("blob")
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("index JSON");
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(index["manifests"][0]["digest"].as_str().expect("digest")))
            .expect("manifest");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|layer| {
            let mut tar = Vec::new();
            flate2::read::MultiGzDecoder::new(&read(layer["digest"].as_str().expect("digest"))[..])
                .read_to_end(&mut tar)
                .expect("gunzip");
            tar
        })
        .collect()
}

/// Whether `tar` stops right after its last entry's data: neither padded to 512 bytes nor
/// closed by the end-of-archive blocks.
fn stops_after_data(tar: &[u8]) -> bool {
    !tar.len().is_multiple_of(512)
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

#[tokio::test]
async fn an_image_built_with_umoci_insert_flattens_as_umoci_unpacks_it() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = umoci_layout(dir.path());
    let source = dir.path().join("src");
    write(&source.join("hello"), "hello");
    insert(&layout, &source, "/app", &[]);

    let tars = layout_layer_tars(&layout);
    assert_eq!(tars.len(), 1);
    assert!(
        stops_after_data(&tars[0]),
        "umoci padded its layer: nothing to test"
    );
    push_layout(&layout, &registry, "umoci/one");

    let ours = our_rootfs(&registry, "umoci/one", dir.path()).await;
    let theirs = umoci_rootfs(&layout, "t", dir.path());
    assert_same_tree(&ours, &theirs, "one layer");
    assert_eq!(ours["app/hello"].2, b"hello");
}

#[tokio::test]
async fn an_image_of_thirty_umoci_layers_flattens_as_umoci_unpacks_it() {
    use std::os::unix::fs::{PermissionsExt, symlink};

    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = umoci_layout(dir.path());
    let mut layers = 0;
    for n in 0..32 {
        let source = dir.path().join(format!("src-{n}"));
        match n % 8 {
            // A tree of its own, with a symlink and a hard link in it.
            0..=2 => {
                write(&source.join("bin/tool"), &format!("#!/bin/sh\necho {n}\n"));
                std::fs::set_permissions(source.join("bin/tool"), std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
                symlink("tool", source.join("bin/alias")).expect("symlink");
                std::fs::hard_link(source.join("bin/tool"), source.join("bin/hard")).expect("link");
                write(&source.join(format!("share/{}/doc", "d".repeat(60))), "long path");
                insert(&layout, &source, &format!("/opt/pkg{n}"), &[]);
            }
            // The same file again: the top one wins.
            3 | 4 => {
                write(&source.join("motd"), &format!("written by layer {n}\n"));
                insert(&layout, &source.join("motd"), "/etc/motd", &[]);
            }
            // Whiteouts of earlier trees.
            5 => remove(&layout, &format!("/opt/pkg{}", n - 5)),
            // A directory replaced whole: nothing of what was below stays.
            6 => {
                write(&source.join("only"), "opaque");
                insert(&layout, &source, &format!("/opt/pkg{}", n - 5), &["--opaque"]);
            }
            _ => {
                write(&source.join(format!("file-{n}")), &"x".repeat(n * 37 + 1));
                insert(&layout, &source, "/data", &[]);
            }
        }
        layers += 1;
    }
    let tars = layout_layer_tars(&layout);
    assert_eq!(tars.len(), layers);
    assert!(layers >= 30);
    let unpadded = tars.iter().filter(|tar| stops_after_data(tar)).count();
    assert!(
        unpadded >= layers / 2,
        "only {unpadded} of {layers} layers unpadded"
    );
    push_layout(&layout, &registry, "umoci/many");

    let ours = our_rootfs(&registry, "umoci/many", dir.path()).await;
    let theirs = umoci_rootfs(&layout, "t", dir.path());
    assert_same_tree(&ours, &theirs, "32 layers");
    assert_eq!(ours["etc/motd"].2, b"written by layer 28\n");
    assert!(!ours.contains_key("opt/pkg0"), "whited out");
    assert_eq!(ours["opt/pkg25/only"].2, b"opaque");
    assert!(
        !ours.contains_key("opt/pkg25/bin"),
        "hidden by the opaque directory"
    );
}

// ---- layers written byte by byte ----

/// A tar entry, written by hand: `header` (its checksum set here), then `data`, padded.
fn entry(out: &mut Vec<u8>, mut header: tar::Header, data: &[u8]) {
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn header(kind: tar::EntryType, name: &[u8], mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(1_700_000_000);
    header
}

/// An extension entry (PAX `x`, GNU `L`/`K`) carrying `data` for the entry after it.
fn extension(out: &mut Vec<u8>, kind: tar::EntryType, data: &[u8]) {
    let name: &[u8] = if kind == tar::EntryType::XHeader {
        b"PaxHeaders/x"
    } else {
        b"././@LongLink"
    };
    let mut header = header(kind, name, 0o644, data.len() as u64);
    if kind != tar::EntryType::XHeader {
        // GNU extension entries are GNU headers.
        let gnu = tar::Header::new_gnu();
        header.as_mut_bytes()[257..265].copy_from_slice(&gnu.as_bytes()[257..265]);
    }
    entry(out, header, data);
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<length> <key>=<value>\n", the length counting itself.
    let rest = key.len() + value.len() + 3;
    let mut length = rest + 1;
    while length.to_string().len() + rest > length {
        length += 1;
    }
    [format!("{length} {key}=").as_bytes(), value, b"\n"].concat()
}

/// One layer's content in every form of name and size a Go tool reads: plain ustar, GNU
/// long names and link names, PAX paths and link paths, a PAX size (the header's says 0),
/// PAX times and an xattr. Its last entry is a file whose data does not end in a zero, so
/// it can be cut right after that data.
fn content() -> Vec<u8> {
    use tar::EntryType::{Directory, GNULongLink, GNULongName, Regular, Symlink, XHeader};
    let long_dir = format!("usr/share/{}", "long-directory-name-".repeat(5));
    let mut out = Vec::new();
    entry(&mut out, header(Directory, b"etc/", 0o755, 0), b"");
    entry(&mut out, header(Regular, b"etc/hostname", 0o644, 8), b"example\n");
    // GNU long name, and a GNU long link name.
    let gnu_file = format!("{long_dir}/gnu-file");
    extension(&mut out, GNULongName, format!("{gnu_file}\0").as_bytes());
    entry(&mut out, header(Regular, b"truncated-name", 0o600, 3), b"gnu");
    extension(&mut out, GNULongName, format!("{long_dir}/gnu-link\0").as_bytes());
    extension(&mut out, GNULongLink, format!("/{gnu_file}\0").as_bytes());
    entry(&mut out, header(Symlink, b"truncated-link", 0o777, 0), b"");
    // PAX path, link path, size, times and an xattr.
    let pax_file = format!("{long_dir}/pax-file");
    let records = [
        pax_record("path", pax_file.as_bytes()),
        pax_record("size", b"11"),
        pax_record("mtime", b"1700000000.123456789"),
        pax_record("SCHILY.xattr.user.note", b"kept"),
    ]
    .concat();
    extension(&mut out, XHeader, &records);
    entry(&mut out, header(Regular, b"short", 0o640, 0), b"pax-sized\n!");
    let records = [
        pax_record("path", format!("{long_dir}/pax-link").as_bytes()),
        pax_record(
            "linkpath",
            format!("../{}/pax-file", "long-directory-name-".repeat(5)).as_bytes(),
        ),
    ]
    .concat();
    extension(&mut out, XHeader, &records);
    entry(&mut out, header(Symlink, b"short-link", 0o777, 0), b"");
    // The last: 13 bytes of data, the last byte not zero.
    entry(
        &mut out,
        header(Regular, b"etc/last", 0o644, 13),
        b"the last file",
    );
    out.extend_from_slice(&[0; 1024]);
    out
}

/// `tar` cut right after its last data byte: no padding, no end-of-archive blocks.
fn unpadded(tar: &[u8]) -> Vec<u8> {
    tar[..tar.iter().rposition(|&b| b != 0).expect("data") + 1].to_vec()
}

fn gzip_members(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(part).expect("gzip");
        out.extend(encoder.finish().expect("gzip"));
    }
    out
}

/// Pushes an image of `layers` (each its blob, media type and uncompressed tar) as
/// `repository:v1`.
async fn push_image(pusher: &Pusher, repository: &str, layers: &[(Vec<u8>, &str, Vec<u8>)]) {
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (blob, media_type, tar) in layers {
        let digest = pusher.blob(repository, blob).await;
        descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
        diff_ids.push(sha256(tar));
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    let config_digest = pusher.blob(repository, &config).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    })
    .to_string()
    .into_bytes();
    pusher.manifest(repository, "v1", OCI_MANIFEST, &manifest).await;
}

/// Our OCI layout of `repository:v1`, for umoci to unpack (the blobs as pulled).
async fn our_layout(registry: &TestRegistry, repository: &str, dir: &Path) -> PathBuf {
    let layout = dir.join(format!("{}.layout", repository.replace('/', "-")));
    client()
        .pull(&reference(registry, repository))
        .await
        .expect("resolve")
        .write_oci_layout(&layout, &PullOptions::default().ref_name("t"))
        .await
        .expect("layout");
    layout
}

#[tokio::test]
async fn every_lenient_layer_form_flattens_as_umoci_unpacks_it() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = content();
    let cut = unpadded(&tar);
    let with = |extra: &[u8]| [&tar[..], extra].concat();
    let forms: Vec<(&str, Vec<u8>, &str, Vec<u8>)> = vec![
        ("no padding, no end blocks", cut.clone(), LAYER_TAR, cut.clone()),
        ("the same, gzip", gzip_members(&[&cut]), LAYER_GZIP, cut.clone()),
        (
            "no end blocks",
            tar[..tar.len() - 1024].to_vec(),
            LAYER_TAR,
            tar[..tar.len() - 1024].to_vec(),
        ),
        (
            "one zero block",
            tar[..tar.len() - 512].to_vec(),
            LAYER_TAR,
            tar[..tar.len() - 512].to_vec(),
        ),
        (
            "zeros after the end",
            with(&[0; 8192]),
            LAYER_TAR,
            with(&[0; 8192]),
        ),
        (
            "garbage after the end",
            with(b"not a tar header"),
            LAYER_TAR,
            with(b"not a tar header"),
        ),
        (
            "three gzip members",
            gzip_members(&[&tar[..700], &tar[700..2100], &tar[2100..]]),
            LAYER_GZIP,
            tar.clone(),
        ),
    ];
    let mut reference_tree: Option<Tree> = None;
    for (n, (what, blob, media_type, uncompressed)) in forms.into_iter().enumerate() {
        let repository = format!("lenient/form{n}");
        push_image(&pusher, &repository, &[(blob, media_type, uncompressed)]).await;
        let ours = our_rootfs(&registry, &repository, dir.path()).await;
        let layout = our_layout(&registry, &repository, dir.path()).await;
        let theirs = umoci_rootfs(&layout, "t", dir.path());
        assert_same_tree(&ours, &theirs, what);
        // Every form holds the same files.
        match &reference_tree {
            None => reference_tree = Some(ours),
            Some(first) => assert_eq!(&ours, first, "{what}"),
        }
    }
    let tree = reference_tree.expect("forms");
    let long_dir = format!("usr/share/{}", "long-directory-name-".repeat(5));
    assert_eq!(
        tree[&format!("{long_dir}/pax-file")],
        ('f', 0o640, b"pax-sized\n!".to_vec())
    );
    assert_eq!(
        tree[&format!("{long_dir}/gnu-file")],
        ('f', 0o600, b"gnu".to_vec())
    );
    assert_eq!(tree["etc/last"].2, b"the last file");
}

#[tokio::test]
async fn pax_times_and_xattrs_are_kept() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = unpadded(&content());
    push_image(&pusher, "lenient/pax", &[(tar.clone(), LAYER_TAR, tar)]).await;
    let path = dir.path().join("rootfs.tar");
    client()
        .pull(&reference(&registry, "lenient/pax"))
        .await
        .expect("resolve")
        .write_rootfs(&path, &PullOptions::default())
        .await
        .expect("rootfs");
    let bytes = std::fs::read(&path).expect("rootfs");
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut seen = false;
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        if !entry.path().expect("path").ends_with("pax-file") {
            continue;
        }
        let records: Vec<(String, Vec<u8>)> = entry
            .pax_extensions()
            .expect("PAX")
            .expect("PAX records")
            .map(|r| {
                let r = r.expect("record");
                (r.key().expect("key").to_owned(), r.value_bytes().to_vec())
            })
            .collect();
        assert!(
            records.contains(&("mtime".into(), b"1700000000.123456789".to_vec())),
            "{records:?}"
        );
        assert!(
            records.contains(&("SCHILY.xattr.user.note".into(), b"kept".to_vec())),
            "{records:?}"
        );
        seen = true;
    }
    assert!(seen, "no pax-file in the rootfs");
}

#[tokio::test]
async fn a_truncated_entry_fails_the_pull_naming_the_layer_and_the_entry() {
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = content();
    // Cut 5 bytes into etc/last's 13 (its data starts 1024 + 512 bytes before the end).
    let data_start = tar.len() - 1024 - 512;
    let cut = tar[..data_start + 5].to_vec();
    let whole = content();
    push_image(
        &pusher,
        "lenient/truncated",
        &[(whole.clone(), LAYER_TAR, whole), (cut.clone(), LAYER_TAR, cut)],
    )
    .await;
    let path = dir.path().join("rootfs.tar");
    let err = client()
        .pull(&reference(&registry, "lenient/truncated"))
        .await
        .expect("resolve")
        .write_rootfs(&path, &PullOptions::default())
        .await
        .expect_err("a truncated entry must fail the pull")
        .to_string();
    assert!(err.contains("layer 2 of 2"), "{err}");
    assert!(
        err.contains("entry `etc/last` ends after 5 of its 13 bytes"),
        "{err}"
    );
    assert!(!path.exists(), "a failed pull left {}", path.display());
}

#[tokio::test]
async fn hostile_paths_land_where_umoci_puts_them_and_never_below_a_symlink() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let registry = TestRegistry::start_empty(AuthMode::None).await;
    let pusher = Pusher::new(&registry.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut base = Vec::new();
    entry(&mut base, header(Directory, b"etc/", 0o755, 0), b"");
    entry(&mut base, header(Regular, b"etc/passwd", 0o644, 5), b"base\n");
    entry(&mut base, header(Directory, b"usr/", 0o755, 0), b"");
    entry(&mut base, header(Directory, b"usr/lib/", 0o755, 0), b"");
    base.extend_from_slice(&[0; 1024]);
    let mut hostile = Vec::new();
    let link = |name: &[u8], kind, target: &[u8]| {
        let mut h = header(kind, name, 0o777, 0);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
        h
    };
    entry(&mut hostile, header(Regular, b"../../evil", 0o644, 4), b"evil");
    entry(&mut hostile, header(Regular, b"/abs/file", 0o644, 3), b"abs");
    entry(
        &mut hostile,
        header(Regular, b"ok/../../../fine", 0o644, 4),
        b"fine",
    );
    entry(&mut hostile, link(b"up", Symlink, b"../../.."), b"");
    entry(&mut hostile, link(b"root", Symlink, b"/etc"), b"");
    entry(&mut hostile, link(b"lib", Symlink, b"usr/lib"), b"");
    entry(
        &mut hostile,
        header(Regular, b"up/etc/shadow", 0o600, 6),
        b"shadow",
    );
    entry(
        &mut hostile,
        header(Regular, b"root/passwd", 0o644, 6),
        b"owned\n",
    );
    entry(&mut hostile, header(Regular, b"lib/libx.so", 0o755, 4), b"libx");
    entry(&mut hostile, link(b"hard", Link, b"../root/passwd"), b"");
    hostile.extend_from_slice(&[0; 1024]);
    push_image(
        &pusher,
        "hostile/paths",
        &[
            (base.clone(), LAYER_TAR, base),
            (hostile.clone(), LAYER_TAR, hostile),
        ],
    )
    .await;

    let ours = our_rootfs(&registry, "hostile/paths", dir.path()).await;
    let layout = our_layout(&registry, "hostile/paths", dir.path()).await;
    let theirs = umoci_rootfs(&layout, "t", dir.path());
    assert_same_tree(&ours, &theirs, "hostile paths");
    // What the rule says (docs/usage.md): `..` stops at the root, entries below a symlink
    // of their own layer go where it leads, inside the root.
    assert_eq!(ours["evil"].2, b"evil");
    assert_eq!(ours["abs/file"].2, b"abs");
    assert_eq!(ours["fine"].2, b"fine");
    assert_eq!(ours["etc/shadow"], ('f', 0o600, b"shadow".to_vec()));
    assert_eq!(ours["etc/passwd"].2, b"owned\n");
    assert_eq!(ours["usr/lib/libx.so"].2, b"libx");
    assert_eq!(ours["hard"].2, b"owned\n");
    assert_eq!(ours["up"], ('l', 0, b"../../..".to_vec()));
    for path in ours.keys() {
        let mut prefix = String::new();
        for part in path.split('/') {
            assert!(
                !matches!(ours.get(&prefix), Some(('l', _, _))),
                "{path} is below the symlink {prefix}"
            );
            prefix = if prefix.is_empty() {
                part.to_owned()
            } else {
                format!("{prefix}/{part}")
            };
        }
        assert!(!path.split('/').any(|part| part == ".."), "{path}");
    }
}
