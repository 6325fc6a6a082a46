//! Writing a `docker load`-able tar (the "docker-archive" format that `docker save`
//! writes and `docker load`, `podman load` and `skopeo` read).
//!
//! Every size is known from the descriptors before the first byte is
//! fetched, so the whole tar is laid out up front: [`DockerArchiveLayout`]
//! knows where every header and every layer's bytes go. The pull engine
//! writes the metadata with [`DockerArchiveLayout::write_metadata`] and then
//! each layer straight into its [`LayerSlot`] with positional writes, in
//! parallel and in any order, with no second copy.
//!
//! The archive holds, in this order:
//! 1. `<config hex>.json` — the image config, byte for byte (its digest is the image id);
//! 2. `manifest.json` — `[{"Config":…,"RepoTags":[…],"Layers":[…]}]`;
//! 3. `repositories` — the legacy `{"repo":{"tag":"<top layer hex>"}}` map, only when there are tags;
//! 4. one `<layer hex>.<tar|tar.gz|tar.zst>` per distinct layer blob, kept compressed as pulled,
//!    in the order the manifest first names them (a repeated layer is stored once, listed twice);
//! 5. the two zero blocks that end a tar.
//!
//! The small entries come first so that a reader streaming the tar (a pipe
//! into `docker load`, `tar -t | head`) learns the image's manifest before
//! gigabytes of layer data, and so that the metadata is one contiguous write
//! at the start of the file; nothing is gained by putting it last, since
//! nothing in it depends on the layer bytes.
//!
//! Headers are plain ustar (regular files, mode 0644, uid/gid 0, mtime 0, no
//! user names), so the same inputs always give a byte-identical archive. A
//! layer of 8 GiB or more does not fit ustar's 11 octal size digits; it gets a
//! POSIX pax extended header (`size=…`) before its ustar header, as Go's
//! `archive/tar` (used by docker and podman) writes and reads it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::{BlobInfo, Compression};
use crate::model::reference::ImageReference;

const BLOCK: u64 = 512;
/// ustar's `name` field; longer names would need the `prefix` field or pax.
const MAX_NAME_LEN: usize = 100;
/// The largest size ustar's 11 octal digits hold (8 GiB - 1).
const MAX_USTAR_SIZE: u64 = 0o777_7777_7777;
/// Positional writes take an `off_t`.
const MAX_FILE_SIZE: u64 = i64::MAX as u64;
/// Fixed, so that output is reproducible.
const MTIME: u64 = 0;
const MODE: u64 = 0o644;
/// What GNU tar calls its pax headers; readers ignore the name.
const PAX_HEADER_NAME: &str = "././@PaxHeader";

/// Where one distinct layer blob's bytes go in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerSlot {
    pub digest: String,
    /// Byte offset of the layer's data in the archive file.
    pub offset: u64,
    /// Exactly this many bytes belong there (the descriptor's size).
    pub size: u64,
}

/// The complete byte layout of a docker-archive tar, computed before any
/// layer is fetched.
#[derive(Debug, Clone)]
pub(crate) struct DockerArchiveLayout {
    total_size: u64,
    slots: Vec<LayerSlot>,
    /// Everything except the layer data, as `(offset, bytes)`: ascending,
    /// disjoint, adjacent pieces merged.
    metadata: Vec<(u64, Vec<u8>)>,
}

