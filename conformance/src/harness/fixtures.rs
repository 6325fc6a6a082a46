//! Deterministic fixture images, built in memory and pushed to a registry with [`Pusher`].
//!
//! Every byte is fixed (tar mtimes, uids, modes, gzip header, JSON key order), so digests are
//! identical from run to run and tests can assert exact values. [`fixtures()`] is the shared
//! instance that [`TestRegistry`](super::TestRegistry) registries are seeded with.

use bytes::Bytes;
use serde_json::{Value, json};
use std::io::Write as _;
use std::sync::OnceLock;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The empty descriptor's media type: an artifact's config (`{}`).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// mtime of every tar entry (2024-01-01T00:00:00Z) and the config's `created`.
const MTIME: u64 = 1_704_067_200;
const CREATED: &str = "2024-01-01T00:00:00Z";

/// Every fixture pushed to a seeded registry.
#[derive(Clone, Debug)]
pub struct Fixtures {
    /// `single/oci:v1`: OCI manifest, linux/amd64, one layer with `bin/`, `bin/hello.sh`
    /// (0755), `etc/`, `etc/hello.txt` and the symlink `etc/hello-link -> hello.txt`.
    pub single_oci: ImageFixture,
    /// `single/docker:v1`: the same shape with Docker v2 schema 2 media types.
    pub single_docker: ImageFixture,
    /// `multi/oci:v1`: OCI index of linux/amd64, linux/arm64/v8, linux/arm/v7; each child has
    /// one layer with `platform.txt` = `"multi/oci linux/arm64/v8\n"` (etc.).
    pub multi_oci: IndexFixture,
    /// `multi/docker:v1`: the same as a Docker manifest list.
    pub multi_docker: IndexFixture,
    /// `many/layers:v1`: 32 layers; layer N adds `layers/NN.txt` = `"layer NN\n"`. The last
    /// layer also deletes `layers/00.txt` (whiteout `layers/.wh.00.txt`) and rewrites
    /// `layers/01.txt` = `"layer 01 rewritten by layer 31\n"`.
    pub many_layers: ImageFixture,
    /// `a/b/c/d:v1`: a nested repository name, OCI, one layer.
    pub nested: ImageFixture,
    /// `tags/many`: one image under 25 tags `t00`..`t24`, for tag-list pagination against
    /// servers that paginate. Distribution 2.8 itself does not: it ignores `n`/`last` on
    /// `/tags/list`, sends no `Link`, and lists tags in storage order (unsorted). It does
    /// paginate `/_catalog` (`?n=3` gives a `Link: </v2/_catalog?last=…&n=3>; rel="next"`).
    pub tags: TagsFixture,
    /// `referred/image:v1`: an OCI image with two OCI 1.1 artifacts whose `subject` it
    /// is, an SBOM and a signature, listed in that order by the fallback index at its
    /// tag `sha256-<hex>` (Distribution 2.8 has no referrers API).
    pub referred: ReferredFixture,
}

/// An image and the artifacts that refer to it.
#[derive(Clone, Debug)]
pub struct ReferredFixture {
    pub image: ImageFixture,
    pub referrers: Vec<ArtifactFixture>,
}

/// An OCI 1.1 artifact: the empty config, one layer `payload` of `artifact_type`.
#[derive(Clone, Debug)]
pub struct ArtifactFixture {
    pub artifact_type: &'static str,
    pub payload: Bytes,
    pub manifest: Bytes,
    pub digest: String,
}

impl ArtifactFixture {
    fn new(subject: &ImageFixture, artifact_type: &'static str, payload: &[u8]) -> ArtifactFixture {
        let manifest = artifact_manifest(&subject.descriptor(), artifact_type, payload);
        ArtifactFixture {
            artifact_type,
            payload: Bytes::copy_from_slice(payload),
            digest: super::sha256_digest(&manifest),
            manifest: manifest.into(),
        }
    }

