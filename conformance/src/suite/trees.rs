//! A file tree as a comparable value, from a directory (what `umoci unpack` made) or from a
//! tar (what we wrote), so that a rootfs can be checked against a real unpacker.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::pull::tar_entries;

/// Path → (kind: `d`, `f` or `l`; permission bits, 0 for links; content or link target).
/// A hard link is the file it links to, as on disk.
pub type Tree = BTreeMap<String, (char, u32, Vec<u8>)>;

/// The tree under `root`, which is not itself in it.
pub fn tree_from_dir(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, tree: &mut Tree) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let name = path
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                tree.insert(name, ('l', 0, target.to_string_lossy().as_bytes().to_vec()));
            } else if meta.is_dir() {
                tree.insert(name, ('d', mode, Vec::new()));
                walk(root, &path, tree);
            } else {
                tree.insert(name, ('f', mode, std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut tree = Tree::new();
    walk(root, root, &mut tree);
    tree
}

/// The tree a tar holds, its root entry (`./`) left out.
pub fn tree_from_tar(bytes: &[u8]) -> Tree {
    let entries = tar_entries(bytes);
    entries
        .iter()
        .filter(|(path, _)| !matches!(path.as_str(), "" | "."))
        .map(|(path, (kind, mode, data))| {
            let entry = match kind {
                tar::EntryType::Directory => ('d', mode & 0o7777, Vec::new()),
                tar::EntryType::Symlink => ('l', 0, data.clone()),
                tar::EntryType::Link => {
                    let target = String::from_utf8_lossy(data);
                    let (_, target_mode, content) = entries
                        .get(target.as_ref())
                        .unwrap_or_else(|| panic!("hard link {path} to {target}, not in the tar"));
                    ('f', target_mode & 0o7777, content.clone())
                }
                _ => ('f', mode & 0o7777, data.clone()),
            };
            (path.clone(), entry)
        })
        .collect()
}