impl DockerArchiveLayout {
    /// Lays out the archive of one image.
    ///
    /// `layers` in manifest order (a digest may repeat: its bytes are stored
    /// once, it is listed twice in `Layers`). `repo_tags` in the `RepoTags`
    /// form (see [`repo_tag`]), e.g. `["alpine:3.20"]`; empty when pulled by
    /// digest. `config_bytes` must be the config blob (checked against
    /// `config`'s size and digest).
    pub(crate) fn new(
        config: &BlobInfo,
        config_bytes: &[u8],
        layers: &[BlobInfo],
        repo_tags: &[String],
    ) -> Result<Self> {
        let config_hex = digest_hex(&config.digest)?;
        if config_bytes.len() as u64 != config.size {
            return Err(Error::SizeMismatch {
                digest: config.digest.clone(),
                expected: config.size,
                actual: config_bytes.len() as u64,
            });
        }
        crate::model::digest::verify(&config.digest, config_bytes)?;
        let config_name = format!("{config_hex}.json");

        // One entry per distinct blob, in order of first appearance; `names`
        // keeps every manifest position.
        let mut distinct: Vec<(&BlobInfo, String)> = Vec::new();
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let mut names: Vec<String> = Vec::with_capacity(layers.len());
        for layer in layers {
            let hex = digest_hex(&layer.digest)?;
            let name = format!(
                "{hex}.{}",
                Compression::from_media_type(&layer.media_type)?.extension()
            );
            match index_of.get(layer.digest.as_str()) {
                Some(&i) => {
                    let (first, first_name) = &distinct[i];
                    if first.size != layer.size || *first_name != name {
                        return Err(invalid(format!(
                            "layer {} is listed twice with different sizes or media types \
                             ({} bytes {:?}, then {} bytes {:?})",
                            layer.digest, first.size, first.media_type, layer.size, layer.media_type
                        )));
                    }
                }
                None => {
                    index_of.insert(&layer.digest, distinct.len());
                    distinct.push((layer, name.clone()));
                }
            }
            names.push(name);
        }

        let manifest = serde_json::to_vec(&[ManifestEntry {
            config: &config_name,
            repo_tags,
            layers: &names,
        }])
        .map_err(io::Error::from)?;

        // `repositories` maps each tagged name to its top layer (docker's
        // legacy v1 id). Without tags or layers there is nothing to map.
        let mut repositories: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        for repo_tag in repo_tags {
            let (repo, tag) = split_repo_tag(repo_tag)?;
            if let Some(top) = layers.last() {
                repositories
                    .entry(repo)
                    .or_default()
                    .insert(tag, digest_hex(&top.digest)?);
            }
        }

        let mut plan = Planner::default();
        plan.small_file(&config_name, config_bytes)?;
        plan.small_file("manifest.json", &manifest)?;
        if !repositories.is_empty() {
            plan.small_file(
                "repositories",
                &serde_json::to_vec(&repositories).map_err(io::Error::from)?,
            )?;
        }
        let mut slots = Vec::with_capacity(distinct.len());
        for (layer, name) in distinct {
            let offset = plan.reserved_file(&name, layer.size)?;
            if plan.offset > MAX_FILE_SIZE {
                return Err(invalid(format!(
                    "layer {} of {} bytes does not fit: the archive would be larger than a file can be \
                     ({MAX_FILE_SIZE} bytes)",
                    layer.digest, layer.size
                )));
            }
            slots.push(LayerSlot {
                digest: layer.digest.clone(),
                offset,
                size: layer.size,
            });
        }
        plan.push(&[0; 2 * BLOCK as usize]);
        if plan.offset > MAX_FILE_SIZE {
            return Err(invalid("the archive would be larger than a file can be".into()));
        }
        Ok(DockerArchiveLayout {
            total_size: plan.offset,
            slots,
            metadata: plan.pieces,
        })
    }

    /// The archive's exact length in bytes.
    #[cfg(test)]
    pub(crate) fn total_size(&self) -> u64 {
        self.total_size
    }

    /// One slot per distinct layer blob (in order of first appearance): where its `size` bytes go.
    pub(crate) fn layer_slots(&self) -> &[LayerSlot] {
        &self.slots
    }

    /// Sizes `file` to [`total_size`](Self::total_size) and writes everything
    /// except the layer data (every tar header, the config, `manifest.json`,
    /// `repositories`, the zero padding after each entry, the end-of-archive
    /// blocks) with positional writes. The layer regions are left for the
    /// caller; they may be written before or after this, in any order.
    pub(crate) fn write_metadata(&self, file: &File) -> io::Result<()> {
        file.set_len(self.total_size)?;
        for (offset, bytes) in &self.metadata {
            file.write_all_at(bytes, *offset)?;
        }
        Ok(())
    }
}

