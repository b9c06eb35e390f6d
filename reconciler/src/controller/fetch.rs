//! Where revisions come from: fetching the Git source (off the runtime:
//! libgit2 blocks), or stamping and watching a local folder. Apart from
//! the loop because it is the only part that touches the source.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::{Controller, Source, Trigger};
use crate::Error;

/// Why no revision was fetched.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("the fetch task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Git(#[from] crate::source::git::GitError),
}

impl Controller {
    pub(super) async fn fetch(&self) -> Result<(String, PathBuf), FetchError> {
        match &self.cfg.source {
            Source::Git(g) => {
                let g = g.clone();
                let rev = tokio::task::spawn_blocking(move || g.sync())
                    .await
                    .map_err(FetchError::Task)??;
                Ok((rev.commit, rev.dir))
            }
            Source::Dir(d) => {
                // A folder's revision: its Git HEAD if it is a checkout
                // (no status walk: the stamp already sees every edit), and
                // a stamp of its files.
                let head = crate::source::head_of(d).unwrap_or_else(|| "local".into());
                Ok((format!("{head}@{}", dir_stamp(d)), d.clone()))
            }
        }
    }
}

/// Changes whenever a file below `dir` changes (size and modification
/// time of every file, hashed).
fn dir_stamp(dir: &Path) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata() {
                entries.push((p, m.len(), m.modified().ok()));
            }
        }
    }
    entries.sort();
    entries.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Watches a folder; every change sends a trigger (the loop debounces).
pub(super) fn watch_dir(
    dir: &Path,
    triggers: mpsc::UnboundedSender<Trigger>,
) -> Result<notify::RecommendedWatcher, Error> {
    use notify::Watcher as _;
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if !ev.kind.is_access() {
                let _ = triggers.send(Trigger::LocalChange);
            }
        }
    })
    .map_err(|e| Error::System {
        what: format!("cannot watch {}", dir.display()),
        source: std::io::Error::other(e),
    })?;
    w.watch(dir, notify::RecursiveMode::Recursive)
        .map_err(|e| Error::System {
            what: format!("cannot watch {}", dir.display()),
            source: std::io::Error::other(e),
        })?;
    Ok(w)
}
