//! Images on disk as push sources: an OCI image layout (ours, skopeo's, podman's, umoci's)
//! and a docker archive (`docker save`, `podman save`, ours). Blobs are read from their
//! files where they lie; nothing is unpacked or copied first.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{Value, json};

use super::copy::{ImageSource, Origin, PlannedBlob, PlannedManifest, PushPlan};
use crate::error::{Error, Result};
use crate::formats::tar_reader::TarReader;
use crate::model::digest::{Hasher, sha256};
use crate::model::manifest::media_types::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Manifests and configs read whole; larger ones are not what they claim to be.
const MAX_JSON: u64 = 16 * 1024 * 1024;
/// Indexes nested in indexes, at most.
const MAX_DEPTH: usize = 4;

/// An image read from disk, ready to push: see [`open_oci_layout`](Self::open_oci_layout)
/// and [`open_docker_archive`](Self::open_docker_archive).
pub struct LocalImage {
    plan: PlanParts,
    /// Where it was read from, for messages.
    origin: String,
}

struct PlanParts {
    blobs: Vec<PlannedBlob>,
    below: Vec<PlannedManifest>,
    top: PlannedManifest,
}

impl LocalImage {
    /// The image of an OCI layout at `dir`: the entry of `index.json` whose
    /// `org.opencontainers.image.ref.name` is `tag`, or its only entry when `tag` is `None`.
    /// An index is pushed whole, its manifests and their blobs.
    pub fn open_oci_layout(dir: &Path, tag: Option<&str>) -> Result<LocalImage> {
        let invalid = |message: String| Error::InvalidLocalImage {
            path: dir.to_owned(),
            message,
        };
        let index: Value = serde_json::from_slice(&read_small(&dir.join("index.json"))?)
            .map_err(|e| invalid(format!("index.json: {e}")))?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let name = |e: &Value| {
            e["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_owned)
        };
        let chosen = match tag {
            Some(tag) => entries.iter().find(|e| name(e).as_deref() == Some(tag)),
            None if entries.len() == 1 => entries.first(),
            None => None,
        };
        let Some(chosen) = chosen else {
            let names: Vec<String> = entries.iter().filter_map(name).collect();
            return Err(invalid(match tag {
                Some(tag) => format!("no image tagged {tag:?} (it has {names:?})"),
                None => format!(
                    "{} images in index.json: name one (it has {names:?})",
                    entries.len()
                ),
            }));
        };
        let mut reader = LayoutReader {
            dir,
            blobs: Vec::new(),
            below: Vec::new(),
        };
        let top = reader.manifest(chosen, 0)?;
        reader.below.retain(|m| m.digest != top.digest);
        Ok(LocalImage {
            plan: PlanParts {
                blobs: reader.blobs,
                below: reader.below,
                top,
            },
            origin: dir.display().to_string(),
        })
    }

    /// The image of a docker archive at `path` (`manifest.json` with one image, or the one
    /// whose `RepoTags` holds `tag`), pushed as a Docker schema 2 manifest over the
    /// archive's config and layers, byte for byte. The archive is read with the same
    /// tolerant tar reader as layers are.
    pub fn open_docker_archive(path: &Path, tag: Option<&str>) -> Result<LocalImage> {
        let invalid = |message: String| Error::InvalidLocalImage {
            path: path.to_owned(),
            message,
        };
        let entries = archive_entries(path)?;
        let entry = |name: &str| {
            let name = name.trim_start_matches("./");
            entries
                .iter()
                .find(|(n, _, _)| n.trim_start_matches("./") == name)
                .map(|(_, offset, size)| (*offset, *size))
                .ok_or_else(|| invalid(format!("no {name} in the archive")))
        };
        let read = |name: &str| -> Result<Vec<u8>> {
            let (offset, size) = entry(name)?;
            if size > MAX_JSON {
                return Err(invalid(format!("{name} is {size} bytes")));
            }
            read_at(path, offset, size)
        };
        let manifest: Value = serde_json::from_slice(&read("manifest.json")?)
            .map_err(|e| invalid(format!("manifest.json: {e}")))?;
        let images = manifest.as_array().cloned().unwrap_or_default();
        let tags = |i: &Value| -> Vec<String> {
            i["RepoTags"]
                .as_array()
                .map(|t| t.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let image = match tag {
            Some(tag) => images.iter().find(|i| {
                tags(i)
                    .iter()
                    .any(|t| t == tag || t.rsplit_once(':').is_some_and(|(_, t)| t == tag))
            }),
            None if images.len() == 1 => images.first(),
            None => None,
        }
        .ok_or_else(|| {
            let all: Vec<String> = images.iter().flat_map(tags).collect();
            invalid(format!("name one image of manifest.json (it has {all:?})"))
        })?;
        let config_name = image["Config"]
            .as_str()
            .ok_or_else(|| invalid("manifest.json: an image without Config".into()))?;
        let config = Bytes::from(read(config_name)?);
        let config_json: Value =
            serde_json::from_slice(&config).map_err(|e| invalid(format!("{config_name}: {e}")))?;
        let diff_ids = config_json["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let layer_names: Vec<&str> = image["Layers"]
            .as_array()
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if layer_names.len() != diff_ids.len() {
            return Err(invalid(format!(
                "{} layers, and {} diff_ids in the config",
                layer_names.len(),
                diff_ids.len()
            )));
        }
        let config_digest = sha256(&config);
        let mut blobs = vec![PlannedBlob {
            digest: config_digest.clone(),
            size: config.len() as u64,
            origin: Origin::Memory(config.clone()),
        }];
        let mut layers = Vec::new();
        for (n, (name, diff_id)) in layer_names.iter().zip(&diff_ids).enumerate() {
            let (offset, size) = entry(name)?;
            let (digest, gzip) = digest_of(path, offset, size)?;
            if !gzip && diff_id.as_str() != Some(digest.as_str()) {
                return Err(invalid(format!(
                    "layer {} ({name}) is {digest}, the config's diff_id says {diff_id}",
                    n + 1
                )));
            }
            let media_type = if gzip { DOCKER_LAYER_GZIP } else { DOCKER_LAYER };
            layers.push(json!({"mediaType": media_type, "size": size, "digest": digest}));
            if !blobs.iter().any(|b| b.digest == digest) {
                blobs.push(PlannedBlob {
                    digest,
                    size,
                    origin: Origin::File {
                        path: path.to_owned(),
                        offset,
                    },
                });
            }
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": config_digest},
            "layers": layers,
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("JSON"));
        Ok(LocalImage {
            plan: PlanParts {
                blobs,
                below: Vec::new(),
                top: PlannedManifest {
                    digest: sha256(&bytes),
                    media_type: DOCKER_MANIFEST.to_owned(),
                    bytes,
                },
            },
            origin: path.display().to_string(),
        })
    }

    /// The digest `destination` will point to.
    pub fn digest(&self) -> &str {
        &self.plan.top.digest
    }

    /// Where the image was read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Blobs are read from their files as they are pushed, and checked against their digests
/// before the registry commits them.
impl ImageSource for LocalImage {
    fn digest(&self) -> &str {
        LocalImage::digest(self)
    }

    fn push_plan(&self) -> PushPlan {
        PushPlan {
            blobs: self.plan.blobs.clone(),
            below: self.plan.below.clone(),
            top: self.plan.top.clone(),
            source: None,
        }
    }
}

/// Walks a layout's manifests from an index entry down, collecting blobs and manifests.
struct LayoutReader<'a> {
    dir: &'a Path,
    blobs: Vec<PlannedBlob>,
    below: Vec<PlannedManifest>,
}

impl LayoutReader<'_> {
    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let (algorithm, hex) = digest
            .split_once(':')
            .filter(|(a, h)| !a.is_empty() && !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| Error::InvalidConfig(format!("{}: bad digest {digest:?}", self.dir.display())))?;
        Ok(self.dir.join("blobs").join(algorithm).join(hex))
    }

    /// The manifest `descriptor` names, read and checked; its blobs and children added.
    fn manifest(&mut self, descriptor: &Value, depth: usize) -> Result<PlannedManifest> {
        let (digest, media_type) = (
            descriptor["digest"].as_str().unwrap_or_default().to_owned(),
            descriptor["mediaType"].as_str().unwrap_or_default().to_owned(),
        );
        let bytes = Bytes::from(read_small(&self.blob_path(&digest)?)?);
        crate::model::digest::verify(&digest, &bytes)?;
        let parsed: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidConfig(format!("{}: manifest {digest}: {e}", self.dir.display())))?;
        let media_type = parsed["mediaType"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(media_type);
        if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST || parsed["manifests"].is_array() {
            if depth >= MAX_DEPTH {
                return Err(Error::InvalidConfig(format!(
                    "{}: indexes nested too deeply",
                    self.dir.display()
                )));
            }
            for child in parsed["manifests"].as_array().into_iter().flatten() {
                let child = self.manifest(child, depth + 1)?;
                self.below.push(child);
            }
        } else {
            let referenced =
                std::iter::once(&parsed["config"]).chain(parsed["layers"].as_array().into_iter().flatten());
            for blob in referenced {
                let digest = blob["digest"].as_str().unwrap_or_default().to_owned();
                if self.blobs.iter().any(|b| b.digest == digest) {
                    continue;
                }
                let path = self.blob_path(&digest)?;
                let size = std::fs::metadata(&path)
                    .map_err(|e| Error::InvalidConfig(format!("{}: blob {digest}: {e}", self.dir.display())))?
                    .len();
                if blob["size"].as_u64() != Some(size) {
                    return Err(Error::InvalidConfig(format!(
                        "{}: blob {digest} is {size} bytes, its descriptor says {}",
                        self.dir.display(),
                        blob["size"]
                    )));
                }
                self.blobs.push(PlannedBlob {
                    digest,
                    size,
                    origin: Origin::File { path, offset: 0 },
                });
            }
        }
        Ok(PlannedManifest {
            digest,
            media_type,
            bytes,
        })
    }
}

/// Every regular file of a tar: (name, offset of its data, size).
fn archive_entries(path: &Path) -> Result<Vec<(String, u64, u64)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut tar = TarReader::new(std::io::BufReader::new(file));
    let mut entries = Vec::new();
    tar.for_each_entry(|entry| {
        if entry.header().entry_type().is_file() {
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            entries.push((name, entry.raw_file_position(), entry.size()));
        }
        Ok(())
    })
    .map_err(|e| Error::InvalidLocalImage {
        path: path.to_owned(),
        message: format!("not a readable tar: {e}"),
    })?;
    Ok(entries)
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.display())))?
        .len();
    if size > MAX_JSON {
        return Err(Error::InvalidConfig(format!("{}: {size} bytes", path.display())));
    }
    std::fs::read(path).map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.display())))
}

