//! `render --out DIR`: one file per object, `DIR/<namespace>/<file>`,
//! confined to `DIR`.
//!
//! # Guarantees
//!
//! - Nothing is written outside `DIR`: each file's two path components (a
//!   namespace, a file name) must be plain names — no `..`, no separator,
//!   no leading dot — or nothing is written (exit 2). Intents are checked
//!   to be DNS labels long before; this holds whatever reaches here.
//! - No symbolic link inside `DIR` is followed: a namespace folder that is
//!   a link is refused (exit 2); a file that is a link is replaced by the
//!   object's file, its target left alone. (`DIR` itself is the caller's
//!   choice, and may be a link.)
//! - Files of objects that no longer exist are removed: a `.yaml` or
//!   `.json` file in a namespace folder that this render did not write, and
//!   that meshplan wrote (it holds the `app.kubernetes.io/managed-by:
//!   meshplan` label), is deleted, so `kubectl apply -R -f DIR` stops
//!   applying deleted intents. Any other file is left in place and listed.
//!
//! # Expected flow
//!
//! Each namespace folder is listed once, before its first file is written;
//! the listing tells links and stale files apart without a `stat` per
//! file.

use std::collections::BTreeMap;
use std::fs::FileType;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use meshplan_compiler::{object, MeshObject};

use super::RenderFormat;

/// What writing the tree did beside writing its files.
#[derive(Debug, Default)]
pub struct Written {
    pub files: usize,
    /// Stale files meshplan wrote before, removed.
    pub removed: usize,
    /// Files in namespace folders meshplan did not write, left in place.
    pub foreign: Vec<PathBuf>,
}

/// Writes `objects` under `dir`.
pub fn write(dir: &Path, objects: &[MeshObject], format: RenderFormat) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Every namespace folder already there, links included (not followed).
    let mut folders: BTreeMap<String, Folder> = BTreeMap::new();
    for entry in read_dir(dir)? {
        let (name, kind) = entry?;
        if kind.is_dir() || kind.is_symlink() {
            folders.insert(name, Folder::Unlisted(kind));
        }
    }
    let mut written = Written::default();
    for o in objects {
        let rel = o.file_path();
        let Some((ns, file)) = rel.split_once('/') else {
            bail!("refusing to write `{rel}`: not `<namespace>/<file>`");
        };
        let file = match format {
            RenderFormat::Yaml => file.to_owned(),
            RenderFormat::Json => file.replace(".yaml", ".json"),
        };
        for part in [ns, file.as_str()] {
            if !plain_name(part) {
                bail!(
                    "refusing to write `{ns}/{file}` under {}: `{part}` is not a plain file name",
                    dir.display()
                );
            }
        }
        let folder = dir.join(ns);
        let listing = folders.entry(ns.to_owned()).or_insert(Folder::Missing);
        let entries = listing.open(&folder)?;
        let path = folder.join(&file);
        match entries.remove(&file) {
            Some(kind) if kind.is_symlink() => std::fs::remove_file(&path)
                .with_context(|| format!("cannot replace the link {}", path.display()))?,
            Some(kind) if kind.is_dir() => {
                bail!("cannot write {}: a folder is there", path.display())
            }
            _ => {}
        }
        let text = match format {
            RenderFormat::Yaml => object::to_yaml(o),
            RenderFormat::Json => serde_json::to_string_pretty(&o.body)? + "\n",
        };
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.files += 1;
    }
    for (ns, listing) in folders {
        let folder = dir.join(&ns);
        // Folders no object went to this time: their files may be stale.
        let left = match listing {
            Folder::Unlisted(kind) if kind.is_dir() => list(&folder)?,
            Folder::Listed(left) => left,
            Folder::Unlisted(_) | Folder::Missing => BTreeMap::new(),
        };
        for (name, kind) in left {
            let path = folder.join(&name);
            if kind.is_file() && is_ours(&path, &name) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove the stale {}", path.display()))?;
                written.removed += 1;
            } else {
                written.foreign.push(path);
            }
        }
    }
    Ok(written)
}

/// A namespace folder of `DIR`.
enum Folder {
    /// Not there yet.
    Missing,
    /// There, not yet looked into: a folder or a link.
    Unlisted(FileType),
    /// Its files not written (yet) by this render.
    Listed(BTreeMap<String, FileType>),
}

impl Folder {
    /// The folder's remaining files, creating or listing it the first time.
    fn open(&mut self, path: &Path) -> anyhow::Result<&mut BTreeMap<String, FileType>> {
        match self {
            Folder::Listed(_) => {}
            Folder::Missing => {
                std::fs::create_dir(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                *self = Folder::Listed(BTreeMap::new());
            }
            Folder::Unlisted(kind) if kind.is_symlink() => bail!(
                "refusing to write into {}: it is a symbolic link (meshplan writes only inside its output folder)",
                path.display()
            ),
            Folder::Unlisted(_) => *self = Folder::Listed(list(path)?),
        }
        match self {
            Folder::Listed(entries) => Ok(entries),
            _ => unreachable!("listed above"),
        }
    }
}

fn read_dir(
    dir: &Path,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<(String, FileType)>>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    Ok(entries.map(|e| {
        let e = e?;
        Ok((e.file_name().to_string_lossy().into_owned(), e.file_type()?))
    }))
}

fn list(dir: &Path) -> anyhow::Result<BTreeMap<String, FileType>> {
    read_dir(dir)?.collect()
}

/// One path component that names a file in the folder it is joined to.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Whether meshplan wrote the file: an object file carrying its label.
fn is_ours(path: &Path, name: &str) -> bool {
    const LARGEST: u64 = 4 << 20;
    if !(name.ends_with(".yaml") || name.ends_with(".json")) {
        return false;
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() > LARGEST {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let label = object::MANAGED_BY;
    text.contains(&format!("{label}: {}", object::MANAGER))
        || text.contains(&format!("\"{label}\": \"{}\"", object::MANAGER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_written() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "../x", "a\0b", "é"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        for good in [
            "shop",
            "networking.istio.io.virtualservice-web.yaml",
            "_cluster",
        ] {
            assert!(plain_name(good), "{good}");
        }
    }

    #[test]
    fn empty_render_leaves_an_empty_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let w = write(tmp.path(), &[], RenderFormat::Yaml).unwrap();
        assert_eq!((w.files, w.removed), (0, 0));
        assert!(list(tmp.path()).unwrap().is_empty());
    }
}