    /// The artifact as a referrers index lists it (with `artifactType`).
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": self.digest,
            "size": self.manifest.len(),
            "artifactType": self.artifact_type,
        })
    }
}

/// An OCI 1.1 artifact manifest whose `subject` is the descriptor `subject`: the empty
/// config `{}` and one layer `payload` of `artifact_type`.
fn artifact_manifest(subject: &Value, artifact_type: &str, payload: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": super::sha256_digest(b"{}"), "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": super::sha256_digest(payload), "size": payload.len()}],
        "subject": {"mediaType": subject["mediaType"], "digest": subject["digest"], "size": subject["size"]},
    }))
    .expect("JSON")
}

/// One image manifest and its blobs.
#[derive(Clone, Debug)]
pub struct ImageFixture {
    pub repository: String,
    /// `None` for the children of an index, which are pushed by digest only.
    pub tag: Option<String>,
    pub platform: Platform,
    pub media_type: &'static str,
    /// `sha256:<hex>` of `manifest`.
    pub digest: String,
    pub manifest: Bytes,
    pub config_media_type: &'static str,
    pub config_digest: String,
    pub config: Bytes,
    pub layers: Vec<LayerFixture>,
}

/// One gzip layer: the blob, its uncompressed digest and what it contains.
#[derive(Clone, Debug)]
pub struct LayerFixture {
    pub media_type: &'static str,
    /// Digest of the compressed blob (`data`).
    pub digest: String,
    pub size: u64,
    pub data: Bytes,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: String,
    /// The tar entries in order. Whiteouts are plain empty files named `.wh.<name>`.
    pub files: Vec<FixtureFile>,
}

/// One tar entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixtureFile {
    /// Relative path without a leading `/` or trailing `/`.
    pub path: String,
    /// Permission bits, e.g. `0o755`.
    pub mode: u32,
    pub kind: FileKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

/// An OCI index or Docker manifest list with its child images.
#[derive(Clone, Debug)]
pub struct IndexFixture {
    pub repository: String,
    pub tag: String,
    pub media_type: &'static str,
    pub digest: String,
    pub manifest: Bytes,
    /// In index order: linux/amd64, linux/arm64/v8, linux/arm/v7.
    pub children: Vec<ImageFixture>,
}

/// A repository with many tags that all point at `image`.
#[derive(Clone, Debug)]
pub struct TagsFixture {
    pub repository: String,
    /// Sorted (the registry's own listing order is not).
    pub tags: Vec<String>,
    /// The image; its `tag` is the first tag.
    pub image: ImageFixture,
}

/// `os/architecture[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `linux/arm64/v8`, `linux/amd64`.
    pub fn parse(s: &str) -> Platform {
        let mut parts = s.split('/');
        let os = parts.next().unwrap_or_default().to_string();
        let architecture = parts.next().unwrap_or_default().to_string();
        let variant = parts.next().map(String::from);
        Platform {
            os,
            architecture,
            variant,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl ImageFixture {
    /// `HOST/REPO:TAG`, or `HOST/REPO@DIGEST` for an index child.
    pub fn reference(&self, host: &str) -> String {
        match &self.tag {
            Some(tag) => format!("{host}/{}:{tag}", self.repository),
            None => format!("{host}/{}@{}", self.repository, self.digest),
        }
    }

    /// `HOST/REPO@DIGEST`.
    /// The image's manifest as a descriptor (`mediaType`, `digest`, `size`).
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.manifest.len()})
    }

    pub fn digest_reference(&self, host: &str) -> String {
        format!("{host}/{}@{}", self.repository, self.digest)
    }
}

impl IndexFixture {
    /// `HOST/REPO:TAG`.
    pub fn reference(&self, host: &str) -> String {
        format!("{host}/{}:{}", self.repository, self.tag)
    }

