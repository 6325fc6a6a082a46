//! Reading the image an `index.json` entry names, from a layout any tool
//! wrote: its manifests parsed (oci-spec) and checked against their digests,
//! its blobs checked by size and left where they lie.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use oci_spec::image::{ANNOTATION_REF_NAME, Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::formats::local_image::{
    BlobBytes, ImageOnDisk, MAX_DEPTH, StoredBlob, StoredManifest, read_small,
};
use crate::model::digest;
use crate::model::manifest::is_index_type;

/// The image of the layout at `dir` whose `org.opencontainers.image.ref.name`
/// is `tag`, or its only image when `tag` is `None`. An index comes whole: its
/// manifests and their blobs.
pub(crate) fn read_oci_layout(dir: &Path, tag: Option<&str>) -> Result<ImageOnDisk> {
    let index_path = dir.join("index.json");
    let index: ImageIndex =
        serde_json::from_slice(&read_small(&index_path)?).map_err(|e| Error::InvalidLocalImage {
            path: index_path.clone(),
            message: format!("not an OCI image index: {e}"),
        })?;
    let name = |d: &Descriptor| d.annotations().as_ref()?.get(ANNOTATION_REF_NAME).cloned();
    let entries = index.manifests();
    let chosen = match tag {
        Some(tag) => entries.iter().find(|e| name(e).as_deref() == Some(tag)),
        None if entries.len() == 1 => entries.first(),
        None => None,
    };
    let Some(chosen) = chosen else {
        let names: Vec<String> = entries.iter().filter_map(name).collect();
        return Err(Error::InvalidLocalImage {
            path: dir.to_owned(),
            message: match tag {
                Some(tag) => format!("no image tagged {tag:?} (it has {names:?})"),
                None => format!(
                    "{} images in index.json: name one (it has {names:?})",
                    entries.len()
                ),
            },
        });
    };
    let mut walk = Walk {
        dir,
        blobs: Vec::new(),
        below: Vec::new(),
    };
    let top = walk.manifest(chosen, 0)?;
    walk.below.retain(|m| m.digest != top.digest);
    Ok(ImageOnDisk {
        name: name(chosen),
        top,
        below: walk.below,
        blobs: walk.blobs,
    })
}

/// Walks a layout's manifests from an index entry down, collecting blobs and manifests.
struct Walk<'a> {
    dir: &'a Path,
    blobs: Vec<StoredBlob>,
    below: Vec<StoredManifest>,
}

impl Walk<'_> {
    /// Where blob `digest` is; a digest that is not one never becomes a path.
    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let (algorithm, hex) = digest::split_for_path(digest).ok_or_else(|| Error::InvalidLocalImage {
            path: self.dir.to_owned(),
            message: format!("bad digest {digest:?}"),
        })?;
        Ok(self.dir.join("blobs").join(algorithm).join(hex))
    }

    /// The manifest `descriptor` names, read and checked; its blobs and children added.
    fn manifest(&mut self, descriptor: &Descriptor, depth: usize) -> Result<StoredManifest> {
        let digest = descriptor.digest().to_string();
        let path = self.blob_path(&digest)?;
        let damaged = |message: String| Error::InvalidLocalImage {
            path: path.clone(),
            message,
        };
        let bytes = Bytes::from(read_small(&path).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                damaged(format!("manifest {digest} is missing"))
            }
            other => other,
        })?);
        digest::verify(&digest, &bytes)
            .map_err(|e| damaged(format!("manifest {digest} does not match its digest: {e}")))?;
        #[derive(Deserialize)]
        struct Declared {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
            manifests: Option<serde::de::IgnoredAny>,
        }
        let declared: Declared =
            serde_json::from_slice(&bytes).map_err(|e| damaged(format!("manifest {digest}: {e}")))?;
        // The manifest's own type, else its descriptor's.
        let is_index = declared.manifests.is_some();
        let media_type = declared
            .media_type
            .unwrap_or_else(|| descriptor.media_type().to_string());
        if is_index || is_index_type(&media_type) {
            if depth >= MAX_DEPTH {
                return Err(damaged("indexes nested too deeply".into()));
            }
            let index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|e| damaged(format!("index {digest}: {e}")))?;
            for child in index.manifests() {
                let child = self.manifest(child, depth + 1)?;
                self.below.push(child);
            }
        } else {
            let manifest: ImageManifest =
                serde_json::from_slice(&bytes).map_err(|e| damaged(format!("manifest {digest}: {e}")))?;
            for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
                self.blob(blob)?;
            }
        }
        Ok(StoredManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// A config or layer, unless already found: present with the size its descriptor says.
    fn blob(&mut self, descriptor: &Descriptor) -> Result<()> {
        let digest = descriptor.digest().to_string();
        if self.blobs.iter().any(|b| b.digest == digest) {
            return Ok(());
        }
        let path = self.blob_path(&digest)?;
        let size = match std::fs::metadata(&path) {
            Ok(metadata) => metadata.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::InvalidLocalImage {
                    path,
                    message: format!("blob {digest} is missing"),
                });
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        if descriptor.size() != size {
            return Err(Error::InvalidLocalImage {
                path,
                message: format!(
                    "blob {digest} is {size} bytes, its descriptor says {}",
                    descriptor.size()
                ),
            });
        }
        self.blobs.push(StoredBlob {
            digest,
            size,
            bytes: BlobBytes::File { path, offset: 0 },
        });
        Ok(())
    }
}
