//! Reading an image from a docker archive any tool wrote (`docker save`,
//! `podman save`, ours): `manifest.json`, the config and the layers, found
//! with the same tolerant tar reader as layers are, and left where they lie.
//! The image is described by a Docker schema 2 manifest made over the
//! archive's config and layers, byte for byte.

use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::formats::local_image::{BlobBytes, ImageOnDisk, MAX_JSON, StoredBlob, StoredManifest, read_at};
use crate::formats::tar_reader::TarReader;
use crate::model::digest::{Hasher, sha256};
use crate::model::manifest::media_types::DOCKER_MANIFEST;

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// One image of `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchivedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// What a push needs of the config: its layers' uncompressed digests.
#[derive(Deserialize)]
struct ArchivedConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// A regular file of the tar: where its data starts, and its size.
struct Entry {
    name: String,
    offset: u64,
    size: u64,
}

/// The image of the archive at `path`: the only one of its `manifest.json`, or
/// the one whose `RepoTags` holds `tag` (`repo:tag` or just the tag).
pub(crate) fn read_docker_archive(path: &Path, tag: Option<&str>) -> Result<ImageOnDisk> {
    let damaged = |message: String| Error::InvalidLocalImage {
        path: path.to_owned(),
        message,
    };
    let entries = archive_entries(path)?;
    let entry = |name: &str| {
        let name = name.trim_start_matches("./");
        entries
            .iter()
            .find(|e| e.name.trim_start_matches("./") == name)
            .ok_or_else(|| damaged(format!("no {name} in the archive")))
    };
    let read = |name: &str| -> Result<Vec<u8>> {
        let entry = entry(name)?;
        if entry.size > MAX_JSON {
            return Err(damaged(format!("{name} is {} bytes", entry.size)));
        }
        read_at(path, entry.offset, entry.size)
    };
    let images: Vec<ArchivedImage> = serde_json::from_slice(&read("manifest.json")?)
        .map_err(|e| damaged(format!("manifest.json: {e}")))?;
    let tags = |i: &ArchivedImage| i.repo_tags.clone().unwrap_or_default();
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
        damaged(format!("name one image of manifest.json (it has {all:?})"))
    })?;
    let config = Bytes::from(read(&image.config)?);
    let parsed: ArchivedConfig =
        serde_json::from_slice(&config).map_err(|e| damaged(format!("{}: {e}", image.config)))?;
    let diff_ids = parsed.rootfs.diff_ids;
    if image.layers.len() != diff_ids.len() {
        return Err(damaged(format!(
            "{} layers, and {} diff_ids in the config",
            image.layers.len(),
            diff_ids.len()
        )));
    }
    let config_digest = sha256(&config);
    let mut blobs = vec![StoredBlob {
        digest: config_digest.clone(),
        size: config.len() as u64,
        bytes: BlobBytes::Memory(config.clone()),
    }];
    let mut layers = Vec::new();
    for (n, (name, diff_id)) in image.layers.iter().zip(&diff_ids).enumerate() {
        let entry = entry(name)?;
        let (digest, gzip) = digest_of(path, entry.offset, entry.size)?;
        if !gzip && *diff_id != digest {
            return Err(damaged(format!(
                "layer {} ({name}) is {digest}, the config's diff_id says {diff_id}",
                n + 1
            )));
        }
        let media_type = if gzip { DOCKER_LAYER_GZIP } else { DOCKER_LAYER };
        layers.push(json!({"mediaType": media_type, "size": entry.size, "digest": digest}));
        if !blobs.iter().any(|b| b.digest == digest) {
            blobs.push(StoredBlob {
                digest,
                size: entry.size,
                bytes: BlobBytes::File {
                    path: path.to_owned(),
                    offset: entry.offset,
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
    Ok(ImageOnDisk {
        name: tags(image).into_iter().next(),
        top: StoredManifest {
            digest: sha256(&bytes),
            media_type: DOCKER_MANIFEST.to_owned(),
            bytes,
        },
        below: Vec::new(),
        blobs,
    })
}

/// Every regular file of the tar.
fn archive_entries(path: &Path) -> Result<Vec<Entry>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut tar = TarReader::new(std::io::BufReader::new(file));
    let mut entries = Vec::new();
    tar.for_each_entry(|entry| {
        if entry.header().entry_type().is_file() {
            entries.push(Entry {
                name: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                offset: entry.raw_file_position(),
                size: entry.size(),
            });
        }
        Ok(())
    })
    .map_err(|e| Error::InvalidLocalImage {
        path: path.to_owned(),
        message: format!("not a readable tar: {e}"),
    })?;
    Ok(entries)
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
        return Err(Error::InvalidLocalImage {
            path: path.to_owned(),
            message: "an entry ends early".into(),
        });
    }
    let gzip = size >= 2 && read_at(path, offset, 2)? == [0x1f, 0x8b];
    Ok((hasher.finish(), gzip))
}