    /// The child for `platform` (`"linux/arm64/v8"`); panics if there is none.
    pub fn child(&self, platform: &str) -> &ImageFixture {
        let wanted = Platform::parse(platform);
        self.children
            .iter()
            .find(|c| c.platform == wanted)
            .unwrap_or_else(|| panic!("{} has no child for {platform}", self.repository))
    }
}

/// The shared fixture set (built once per process).
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(Fixtures::build)
}

impl Fixtures {
    /// Builds every fixture in memory. Deterministic: two calls give identical bytes.
    pub fn build() -> Fixtures {
        let amd64 = Platform::parse("linux/amd64");
        let single = |flavor, repo: &str| image(flavor, repo, Some("v1"), &amd64, vec![hello_files(repo)]);
        let multi = |flavor, repo: &str| {
            let children = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
                .iter()
                .map(|p| {
                    let files = vec![file("platform.txt", 0o644, &format!("{repo} {p}\n"))];
                    image(flavor, repo, None, &Platform::parse(p), vec![files])
                })
                .collect();
            index(flavor, repo, "v1", children)
        };
        let tags: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
        Fixtures {
            single_oci: single(Flavor::Oci, "single/oci"),
            single_docker: single(Flavor::Docker, "single/docker"),
            multi_oci: multi(Flavor::Oci, "multi/oci"),
            multi_docker: multi(Flavor::Docker, "multi/docker"),
            many_layers: image(Flavor::Oci, "many/layers", Some("v1"), &amd64, many_layers()),
            nested: image(
                Flavor::Oci,
                "a/b/c/d",
                Some("v1"),
                &amd64,
                vec![hello_files("a/b/c/d")],
            ),
            tags: TagsFixture {
                repository: "tags/many".into(),
                image: image(
                    Flavor::Oci,
                    "tags/many",
                    Some(&tags[0]),
                    &amd64,
                    vec![hello_files("tags/many")],
                ),
                tags,
            },
            referred: {
                let image = single(Flavor::Oci, "referred/image");
                let referrers = vec![
                    ArtifactFixture::new(&image, "application/spdx+json", br#"{"spdxVersion":"SPDX-2.3"}"#),
                    ArtifactFixture::new(
                        &image,
                        "application/vnd.dev.cosign.artifact.sig.v1+json",
                        b"signature of referred/image",
                    ),
                ];
                ReferredFixture { image, referrers }
            },
        }
    }

    /// Every repository, sorted as the registry's catalog lists them.
    pub fn repositories(&self) -> Vec<String> {
        let mut repos: Vec<String> = self.images().map(|i| i.repository.clone()).collect();
        repos.sort();
        repos.dedup();
        repos
    }

    /// Every image manifest, index children included.
    pub fn images(&self) -> impl Iterator<Item = &ImageFixture> {
        [
            &self.single_oci,
            &self.single_docker,
            &self.many_layers,
            &self.nested,
            &self.tags.image,
            &self.referred.image,
        ]
        .into_iter()
        .chain(self.multi_oci.children.iter())
        .chain(self.multi_docker.children.iter())
    }

    /// The content of the blob (config or layer) with this digest.
    pub fn blob(&self, digest: &str) -> Option<Bytes> {
        self.images().find_map(|i| {
            if i.config_digest == digest {
                return Some(i.config.clone());
            }
            i.layers
                .iter()
                .find(|l| l.digest == digest)
                .map(|l| l.data.clone())
        })
    }
}

#[derive(Clone, Copy)]
enum Flavor {
    Oci,
    Docker,
}

impl Flavor {
    fn manifest(self) -> &'static str {
        match self {
            Flavor::Oci => OCI_MANIFEST,
            Flavor::Docker => DOCKER_MANIFEST,
        }
    }
    fn index(self) -> &'static str {
        match self {
            Flavor::Oci => OCI_INDEX,
            Flavor::Docker => DOCKER_MANIFEST_LIST,
        }
    }
    fn config(self) -> &'static str {
        match self {
            Flavor::Oci => OCI_CONFIG,
            Flavor::Docker => DOCKER_CONFIG,
        }
    }
    fn layer(self) -> &'static str {
        match self {
            Flavor::Oci => OCI_LAYER_GZIP,
            Flavor::Docker => DOCKER_LAYER_GZIP,
        }
    }
}