/// The `RepoTags` form docker uses: `docker.io/library/alpine:3.20` →
/// `alpine:3.20`, `docker.io/foo/bar:t` → `foo/bar:t`, any other registry
/// as `registry/repo:tag`; `None` when the reference has no tag.
pub(crate) fn repo_tag(reference: &ImageReference) -> Option<String> {
    let tag = reference.tag()?;
    let repository = reference.repository();
    Some(if reference.is_docker_hub() {
        // distribution's FamiliarName: `library/` goes only for single-component names.
        let familiar = repository
            .strip_prefix("library/")
            .filter(|rest| !rest.contains('/'))
            .unwrap_or(repository);
        format!("{familiar}:{tag}")
    } else {
        format!("{}/{repository}:{tag}", reference.registry())
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry<'a> {
    config: &'a str,
    repo_tags: &'a [String],
    layers: &'a [String],
}

fn invalid(message: String) -> Error {
    Error::InvalidConfig(format!("docker archive: {message}"))
}

/// The hex part of `algorithm:hex`, checked so it is safe as a file name.
fn digest_hex(digest: &str) -> Result<&str> {
    crate::model::digest::split_for_path(digest)
        .map(|(_, hex)| hex)
        .ok_or_else(|| invalid(format!("invalid digest {digest:?}")))
}

/// `repo:tag` → (`repo`, `tag`); the tag is after the last `/`, so a registry port is not one.
fn split_repo_tag(repo_tag: &str) -> Result<(&str, &str)> {
    let name_start = repo_tag.rfind('/').map_or(0, |i| i + 1);
    match repo_tag[name_start..].rfind(':') {
        Some(i) if i > 0 && name_start + i + 1 < repo_tag.len() => {
            Ok((&repo_tag[..name_start + i], &repo_tag[name_start + i + 1..]))
        }
        _ => Err(invalid(format!(
            "repo tag {repo_tag:?} is not of the form repository:tag"
        ))),
    }
}

/// Builds the layout front to back. `offset` saturates instead of
/// overflowing; the caller checks it against [`MAX_FILE_SIZE`].
#[derive(Default)]
struct Planner {
    offset: u64,
    pieces: Vec<(u64, Vec<u8>)>,
}

impl Planner {
    /// `bytes` at the current offset.
    fn push(&mut self, bytes: &[u8]) {
        let start = self.offset;
        self.offset = self.offset.saturating_add(bytes.len() as u64);
        match self.pieces.last_mut() {
            Some((piece_start, piece)) if *piece_start + piece.len() as u64 == start => {
                piece.extend_from_slice(bytes);
            }
            _ => self.pieces.push((start, bytes.to_vec())),
        }
    }

    /// A file whose content is part of the metadata.
    fn small_file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.header(name, data.len() as u64)?;
        self.push(data);
        self.pad(data.len() as u64);
        Ok(())
    }

    /// A file whose `size` bytes the caller writes; returns where they go.
    fn reserved_file(&mut self, name: &str, size: u64) -> Result<u64> {
        self.header(name, size)?;
        let data_offset = self.offset;
        self.offset = self.offset.saturating_add(size);
        self.pad(size);
        Ok(data_offset)
    }

    /// Zeros up to the next block boundary after `size` bytes of data.
    fn pad(&mut self, size: u64) {
        let padding = (BLOCK - size % BLOCK) % BLOCK;
        self.push(&[0; BLOCK as usize][..padding as usize]);
    }

    fn header(&mut self, name: &str, size: u64) -> Result<()> {
        if name.len() > MAX_NAME_LEN || !name.is_ascii() || name.contains('\0') {
            return Err(invalid(format!(
                "entry name {name:?} does not fit a ustar header ({MAX_NAME_LEN} ASCII bytes at most)"
            )));
        }
        if size > MAX_USTAR_SIZE {
            let record = pax_record("size", &size.to_string());
            self.push(&ustar_header(PAX_HEADER_NAME, record.len() as u64, b'x'));
            self.push(record.as_bytes());
            self.pad(record.len() as u64);
        }
        self.push(&ustar_header(name, size, b'0'));
        Ok(())
    }
}

/// A pax record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including itself.
fn pax_record(key: &str, value: &str) -> String {
    let rest = format!(" {key}={value}\n");
    let mut len = rest.len();
    loop {
        let total = rest.len() + len.to_string().len();
        if total == len {
            return format!("{len}{rest}");
        }
        len = total;
    }
}

/// A ustar header block for a regular file (`typeflag` `0`) or a pax header (`x`).
/// A `size` past ustar's range is written as 0, as Go does: the pax record carries it.
fn ustar_header(name: &str, size: u64, typeflag: u8) -> [u8; BLOCK as usize] {
    let mut h = [0u8; BLOCK as usize];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], MODE);
    octal(&mut h[108..116], 0); // uid
    octal(&mut h[116..124], 0); // gid
    octal(&mut h[124..136], if size <= MAX_USTAR_SIZE { size } else { 0 });
    octal(&mut h[136..148], MTIME);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces, stored as six
    // octal digits, NUL, space.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    h[154] = 0;
    h
}

