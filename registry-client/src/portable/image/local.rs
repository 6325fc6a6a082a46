//! Images other tools wrote, read where they lie: an OCI layout or a docker
//! archive as an [`ImageSource`]. Nothing is unpacked or copied first: a blob
//! is read from its file (a layout's blob, an archive's entry) when a
//! destination asks for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream;

use super::manifests::{ImageManifests, PlatformImage, is_image_config};
use super::source::ImageSource;
use crate::driver::protocol::blobs::BlobStream;
use crate::error::{Error, Result};
use crate::formats::docker_archive::read_docker_archive;
use crate::formats::local_image::{BlobBytes, ImageOnDisk, MAX_JSON, StoredBlob, StoredManifest, read_at};
use crate::formats::oci_layout::read_oci_layout;
use crate::model::manifest::{ImageConfig, Manifest, ManifestKind};
use crate::model::platform::Platform;
use crate::model::reference::ImageReference;

/// An image read from disk: see [`open_oci_layout`](Self::open_oci_layout)
/// and [`open_docker_archive`](Self::open_docker_archive). Damaged input is
/// [`Error::InvalidLocalImage`](crate::Error::InvalidLocalImage) naming the file and
/// what is wrong with it; a missing file an I/O error on its path.
#[derive(Debug)]
pub struct LocalImage {
    manifests: ImageManifests,
    /// Where each blob's bytes lie, by digest.
    blobs: HashMap<String, StoredBlob>,
    /// Where it was read from, for messages.
    origin: String,
}

impl LocalImage {
    /// The image of an OCI layout at `dir`: the entry of `index.json` whose
    /// `org.opencontainers.image.ref.name` is `tag`, or its only entry when `tag` is `None`.
    /// An index is taken whole, its manifests and their blobs.
    pub fn open_oci_layout(dir: &Path, tag: Option<&str>) -> Result<LocalImage> {
        LocalImage::from_disk(read_oci_layout(dir, tag)?, dir, false)
    }

    /// The image of a docker archive at `path` (`manifest.json` with one image, or the one
    /// whose `RepoTags` holds `tag`), as a Docker schema 2 manifest over the archive's
    /// config and layers, byte for byte.
    pub fn open_docker_archive(path: &Path, tag: Option<&str>) -> Result<LocalImage> {
        LocalImage::from_disk(read_docker_archive(path, tag)?, path, true)
    }

    fn from_disk(image: ImageOnDisk, origin: &Path, repo_tag: bool) -> Result<LocalImage> {
        let blobs: HashMap<String, StoredBlob> =
            image.blobs.into_iter().map(|b| (b.digest.clone(), b)).collect();
        let name = origin.display().to_string();
        let damaged = |message: String| Error::InvalidLocalImage {
            path: origin.to_owned(),
            message,
        };
        let parse = |stored: &StoredManifest| -> Result<Manifest> {
            let mut manifest = Manifest::parse(
                stored.bytes.clone(),
                stored.digest.clone(),
                Some(&stored.media_type),
                &name,
            )
            .map_err(|e| damaged(format!("manifest {}: {e}", stored.digest)))?;
            manifest.descriptor.source = Some(name.clone());
            Ok(manifest)
        };
        let below: HashMap<&str, &StoredManifest> =
            image.below.iter().map(|m| (m.digest.as_str(), m)).collect();
        // Walked like a registry's index: children in index order, artifacts apart.
        let (mut indexes, mut images, mut artifacts) = (Vec::new(), Vec::new(), Vec::new());
        let mut pending = vec![(parse(&image.top)?, None)];
        while let Some((manifest, platform)) = pending.pop() {
            match &manifest.kind {
                ManifestKind::Index(index) => {
                    for entry in index.manifests().iter().rev() {
                        let digest = entry.digest().to_string();
                        let child = below
                            .get(digest.as_str())
                            .ok_or_else(|| damaged(format!("no manifest {digest}")))?;
                        pending.push((parse(child)?, entry.platform().as_ref().map(Platform::from_oci)));
                    }
                    indexes.push(manifest);
                }
                ManifestKind::Image(image) if !indexes.is_empty() && !is_image_config(image.config()) => {
                    artifacts.push(manifest)
                }
                ManifestKind::Image(image) => {
                    let config = image.config();
                    let digest = config.digest().to_string();
                    let bytes = match blobs.get(&digest) {
                        Some(blob) => read_config(&blob.bytes, config.size())?,
                        None => return Err(damaged(format!("no config {digest}"))),
                    };
                    images.push(platform_image(manifest, digest, bytes, platform));
                }
            }
        }
        let reference = image
            .name
            .as_deref()
            .filter(|_| repo_tag)
            .and_then(|name| ImageReference::parse(name).ok());
        let tag = match &reference {
            Some(reference) => reference.tag().map(str::to_owned),
            None => image.name,
        };
        Ok(LocalImage {
            manifests: ImageManifests {
                reference,
                tag,
                whole_index: !indexes.is_empty(),
                indexes,
                images,
                artifacts,
            },
            blobs,
            origin: name,
        })
    }