fn dir(path: &str) -> FixtureFile {
    FixtureFile {
        path: path.into(),
        mode: 0o755,
        kind: FileKind::Dir,
    }
}

fn file(path: &str, mode: u32, content: &str) -> FixtureFile {
    FixtureFile {
        path: path.into(),
        mode,
        kind: FileKind::File(content.as_bytes().to_vec()),
    }
}

fn hello_files(repo: &str) -> Vec<FixtureFile> {
    vec![
        dir("bin"),
        file(
            "bin/hello.sh",
            0o755,
            &format!("#!/bin/sh\necho hello from {repo}\n"),
        ),
        dir("etc"),
        file("etc/hello.txt", 0o644, &format!("hello from {repo}\n")),
        FixtureFile {
            path: "etc/hello-link".into(),
            mode: 0o777,
            kind: FileKind::Symlink("hello.txt".into()),
        },
    ]
}

fn many_layers() -> Vec<Vec<FixtureFile>> {
    let mut layers: Vec<Vec<FixtureFile>> = (0..32)
        .map(|i| {
            vec![
                dir("layers"),
                file(&format!("layers/{i:02}.txt"), 0o644, &format!("layer {i:02}\n")),
            ]
        })
        .collect();
    let last = layers.last_mut().expect("32 layers");
    last.push(file("layers/.wh.00.txt", 0o644, ""));
    last.push(file("layers/01.txt", 0o644, "layer 01 rewritten by layer 31\n"));
    layers
}

/// A gzip tar of `files` with fixed metadata.
fn layer(flavor: Flavor, files: Vec<FixtureFile>) -> LayerFixture {
    let mut tar = tar::Builder::new(Vec::new());
    for f in &files {
        let mut header = tar::Header::new_ustar();
        header.set_mode(f.mode);
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root").expect("tar user");
        header.set_groupname("root").expect("tar group");
        let result = match &f.kind {
            FileKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, format!("{}/", f.path), std::io::empty())
            }
            FileKind::File(content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(content.len() as u64);
                tar.append_data(&mut header, &f.path, content.as_slice())
            }
            FileKind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &f.path, target)
            }
        };
        result.expect("append tar entry");
    }
    let tar = tar.into_inner().expect("finish tar");
    // mtime 0 and a fixed OS byte keep the gzip header stable.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    let data = Bytes::from(gz.finish().expect("gzip"));
    LayerFixture {
        media_type: flavor.layer(),
        digest: super::sha256_digest(&data),
        size: data.len() as u64,
        data,
        diff_id: super::sha256_digest(&tar),
        files,
    }
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

fn image(
    flavor: Flavor,
    repo: &str,
    tag: Option<&str>,
    platform: &Platform,
    layer_files: Vec<Vec<FixtureFile>>,
) -> ImageFixture {
    let layers: Vec<LayerFixture> = layer_files.into_iter().map(|f| layer(flavor, f)).collect();
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"org.example.mcreg.fixture": repo},
        },
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
        "history": layers.iter().enumerate()
            .map(|(i, _)| json!({"created": CREATED, "created_by": format!("mcreg fixture layer {i}")}))
            .collect::<Vec<_>>(),
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = json!(variant);
    }
    let config = Bytes::from(serde_json::to_vec(&config).expect("config JSON"));
    let config_digest = super::sha256_digest(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": flavor.manifest(),
        "config": descriptor(flavor.config(), &config_digest, config.len()),
        "layers": layers.iter().map(|l| descriptor(l.media_type, &l.digest, l.data.len())).collect::<Vec<_>>(),
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("manifest JSON"));
    ImageFixture {
        repository: repo.into(),
        tag: tag.map(String::from),
        platform: platform.clone(),
        media_type: flavor.manifest(),
        digest: super::sha256_digest(&manifest),
        manifest,
        config_media_type: flavor.config(),
        config_digest,
        config,
        layers,
    }
}

