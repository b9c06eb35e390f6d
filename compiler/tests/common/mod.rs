//! What the compiler's integration tests share: the cases and their
//! rollout positions.

use std::path::{Path, PathBuf};

use meshplan_compiler::{Position, Positions};

/// Every folder of `tests/cases/`, then the bundled `examples-repo`.
pub fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("tests/cases"))
        .expect("tests/cases exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.push(root.join("../examples-repo"));
    dirs
}

/// A case's `positions.txt` (`namespace/name step N` or `namespace/name
/// shadow|promoted`, one per line): rollouts rendered mid-way.
pub fn positions(dir: &Path) -> Positions {
    let mut p = Positions::default();
    let Ok(text) = std::fs::read_to_string(dir.join("positions.txt")) else {
        return p;
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let pos = match parts.as_slice() {
            [_, "promoted"] => Position::Promoted,
            [_, "shadow"] => Position::Shadow,
            [_, "step", n] => Position::Step(n.parse().expect("step number")),
            _ => panic!("bad positions.txt line: {line}"),
        };
        p.by_service.insert(parts[0].to_owned(), pos);
    }
    p
}