fn read_at(path: &Path, offset: u64, size: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buffer = vec![0; size as usize];
    file.read_exact_at(&mut buffer, offset)
        .map_err(|e| Error::io(path, e))?;
    Ok(buffer)
}

/// The sha256 digest of `size` bytes at `offset`, and whether they are gzip.
fn digest_of(path: &Path, offset: u64, size: u64) -> Result<(String, bool)> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(path, e))?;
    let mut hasher = Hasher::for_digest("sha256:")?;
    let copied = std::io::copy(&mut file.take(size), &mut hasher).map_err(|e| Error::io(path, e))?;
    if copied != size {
        return Err(Error::InvalidConfig(format!(
            "{}: an entry ends early",
            path.display()
        )));
    }
    let gzip = size >= 2 && read_at(path, offset, 2)? == [0x1f, 0x8b];
    Ok((hasher.finish(), gzip))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let top: Value = serde_json::from_slice(&image.plan.top.bytes).unwrap();
        assert_eq!(top["mediaType"], DOCKER_MANIFEST);
        assert_eq!(top["config"]["digest"], sha256(config.as_bytes()));
        assert_eq!(top["layers"][0]["digest"], layer_digest);
        assert_eq!(top["layers"][0]["mediaType"], DOCKER_LAYER);
        assert_eq!(image.digest(), sha256(&image.plan.top.bytes));
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
        let err = LocalImage::open_docker_archive(&garbage, None)
            .err()
            .expect("damaged");
        assert!(
            matches!(&err, Error::InvalidLocalImage { path, .. } if path == &garbage),
            "{err:?}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::InvalidLocalImage);
        let missing = dir.path().join("missing.tar");
        let err = LocalImage::open_docker_archive(&missing, None)
            .err()
            .expect("missing");
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
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[
                {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,
                 "annotations":{"org.opencontainers.image.ref.name":"v1"}},
                {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,
                 "annotations":{"org.opencontainers.image.ref.name":"v2"}}]}"#,
        )
        .unwrap();
        let message = error(LocalImage::open_oci_layout(dir.path(), None));
        assert!(
            message.contains("2 images") && message.contains("v1") && message.contains("v2"),
            "{message}"
        );
        let message = error(LocalImage::open_oci_layout(dir.path(), Some("v3")));
        assert!(message.contains("v3"), "{message}");
        // Named, but its manifest is missing: the file is named.
        let message = error(LocalImage::open_oci_layout(dir.path(), Some("v1")));
        assert!(message.contains("blobs/sha256/aa"), "{message}");
        // A digest that is not one never becomes a path.
        std::fs::write(
            dir.path().join("index.json"),
            r#"{"manifests":[{"digest":"sha256:../../etc/passwd","size":1}]}"#,
        )
        .unwrap();
        let message = error(LocalImage::open_oci_layout(dir.path(), None));
        assert!(message.contains("bad digest"), "{message}");
    }
}
