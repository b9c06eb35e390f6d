//! YAML with positions: a span-carrying node tree (`node`), built from
//! libyaml's events (`events`) or, for plain files, from the fast reader's
//! flat output (`tape`), and a serde deserializer over either (`de`,
//! through the `tree` trait).
//!
//! Imports run one way: `de` and `tape` read nodes through `tree`; `fast`
//! writes tapes and nodes, `events` nodes; only [`parse`] here chooses
//! between the fast reader and libyaml.

mod de;
mod events;
mod fast;
mod node;
mod tape;
mod tree;

pub use de::{did_you_mean, from_node, DeError, DeErrorKind};
pub use fast::read;
pub use node::{Document, Node, Path, Seg, Style, TreeError, TreeErrorKind, Value};
pub use tape::{Tape, TapeNode};
pub use tree::{Shape, Tree};

/// Parses every document of `text`. On a syntax error, the documents before
/// it are kept (they are valid) and the error is returned alongside.
pub fn parse(text: &str) -> (Vec<Document>, Vec<TreeError>) {
    // Most intent files are plain block YAML, which the fast reader builds
    // the same tree from several times faster (docs/benchmarks.md); it
    // leaves everything else, errors included, to libyaml.
    if let Some(docs) = fast::parse(text) {
        return (docs, Vec::new());
    }
    events::with_libyaml(text)
}

/// Every YAML file of the project (examples, fixtures, snapshots), for
/// tests that read them all.
#[cfg(test)]
pub(crate) fn project_yaml_files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !matches!(name, "target" | ".git" | "node_modules") {
                    dirs.push(path);
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
