//! Golden tests: every folder of `tests/cases/` and the bundled
//! `examples-repo`, rendered for every mesh alone, and for the targets its
//! meshplan.yaml names together, pinned as insta snapshots
//! (`tests/snapshots/golden__<case>__<mesh>.snap`, `…__configured.snap`).
//!
//! A case may hold `positions.txt` (`namespace/name step N` or
//! `namespace/name shadow|promoted`, one per line) to render rollouts mid-way.

use std::path::{Path, PathBuf};

mod common;

use common::positions;
use meshplan_compiler::check_dir;
use meshplan_compiler::{compile, object, Options};
use meshplan_policy_lang::intent::config::UnsupportedSetting;
use meshplan_policy_lang::intent::Target;

const MESHES: [Target; 7] = Target::ALL;

/// `mesh`: one target alone; `None`: the targets of the case's
/// meshplan.yaml, rendered together.
fn render(dir: &Path, mesh: Option<Target>) -> String {
    let (repo, report) = check_dir(dir).unwrap();
    assert!(
        report.passes(false),
        "{}: {:?}",
        dir.display(),
        report.diagnostics
    );
    // What the mesh cannot express is pinned too, as comments first.
    let opts = Options {
        targets: mesh.map(|m| vec![m]),
        positions: positions(dir),
        unsupported: Some(UnsupportedSetting::Warning),
        skip_summary: false,
        on_emitted: None,
    };
    let compiled =
        compile(&repo, &report, &opts).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut out: String = compiled
        .unsupported
        .iter()
        .map(|u| format!("# not rendered: {u}\n"))
        .collect();
    out.push_str(&object::to_yaml_stream(&compiled.objects));
    out
}

fn cases() -> Vec<(String, PathBuf)> {
    let mut cases: Vec<(String, PathBuf)> = common::case_dirs()
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, p)
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_case_renders_as_pinned_for_every_mesh() {
    let mut rendered = 0;
    for (name, dir) in cases() {
        for mesh in MESHES {
            let mesh_name = meshplan_compiler::target_name(mesh);
            insta::assert_snapshot!(format!("{name}__{mesh_name}"), render(&dir, Some(mesh)));
            rendered += 1;
        }
        // The case's own targets together (a migration, defence in depth).
        insta::assert_snapshot!(format!("{name}__configured"), render(&dir, None));
    }
    assert!(rendered >= 12, "only {rendered} renders");
}