/// Zero-padded octal filling all but the field's last byte, which is NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    debug_assert_eq!(text.len(), digits, "{value} does not fit {digits} octal digits");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    use flate2::write::GzEncoder;
    use serde_json::{Value, json};

    const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    const PLAIN: &str = "application/vnd.oci.image.layer.v1.tar";
    const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

    /// An uncompressed layer tar: a directory, files, a symlink (fixed metadata).
    fn layer_tar(files: &[(&str, &[u8])], link: Option<(&str, &str)>) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        dir.set_mtime(1_700_000_000);
        builder.append_data(&mut dir, "etc/", io::empty()).unwrap();
        for (path, data) in files {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_mtime(1_700_000_000);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        if let Some((path, target)) = link {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            header.set_mtime(1_700_000_000);
            builder.append_link(&mut header, path, target).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn blob(media_type: &str, bytes: &[u8]) -> BlobInfo {
        BlobInfo {
            digest: crate::model::digest::sha256(bytes),
            size: bytes.len() as u64,
            media_type: media_type.to_owned(),
        }
    }

    /// A real image: three distinct layers (two gzip'd, one plain), the first
    /// one repeated on top, and a config whose `diff_ids` match.
    struct Image {
        config: BlobInfo,
        config_bytes: Vec<u8>,
        /// Manifest order, with the blob bytes.
        layers: Vec<(BlobInfo, Vec<u8>)>,
        diff_ids: Vec<String>,
    }

    fn image() -> Image {
        let tar1 = layer_tar(
            &[
                ("etc/hello.txt", b"hello from layer one\n"),
                ("bin/tool", &[0x7f, b'E', b'L', b'F']),
            ],
            Some(("etc/link", "hello.txt")),
        );
        let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let tar2 = layer_tar(
            &[("etc/second.txt", b"second layer\n"), ("data/big.bin", &big)],
            None,
        );
        let tar3 = layer_tar(
            &[("etc/third.txt", b"an uncompressed layer\n")],
            Some(("etc/l3", "third.txt")),
        );
        let (gz1, gz2) = (gzip(&tar1), gzip(&tar2));
        let layers = vec![
            (blob(GZIP, &gz1), gz1.clone()),
            (blob(DOCKER_GZIP, &gz2), gz2),
            (blob(PLAIN, &tar3), tar3.clone()),
            (blob(GZIP, &gz1), gz1),
        ];
        let diff_ids: Vec<String> = [&tar1, &tar2, &tar3, &tar1]
            .iter()
            .map(|t| crate::model::digest::sha256(t))
            .collect();
        let config_bytes = serde_json::to_vec(&json!({
            "architecture": "arm64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/tool"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": "2024-01-01T00:00:00Z", "created_by": "layer one"},
                {"created": "2024-01-01T00:00:00Z", "created_by": "layer two"},
                {"created": "2024-01-01T00:00:00Z", "created_by": "layer three"},
                {"created": "2024-01-01T00:00:00Z", "created_by": "layer one again"}
            ]
        }))
        .unwrap();
        Image {
            config: blob(CONFIG, &config_bytes),
            config_bytes,
            layers,
            diff_ids,
        }
    }

    fn hex(digest: &str) -> &str {
        digest.split_once(':').unwrap().1
    }

    fn layout(image: &Image, repo_tags: &[String]) -> DockerArchiveLayout {
        let layers: Vec<BlobInfo> = image.layers.iter().map(|(b, _)| b.clone()).collect();
        DockerArchiveLayout::new(&image.config, &image.config_bytes, &layers, repo_tags).unwrap()
    }

    /// Writes the archive the way the pull engine does: metadata, then each
    /// layer at its slot (`reverse`: last slot first, to show order does not matter).
    fn write_archive(path: &Path, image: &Image, repo_tags: &[String], reverse: bool) -> DockerArchiveLayout {
        let layout = layout(image, repo_tags);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap();
        let mut slots: Vec<&LayerSlot> = layout.layer_slots().iter().collect();
        if reverse {
            slots.reverse();
            // Layers may also land before the metadata.
            write_slot(&file, image, slots[0]);
            layout.write_metadata(&file).unwrap();
            slots.remove(0);
        } else {
            layout.write_metadata(&file).unwrap();
        }
        for slot in slots {
            write_slot(&file, image, slot);
        }
        drop(file);
        assert_eq!(std::fs::metadata(path).unwrap().len(), layout.total_size());
        layout
    }

    fn write_slot(file: &File, image: &Image, slot: &LayerSlot) {
        let (_, bytes) = image
            .layers
            .iter()
            .find(|(b, _)| b.digest == slot.digest)
            .unwrap();
        assert_eq!(bytes.len() as u64, slot.size);
        file.write_all_at(bytes, slot.offset).unwrap();
    }

    fn tags() -> Vec<String> {
        vec![
            "127.0.0.1:5000/single/oci:v1".to_owned(),
            "alpine:3.20".to_owned(),
        ]
    }

    fn read_entries(path: &Path) -> Vec<(String, tar::Header, Vec<u8>)> {
        let mut archive = tar::Archive::new(File::open(path).unwrap());
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                let header = entry.header().clone();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                (name, header, data)
            })
            .collect()
    }

    #[test]
    fn docker_archive_reads_back_with_the_tar_crate() {
        let image = image();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        let layout = write_archive(&path, &image, &tags(), true);

        let entries = read_entries(&path);
        let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
        let (l1, l2, l3) = (
            hex(&image.layers[0].0.digest),
            hex(&image.layers[1].0.digest),
            hex(&image.layers[2].0.digest),
        );
        let config_name = format!("{}.json", hex(&image.config.digest));
        assert_eq!(
            names,
            [
                config_name.clone(),
                "manifest.json".into(),
                "repositories".into(),
                format!("{l1}.tar.gz"),
                format!("{l2}.tar.gz"),
                format!("{l3}.tar"),
            ]
        );
        for (name, header, data) in &entries {
            assert_eq!(header.entry_type(), tar::EntryType::Regular, "{name}");
            assert_eq!(header.mode().unwrap(), 0o644, "{name}");
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0), "{name}");
            assert_eq!(header.mtime().unwrap(), 0, "{name}");
            assert!(header.as_ustar().is_some(), "{name} has a ustar header");
            assert_eq!(header.size().unwrap(), data.len() as u64, "{name}");
        }
        assert_eq!(entries[0].2, image.config_bytes);
        for (i, blob) in [3, 4, 5].into_iter().zip(&image.layers) {
            assert_eq!(entries[i].2, blob.1, "{}", entries[i].0);
        }

        // The slots are exactly where the tar crate finds the data.
        let slots = layout.layer_slots();
        assert_eq!(slots.len(), 3);
        for (slot, (blob, _)) in slots.iter().zip(&image.layers) {
            assert_eq!(slot.digest, blob.digest);
            assert_eq!(slot.size, blob.size);
            assert_eq!(slot.offset % BLOCK, 0);
        }
        let mut archive = tar::Archive::new(File::open(&path).unwrap());
        let offsets: Vec<u64> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().raw_file_position())
            .collect();
        assert_eq!(offsets[3..], slots.iter().map(|s| s.offset).collect::<Vec<_>>());

        let manifest: Value = serde_json::from_slice(&entries[1].2).unwrap();
        assert_eq!(
            manifest,
            json!([{
                "Config": config_name,
                "RepoTags": ["127.0.0.1:5000/single/oci:v1", "alpine:3.20"],
                "Layers": [
                    format!("{l1}.tar.gz"),
                    format!("{l2}.tar.gz"),
                    format!("{l3}.tar"),
                    format!("{l1}.tar.gz"),
                ],
            }])
        );
        let repositories: Value = serde_json::from_slice(&entries[2].2).unwrap();
        assert_eq!(
            repositories,
            json!({"127.0.0.1:5000/single/oci": {"v1": l1}, "alpine": {"3.20": l1}})
        );

        // The layers are the real tars the config's diff_ids describe.
        let tar1 = {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&entries[3].2[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        assert_eq!(crate::model::digest::sha256(&tar1), image.diff_ids[0]);
        let mut layer = tar::Archive::new(&tar1[..]);
        let inner: Vec<String> = layer
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(inner, ["etc/", "etc/hello.txt", "bin/tool", "etc/link"]);
    }

    #[test]
    fn docker_archive_is_reproducible_and_order_independent() {
        let image = image();
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        write_archive(&a, &image, &tags(), true);
        write_archive(&b, &image, &tags(), false);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

        // Also with a stale, longer file underneath: every non-layer byte is written.
        let c = dir.path().join("c.tar");
        std::fs::write(&c, vec![0xaa; 200_000]).unwrap();
        let layout = layout(&image, &tags());
        let file = File::options().write(true).open(&c).unwrap();
        layout.write_metadata(&file).unwrap();
        for slot in layout.layer_slots() {
            write_slot(&file, &image, slot);
        }
        drop(file);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    }

    #[test]
    fn docker_archive_stores_a_repeated_layer_once() {
        let image = image();
        let layout = layout(&image, &[]);
        let digests: Vec<&str> = layout.layer_slots().iter().map(|s| s.digest.as_str()).collect();
        assert_eq!(
            digests,
            [
                &image.layers[0].0.digest,
                &image.layers[1].0.digest,
                &image.layers[2].0.digest
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        write_archive(&path, &image, &[], true);
        let entries = read_entries(&path);
        let l1 = format!("{}.tar.gz", hex(&image.layers[0].0.digest));
        assert_eq!(entries.iter().filter(|(n, _, _)| *n == l1).count(), 1);
        // No tags: empty RepoTags and no `repositories` file.
        assert!(entries.iter().all(|(n, _, _)| n != "repositories"));
        let manifest: Value = serde_json::from_slice(&entries[1].2).unwrap();
        assert_eq!(manifest[0]["RepoTags"], json!([]));
        let listed: Vec<&str> = manifest[0]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(listed.iter().filter(|l| **l == l1).count(), 2);
        assert_eq!((listed[0], listed[3]), (l1.as_str(), l1.as_str()));
    }

    #[test]
    fn docker_archive_header_bytes() {
        let header = ustar_header("manifest.json", 1234, b'0');
        // Checked against GNU tar's own format (octal fields, NUL-terminated).
        assert_eq!(&header[100..108], b"0000644\0");
        assert_eq!(&header[124..136], b"00000002322\0");
        assert_eq!(&header[136..148], b"00000000000\0");
        assert_eq!(&header[257..265], b"ustar\x0000");
        let parsed = tar::Header::from_byte_slice(&header);
        assert_eq!(parsed.cksum().unwrap(), {
            let mut copy = header;
            copy[148..156].fill(b' ');
            copy.iter().map(|&b| u32::from(b)).sum::<u32>()
        });
        assert_eq!(pax_record("size", "8589934592"), "19 size=8589934592\n");
        assert_eq!(pax_record("path", "x"), "9 path=x\n");
        // Where the length's own digits tip it over to one more digit.
        assert_eq!(
            pax_record("k", &"v".repeat(94)),
            format!("101 k={}\n", "v".repeat(94))
        );
        for n in 0..1200 {
            let record = pax_record("k", &"v".repeat(n));
            let (len, _) = record.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), record.len(), "{record}");
        }
    }

    /// A layer past ustar's 8 GiB gets a pax `size`; checked in a sparse file.
    #[test]
    fn docker_archive_layer_of_8_gib_or_more() {
        let image = image();
        let huge = BlobInfo {
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: MAX_USTAR_SIZE + 2,
            media_type: GZIP.into(),
        };
        let small = image.layers[0].0.clone();
        let layout = DockerArchiveLayout::new(
            &image.config,
            &image.config_bytes,
            &[huge.clone(), small.clone()],
            &[],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.tar");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        layout.write_metadata(&file).unwrap();
        let slots = layout.layer_slots();
        file.write_all_at(b"first bytes", slots[0].offset).unwrap();
        file.write_all_at(b"last", slots[0].offset + slots[0].size - 4)
            .unwrap();
        write_slot(&file, &image, &slots[1]);
        drop(file);

        let mut archive = tar::Archive::new(File::open(&path).unwrap());
        let mut seen = Vec::new();
        for entry in archive.entries_with_seek().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            seen.push((name, entry.size(), entry.raw_file_position()));
            if entry.size() < 1 << 20 {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                if seen.len() == 3 {
                    assert_eq!(data, image.layers[0].1);
                }
            }
        }
        let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names[1..],
            [
                "manifest.json",
                &format!("{}.tar.gz", "ab".repeat(32)),
                &format!("{}.tar.gz", hex(&small.digest))
            ]
        );
        assert_eq!((seen[2].1, seen[2].2), (huge.size, slots[0].offset));
        assert_eq!((seen[3].1, seen[3].2), (small.size, slots[1].offset));

        let mut file = File::open(&path).unwrap();
        file.seek(SeekFrom::Start(slots[0].offset)).unwrap();
        let mut start = [0; 11];
        file.read_exact(&mut start).unwrap();
        assert_eq!(&start, b"first bytes");
    }

    #[test]
    fn docker_archive_rejects_bad_inputs() {
        let image = image();
        let layers: Vec<BlobInfo> = image.layers.iter().map(|(b, _)| b.clone()).collect();
        let new = |config: &BlobInfo, config_bytes: &[u8], layers: &[BlobInfo], tags: &[String]| {
            DockerArchiveLayout::new(config, config_bytes, layers, tags).unwrap_err()
        };
        let message = |e: Error| e.to_string();

        // The config must be the blob it claims to be.
        let err = new(&image.config, b"{}", &layers, &[]);
        assert!(err.is_integrity(), "{err}");
        let mut tampered = image.config_bytes.clone();
        tampered[0] = b' ';
        let err = new(&image.config, &tampered, &layers, &[]);
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

        // Digests become file names: only well-formed ones.
        for digest in [
            "sha256:../../etc/passwd",
            "sha256:ABC",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "x",
        ] {
            let mut bad = layers.clone();
            bad[1].digest = digest.into();
            let shown = message(new(&image.config, &image.config_bytes, &bad, &[]));
            assert!(shown.contains("invalid digest"), "{shown}");
        }
        // A sha512 name (128 hex + extension) is too long for ustar.
        let mut bad = layers.clone();
        bad[1].digest = format!("sha512:{}", "0".repeat(128));
        let shown = message(new(&image.config, &image.config_bytes, &bad, &[]));
        assert!(shown.contains("does not fit a ustar header"), "{shown}");

        // Unknown or encrypted layer media types.
        let mut bad = layers.clone();
        bad[0].media_type = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted".into();
        bad[3].media_type = bad[0].media_type.clone();
        let err = new(&image.config, &image.config_bytes, &bad, &[]);
        assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");

        // The same digest twice with different sizes.
        let mut bad = layers.clone();
        bad[3].size += 1;
        let shown = message(new(&image.config, &image.config_bytes, &bad, &[]));
        assert!(shown.contains("listed twice"), "{shown}");

        // Sizes that do not fit a file.
        for size in [u64::MAX, MAX_FILE_SIZE - 10, MAX_FILE_SIZE / 2] {
            let mut bad = layers.clone();
            bad[1].size = size;
            let mut other = bad[1].clone();
            other.digest = format!("sha256:{}", "cd".repeat(32));
            bad.push(other);
            let shown = message(new(&image.config, &image.config_bytes, &bad, &[]));
            assert!(
                shown.contains("does not fit") && shown.contains("larger than a file"),
                "{shown}"
            );
        }

        // Tags must be repo:tag.
        for tag in ["alpine", "127.0.0.1:5000/single/oci", "alpine:", ":tag"] {
            let shown = message(new(
                &image.config,
                &image.config_bytes,
                &layers,
                &[tag.to_owned()],
            ));
            assert!(shown.contains("repository:tag"), "{tag}: {shown}");
        }
    }

    #[test]
    fn docker_archive_repo_tags() {
        let cases = [
            ("alpine:3.20", Some("alpine:3.20")),
            ("docker.io/library/alpine:3.20", Some("alpine:3.20")),
            ("index.docker.io/library/alpine", Some("alpine:latest")),
            ("docker.io/foo/bar:t", Some("foo/bar:t")),
            ("docker.io/library/foo/bar:t", Some("library/foo/bar:t")),
            (
                "127.0.0.1:5000/single/oci:v1",
                Some("127.0.0.1:5000/single/oci:v1"),
            ),
            ("ghcr.io/a/b:1", Some("ghcr.io/a/b:1")),
            ("localhost:5000/x", Some("localhost:5000/x:latest")),
            (
                "ghcr.io/a/b:1@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                Some("ghcr.io/a/b:1"),
            ),
            (
                "alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                None,
            ),
        ];
        for (input, want) in cases {
            let reference = ImageReference::parse(input).unwrap();
            assert_eq!(repo_tag(&reference).as_deref(), want, "{input}");
        }
        assert_eq!(
            split_repo_tag("127.0.0.1:5000/a/b:v1").unwrap(),
            ("127.0.0.1:5000/a/b", "v1")
        );
    }

    // Real consumers.

    fn tool(name: &str) -> PathBuf {
        let found = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file());
        found.unwrap_or_else(|| {
            panic!("`{name}` is not installed; it is needed to check docker archives (run scripts/install-test-tools.sh)")
        })
    }

    fn run<S: AsRef<str>>(tool_path: &Path, args: &[S]) -> Output {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let output = Command::new(tool_path).args(&args).output().unwrap();
        assert!(
            output.status.success(),
            "{} {} failed ({}):\nstdout: {}\nstderr: {}",
            tool_path.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    #[test]
    fn docker_archive_skopeo_inspects_it() {
        let skopeo = tool("skopeo");
        let image = image();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        write_archive(&path, &image, &tags(), true);
        let source = format!("docker-archive:{}", path.display());

        let raw = run(&skopeo, &["inspect", "--raw", &source]);
        eprintln!("skopeo inspect --raw: {}", String::from_utf8_lossy(&raw.stdout));
        let raw: Value = serde_json::from_slice(&raw.stdout).unwrap();
        assert_eq!(raw["config"]["digest"], image.config.digest.as_str());
        let layers: Vec<&str> = raw["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        assert_eq!(layers, image.diff_ids);

        let inspect = run(&skopeo, &["inspect", &source]);
        eprintln!("skopeo inspect: {}", String::from_utf8_lossy(&inspect.stdout));
        let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(inspect["Architecture"], "arm64");
        assert_eq!(inspect["Os"], "linux");
        assert_eq!(inspect["Layers"], json!(image.diff_ids));
    }

    #[test]
    fn docker_archive_podman_loads_it() {
        let podman = tool("podman");
        let image = image();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        write_archive(&path, &image, &tags(), true);

        // A private store, so the machine's podman storage is untouched.
        let (root, runroot, tmpdir) = (
            dir.path().join("root"),
            dir.path().join("run"),
            dir.path().join("tmp"),
        );
        let global = [
            "--root",
            root.to_str().unwrap(),
            "--runroot",
            runroot.to_str().unwrap(),
            "--tmpdir",
            tmpdir.to_str().unwrap(),
            "--storage-driver",
            "vfs",
            "--events-backend",
            "none",
        ];
        let with = |args: &[&str]| -> Vec<String> {
            global
                .iter()
                .map(ToString::to_string)
                .chain(args.iter().map(ToString::to_string))
                .collect()
        };

        let load = run(&podman, &with(&["load", "-i", path.to_str().unwrap()]));
        eprintln!(
            "podman load: {}{}",
            String::from_utf8_lossy(&load.stdout),
            String::from_utf8_lossy(&load.stderr)
        );
        let images = run(&podman, &with(&["images", "--format", "json"]));
        eprintln!("podman images: {}", String::from_utf8_lossy(&images.stdout));
        let images: Value = serde_json::from_slice(&images.stdout).unwrap();
        // One row per name, all of the one image whose id is the config digest.
        let images = images.as_array().unwrap();
        assert!(!images.is_empty());
        assert!(
            images.iter().all(|i| i["Id"] == hex(&image.config.digest)),
            "{images:?}"
        );
        let names: Vec<&str> = images[0]["Names"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(names.contains(&"127.0.0.1:5000/single/oci:v1"), "{names:?}");
        // Docker reads the short `alpine:3.20` as docker.io/library/alpine:3.20; podman 4.3
        // files short names under `localhost/`, later versions under `docker.io/library/`.
        assert!(
            names
                .iter()
                .any(|n| ["localhost/alpine:3.20", "docker.io/library/alpine:3.20"].contains(n)),
            "{names:?}"
        );

        let inspect = run(
            &podman,
            &with(&["image", "inspect", "127.0.0.1:5000/single/oci:v1"]),
        );
        let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(inspect[0]["Architecture"], "arm64");
        assert_eq!(inspect[0]["RootFS"]["Layers"], json!(image.diff_ids));
    }
}
