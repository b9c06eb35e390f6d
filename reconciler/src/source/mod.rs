//! Where revisions come from: a Git repository ([`git`]), or a local
//! folder; and the Git revision of a local checkout, recorded with what is
//! applied.

pub mod error;
pub mod git;

use std::path::Path;

/// The commit checked out at `path` (a full hash); `None` outside a Git
/// checkout.
pub fn head_of(path: &Path) -> Option<String> {
    let repo = git2::Repository::discover(path).ok()?;
    head(&repo)
}

fn head(repo: &git2::Repository) -> Option<String> {
    Some(repo.head().ok()?.peel_to_commit().ok()?.id().to_string())
}

/// [`head_of`], with `-dirty` when the work tree has uncommitted changes.
pub fn revision_of(path: &Path) -> Option<String> {
    let repo = git2::Repository::discover(path).ok()?;
    let head = head(&repo)?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true).include_ignored(false);
    // Only the part of the work tree below `path` matters (a monorepo).
    let rel = path
        .canonicalize()
        .ok()
        .and_then(|p| {
            let root = repo.workdir()?.canonicalize().ok()?;
            p.strip_prefix(root).ok().map(Path::to_path_buf)
        })
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(rel) = &rel {
        opts.pathspec(rel);
    }
    let dirty = repo
        .statuses(Some(&mut opts))
        .map(|s| !s.is_empty())
        .unwrap_or(false);
    Some(if dirty { format!("{head}-dirty") } else { head })
}