    /// The digest a destination will point to.
    pub fn digest(&self) -> &str {
        self.manifests.digest()
    }

    /// Where the image was read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// A local image goes to any destination: a layout's entry as it is (an index whole),
/// an archive's image as the schema 2 manifest it reads as.
#[async_trait]
impl ImageSource for LocalImage {
    fn manifests(&self) -> &ImageManifests {
        &self.manifests
    }

    async fn open_blob(&self, digest: &str, size: u64) -> Result<BlobStream> {
        let damaged = |message| Error::InvalidLocalImage {
            path: PathBuf::from(&self.origin),
            message,
        };
        let blob = self
            .blobs
            .get(digest)
            .ok_or_else(|| damaged(format!("no blob {digest}")))?;
        if blob.size != size {
            return Err(damaged(format!(
                "blob {digest} is {} bytes, not {size}",
                blob.size
            )));
        }
        Ok(match &blob.bytes {
            BlobBytes::Memory(bytes) => {
                BlobStream::from_stream(Some(size), stream::iter([Ok(bytes.clone())]))
            }
            BlobBytes::File { path, offset } => {
                BlobStream::from_stream(Some(size), file_chunks(path.clone(), *offset, size))
            }
        })
    }

    /// A layout's blobs are whole files.
    async fn blob_files(&self, blobs: &[(String, u64)]) -> Result<HashMap<String, PathBuf>> {
        Ok(blobs
            .iter()
            .filter_map(|(digest, _)| match self.blobs.get(digest).map(|b| &b.bytes) {
                Some(BlobBytes::File { path, offset: 0 }) => Some((digest.clone(), path.clone())),
                _ => None,
            })
            .collect())
    }
}

/// An image config as stored: read whole (it is small), checked by size.
fn read_config(bytes: &BlobBytes, size: u64) -> Result<Bytes> {
    match bytes {
        BlobBytes::Memory(bytes) => Ok(bytes.clone()),
        BlobBytes::File { path, offset } => {
            if size > MAX_JSON {
                return Err(Error::InvalidLocalImage {
                    path: path.clone(),
                    message: format!("a config of {size} bytes, more than a config can be"),
                });
            }
            Ok(Bytes::from(read_at(path, *offset, size)?))
        }
    }
}

/// One platform's image. Its platform is what the index said, or the config's; a
/// config without `os` and `architecture` (which a push does not need) has none.
fn platform_image(
    manifest: Manifest,
    digest: String,
    bytes: Bytes,
    platform: Option<Platform>,
) -> PlatformImage {
    let parsed: Option<oci_spec::image::ImageConfiguration> = serde_json::from_slice(&bytes).ok();
    let platform = platform.or_else(|| {
        let c = parsed.as_ref()?;
        Some(Platform::new(
            &c.os().to_string(),
            &c.architecture().to_string(),
            c.variant().as_deref(),
        ))
    });
    PlatformImage {
        manifest,
        config: ImageConfig {
            digest,
            bytes,
            config: parsed.unwrap_or_default(),
        },
        platform,
    }
}

/// `len` bytes of the file at `path` from `offset`, a piece at a time.
fn file_chunks(path: PathBuf, offset: u64, len: u64) -> impl futures::Stream<Item = Result<Bytes>> + Send {
    const PIECE: u64 = 1024 * 1024;
    let state = (path, offset, offset + len, None::<std::sync::Arc<std::fs::File>>);
    stream::try_unfold(state, |(path, at, end, file)| async move {
        if at >= end {
            return Ok(None);
        }
        let file = match file {
            Some(file) => file,
            None => std::sync::Arc::new(std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?),
        };
        let want = (end - at).min(PIECE) as usize;
        let reader = file.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buffer = vec![0; want];
            reader
                .read_exact_at(&mut buffer, at)
                .map(|()| Bytes::from(buffer))
        })
        .await
        .map_err(|e| Error::from(std::io::Error::other(e)))?
        .map_err(|e| Error::io(&path, e))?;
        Ok(Some((bytes, (path, at + want as u64, end, Some(file)))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use serde_json::Value;

    use crate::Error;
    use crate::model::digest::sha256;
    use crate::model::manifest::media_types::DOCKER_MANIFEST;

    const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

    use crate::formats::tar_reader::tests::tar_of;

    type Files<'a> = Vec<(&'a str, &'a [u8])>;

    fn archive(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("image.tar");
        std::fs::write(&path, tar_of(files)).unwrap();
        path
    }

    fn error(result: Result<LocalImage>) -> String {
        match result {
            Ok(_) => panic!("opened"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_docker_archive_becomes_a_schema2_manifest_over_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let layer = tar_of(&[("etc/hostname", b"box\n")]);
        let layer_digest = sha256(&layer);
        let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#);
        let manifest = r#"[{"Config":"c.json","RepoTags":["app:1"],"Layers":["l/layer.tar"]}]"#;
        let path = archive(
            dir.path(),
            &[
                ("manifest.json", manifest.as_bytes()),
                ("c.json", config.as_bytes()),
                ("l/layer.tar", &layer),
            ],
        );
        let image = LocalImage::open_docker_archive(&path, None).unwrap();
        let top: Value = serde_json::from_slice(&image.manifests.top().bytes).unwrap();
        assert_eq!(top["mediaType"], DOCKER_MANIFEST);
        assert_eq!(top["config"]["digest"], sha256(config.as_bytes()));
        assert_eq!(top["layers"][0]["digest"], layer_digest);
        assert_eq!(top["layers"][0]["mediaType"], DOCKER_LAYER);
        assert_eq!(image.digest(), sha256(&image.manifests.top().bytes));
        // Named by its tag, or its RepoTag; another name is refused.
        assert!(LocalImage::open_docker_archive(&path, Some("1")).is_ok());
        assert!(LocalImage::open_docker_archive(&path, Some("app:1")).is_ok());
        assert!(error(LocalImage::open_docker_archive(&path, Some("2"))).contains("app:1"));
    }

    #[test]
    fn a_bad_docker_archive_is_a_clear_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let layer = tar_of(&[("f", b"x")]);
        let config = r#"{"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let manifest = r#"[{"Config":"c.json","Layers":["layer.tar"]}]"#;
        let cases: Vec<(Files, &str)> = vec![
            (vec![("other", b"x")], "no manifest.json"),
            (vec![("manifest.json", b"not json")], "manifest.json"),
            (
                vec![
                    ("manifest.json", manifest.as_bytes()),
                    ("c.json", config.as_bytes()),
                ],
                "no layer.tar",
            ),
            (
                vec![
                    ("manifest.json", manifest.as_bytes()),
                    ("c.json", config.as_bytes()),
                    ("layer.tar", &layer),
                ],
                "diff_id",
            ),
        ];
        for (files, expected) in cases {
            let path = archive(dir.path(), &files);
            let message = error(LocalImage::open_docker_archive(&path, None));
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("image.tar"), "{message}");
        }
        std::fs::write(
            dir.path().join("garbage.tar"),
            b"not a tar at all, not even close to 512 bytes",
        )
        .unwrap();
        let message = error(LocalImage::open_docker_archive(
            &dir.path().join("garbage.tar"),
            None,
        ));
        assert!(message.contains("garbage.tar"), "{message}");
    }

    #[test]
    fn damage_is_an_invalid_local_image_and_a_missing_file_an_io_error_on_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.tar");
        std::fs::write(&garbage, b"not a tar at all").unwrap();
        let err = LocalImage::open_docker_archive(&garbage, None).expect_err("damaged");
        assert!(
            matches!(&err, Error::InvalidLocalImage { path, .. } if path == &garbage),
            "{err:?}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::InvalidLocalImage);
        let missing = dir.path().join("missing.tar");
        let err = LocalImage::open_docker_archive(&missing, None).expect_err("missing");
        assert!(
            matches!(&err, Error::Io { path: Some(path), source } if path == &missing
                && source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.tar"), "{err}");
    }

    #[test]
    fn a_layout_without_the_image_named_lists_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        std::fs::write(
            dir.path().join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[
                {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{a}","size":1,
                 "annotations":{{"org.opencontainers.image.ref.name":"v1"}}}},
                {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{b}","size":1,
                 "annotations":{{"org.opencontainers.image.ref.name":"v2"}}}}]}}"#
            ),
        )
        .unwrap();
        let message = error(LocalImage::open_oci_layout(dir.path(), None));
        assert!(
            message.contains("2 images") && message.contains("v1") && message.contains("v2"),
            "{message}"
        );
        let message = error(LocalImage::open_oci_layout(dir.path(), Some("v3")));
        assert!(message.contains("v3"), "{message}");
        // Named, but its manifest is missing: the file is named, and what is wrong.
        let err = LocalImage::open_oci_layout(dir.path(), Some("v1")).expect_err("missing");
        let missing = dir.path().join("blobs/sha256").join(&a);
        assert!(
            matches!(&err, Error::InvalidLocalImage { path, message } if *path == missing
                && message.contains("missing")),
            "{err:?}"
        );
        // A digest that is not one never becomes a path: index.json is refused as it is read.
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "digest":"sha256:../../etc/passwd","size":1}]}"#,
        )
        .unwrap();
        let err = LocalImage::open_oci_layout(dir.path(), None).expect_err("bad digest");
        let index = dir.path().join("index.json");
        assert!(
            matches!(&err, Error::InvalidLocalImage { path, message } if *path == index
                && message.contains("../../etc/passwd")),
            "{err:?}"
        );
    }

    #[test]
    fn a_damaged_layout_names_the_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = sha256(config);
        std::fs::write(blobs.join(&config_digest[7..]), config).unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},
            "layers":[]}}"#,
            config.len() + 1
        );
        let manifest_digest = sha256(manifest.as_bytes());
        std::fs::write(blobs.join(&manifest_digest[7..]), &manifest).unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "digest":"{manifest_digest}","size":{}}}]}}"#,
                manifest.len()
            ),
        )
        .unwrap();
        // The config's descriptor says one byte more than the file has.
        let err = LocalImage::open_oci_layout(dir.path(), None).expect_err("wrong size");
        let config_path = blobs.join(&config_digest[7..]);
        assert!(
            matches!(&err, Error::InvalidLocalImage { path, message } if *path == config_path
                && message.contains("its descriptor says")),
            "{err:?}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::InvalidLocalImage);
        // A manifest whose bytes changed: named, as not matching its digest.
        std::fs::write(
            blobs.join(&manifest_digest[7..]),
            manifest.replace("layers", "Layers"),
        )
        .unwrap();
        let err = LocalImage::open_oci_layout(dir.path(), None).expect_err("changed");
        assert!(
            matches!(&err, Error::InvalidLocalImage { message, .. } if message.contains("does not match its digest")),
            "{err:?}"
        );
    }
}
