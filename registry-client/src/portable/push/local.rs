//! Images on disk as push sources: an OCI image layout and a docker archive, read by
//! their formats' readers (`formats::oci_layout`, `formats::docker_archive`). Blobs are
//! read from their files where they lie as they are pushed, and checked against their
//! digests before the registry commits them.

use std::path::Path;

use super::copy::{ImageSource, Origin, PlannedBlob, PlannedManifest, PushPlan};
use crate::error::Result;
use crate::formats::docker_archive::read_docker_archive;
use crate::formats::local_image::{BlobBytes, ImageOnDisk, StoredManifest};
use crate::formats::oci_layout::read_oci_layout;

/// An image read from disk, ready to push: see [`open_oci_layout`](Self::open_oci_layout)
/// and [`open_docker_archive`](Self::open_docker_archive). Damaged input is
/// [`Error::InvalidLocalImage`](crate::Error::InvalidLocalImage) naming the file and
/// what is wrong with it; a missing file an I/O error on its path.
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
        Ok(LocalImage::from_disk(read_oci_layout(dir, tag)?, dir))
    }

    /// The image of a docker archive at `path` (`manifest.json` with one image, or the one
    /// whose `RepoTags` holds `tag`), pushed as a Docker schema 2 manifest over the
    /// archive's config and layers, byte for byte.
    pub fn open_docker_archive(path: &Path, tag: Option<&str>) -> Result<LocalImage> {
        Ok(LocalImage::from_disk(read_docker_archive(path, tag)?, path))
    }

    fn from_disk(image: ImageOnDisk, origin: &Path) -> LocalImage {
        let manifest = |m: StoredManifest| PlannedManifest {
            digest: m.digest,
            media_type: m.media_type,
            bytes: m.bytes,
        };
        let blobs = image
            .blobs
            .into_iter()
            .map(|b| PlannedBlob {
                digest: b.digest,
                size: b.size,
                origin: match b.bytes {
                    BlobBytes::Memory(bytes) => Origin::Memory(bytes),
                    BlobBytes::File { path, offset } => Origin::File { path, offset },
                },
            })
            .collect();
        LocalImage {
            plan: PlanParts {
                blobs,
                below: image.below.into_iter().map(manifest).collect(),
                top: manifest(image.top),
            },
            origin: origin.display().to_string(),
        }
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
        let err = LocalImage::open_oci_layout(dir.path(), Some("v1"))
            .err()
            .expect("missing");
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
        let err = LocalImage::open_oci_layout(dir.path(), None)
            .err()
            .expect("bad digest");
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
        let err = LocalImage::open_oci_layout(dir.path(), None)
            .err()
            .expect("wrong size");
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
        let err = LocalImage::open_oci_layout(dir.path(), None)
            .err()
            .expect("changed");
        assert!(
            matches!(&err, Error::InvalidLocalImage { message, .. } if message.contains("does not match its digest")),
            "{err:?}"
        );
    }
}