fn index(flavor: Flavor, repo: &str, tag: &str, children: Vec<ImageFixture>) -> IndexFixture {
    let manifests: Vec<Value> = children
        .iter()
        .map(|c| {
            let mut d = descriptor(c.media_type, &c.digest, c.manifest.len());
            d["platform"] = json!({"architecture": c.platform.architecture, "os": c.platform.os});
            if let Some(variant) = &c.platform.variant {
                d["platform"]["variant"] = json!(variant);
            }
            d
        })
        .collect();
    let manifest = json!({"schemaVersion": 2, "mediaType": flavor.index(), "manifests": manifests});
    let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("index JSON"));
    IndexFixture {
        repository: repo.into(),
        tag: tag.into(),
        media_type: flavor.index(),
        digest: super::sha256_digest(&manifest),
        manifest,
        children,
    }
}

/// Pushes blobs and manifests with plain reqwest (monolithic uploads). Panics on any error:
/// it is test setup.
#[derive(Clone, Debug)]
pub struct Pusher {
    client: reqwest::Client,
    base: url::Url,
    basic: Option<(String, String)>,
}

impl Pusher {
    /// A pusher for the registry at `base_url` (`http://127.0.0.1:PORT`).
    pub fn new(base_url: &str) -> Pusher {
        Pusher {
            client: reqwest::Client::new(),
            base: url::Url::parse(base_url).expect("registry URL"),
            basic: None,
        }
    }

    /// Sends these Basic credentials with every request (for `AuthMode::Basic` registries).
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Pusher {
        self.basic = Some((user.into(), password.into()));
        self
    }

    fn request(&self, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, url);
        match &self.basic {
            Some((u, p)) => builder.basic_auth(u, Some(p)),
            None => builder,
        }
    }

    /// Uploads `data` to `repo` (skipped if already there) and returns its digest.
    pub async fn blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = super::sha256_digest(data);
        let head = self
            .base
            .join(&format!("/v2/{repo}/blobs/{digest}"))
            .expect("URL");
        let res = self
            .request(reqwest::Method::HEAD, head)
            .send()
            .await
            .expect("HEAD blob");
        if res.status().is_success() {
            return digest;
        }
        let start = self
            .base
            .join(&format!("/v2/{repo}/blobs/uploads/"))
            .expect("URL");
        let res = self
            .request(reqwest::Method::POST, start)
            .send()
            .await
            .expect("POST upload");
        assert_eq!(
            res.status(),
            202,
            "start upload to {repo}: {:?}",
            res.text().await
        );
        let location = res.headers()["location"].to_str().expect("Location").to_string();
        // Location may be relative and already carries a query (`_state=…`): append to it.
        let mut put = self.base.join(&location).expect("Location URL");
        put.query_pairs_mut().append_pair("digest", &digest);
        let res = self
            .request(reqwest::Method::PUT, put)
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("PUT blob");
        assert_eq!(
            res.status(),
            201,
            "upload {digest} to {repo}: {:?}",
            res.text().await
        );
        digest
    }

    /// Puts a manifest under `reference` (tag or digest) and returns the registry's digest.
    pub async fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
        let url = self
            .base
            .join(&format!("/v2/{repo}/manifests/{reference}"))
            .expect("URL");
        let res = self
            .request(reqwest::Method::PUT, url)
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT manifest");
        let status = res.status();
        let digest = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        assert_eq!(
            status,
            201,
            "put manifest {repo}:{reference}: {:?}",
            res.text().await
        );
        digest.expect("Docker-Content-Digest")
    }

    /// Pushes an image's blobs and manifest (under its tag, or its digest if it has none).
    pub async fn image(&self, image: &ImageFixture) {
        self.blob(&image.repository, &image.config).await;
        for layer in &image.layers {
            self.blob(&image.repository, &layer.data).await;
        }
        let reference = image.tag.as_deref().unwrap_or(&image.digest);
        let digest = self
            .manifest(&image.repository, reference, image.media_type, &image.manifest)
            .await;
        assert_eq!(digest, image.digest, "{} digest", image.repository);
    }

    /// Pushes an index's children (by digest) and then the index under its tag.
    pub async fn index(&self, index: &IndexFixture) {
        for child in &index.children {
            self.image(child).await;
        }
        let digest = self
            .manifest(&index.repository, &index.tag, index.media_type, &index.manifest)
            .await;
        assert_eq!(digest, index.digest, "{} digest", index.repository);
    }

    /// An OCI 1.1 artifact manifest for `repository` whose `subject` is the descriptor
    /// `subject` ([`ImageFixture::descriptor`], or another artifact's): the empty config
    /// and one layer `payload` of `artifact_type`, both pushed. Returns the manifest's
    /// bytes, not pushed.
    pub async fn artifact_manifest(
        &self,
        repository: &str,
        subject: &Value,
        artifact_type: &str,
        payload: &[u8],
    ) -> Vec<u8> {
        self.blob(repository, b"{}").await;
        self.blob(repository, payload).await;
        artifact_manifest(subject, artifact_type, payload)
    }

    /// Pushes [`artifact_manifest`](Self::artifact_manifest) by digest and returns its
    /// descriptor as a referrers index lists it (with `artifactType`).
    pub async fn artifact(
        &self,
        repository: &str,
        subject: &Value,
        artifact_type: &str,
        payload: &[u8],
    ) -> Value {
        let manifest = self
            .artifact_manifest(repository, subject, artifact_type, payload)
            .await;
        let digest = super::sha256_digest(&manifest);
        assert_eq!(
            self.manifest(repository, &digest, OCI_MANIFEST, &manifest).await,
            digest
        );
        json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(), "artifactType": artifact_type})
    }

    /// Pushes the referrers index of the manifest `subject` (a digest) in `repository`
    /// under its fallback tag (`sha256-<hex>`), as a client does for a registry without
    /// the referrers API.
    pub async fn fallback_index(&self, repository: &str, subject: &str, referrers: &[Value]) {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": referrers,
        }))
        .expect("JSON");
        let tag = subject.replacen(':', "-", 1);
        self.manifest(repository, &tag, OCI_INDEX, &index).await;
    }

    /// Pushes every fixture (repositories concurrently: seeding time is paid by every test
    /// binary).
    pub async fn all(&self, fixtures: &Fixtures) {
        let tags = async {
            let t = &fixtures.tags;
            self.image(&t.image).await;
            for tag in &t.tags[1..] {
                self.manifest(&t.repository, tag, t.image.media_type, &t.image.manifest)
                    .await;
            }
        };
        let referred = async {
            let r = &fixtures.referred;
            self.image(&r.image).await;
            for artifact in &r.referrers {
                let pushed = self
                    .artifact(
                        &r.image.repository,
                        &r.image.descriptor(),
                        artifact.artifact_type,
                        &artifact.payload,
                    )
                    .await;
                assert_eq!(pushed["digest"], artifact.digest.as_str());
            }
            let listed: Vec<Value> = r.referrers.iter().map(ArtifactFixture::descriptor).collect();
            self.fallback_index(&r.image.repository, &r.image.digest, &listed)
                .await;
        };
        futures::join!(
            referred,
            self.image(&fixtures.single_oci),
            self.image(&fixtures.single_docker),
            self.index(&fixtures.multi_oci),
            self.index(&fixtures.multi_docker),
            self.image(&fixtures.many_layers),
            self.image(&fixtures.nested),
            tags,
        );
    }
}
