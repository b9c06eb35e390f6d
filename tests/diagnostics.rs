//! Golden tests of diagnostics: every folder of `tests/fixtures/` is a
//! broken repository; its rendered diagnostics (code, message,
//! `file:line:col`, snippet, hint) are pinned in `tests/snapshots/`.

use std::path::Path;

use meshplan_compiler::check_dir;
use meshplan_policy_lang::diagnostic::{human, json};

fn cases() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn corpus_has_at_least_thirty_broken_inputs() {
    assert!(cases().len() >= 30, "only {} cases", cases().len());
}

#[test]
fn every_broken_input_gets_pinned_diagnostics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for case in cases() {
        let (_, report) = check_dir(&root.join(&case)).expect("fixture is readable");
        assert!(
            !report.diagnostics.is_empty(),
            "{case}: a broken input must produce a diagnostic"
        );
        for d in &report.diagnostics {
            assert!(
                d.location.is_some(),
                "{case}: diagnostic without a location: {d:?}"
            );
        }
        insta::assert_snapshot!(case.clone(), human::render_all(&report.diagnostics));
    }
}

#[test]
fn json_diagnostics_carry_code_and_position() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unknown-field-typo");
    let (_, report) = check_dir(&root).expect("readable");
    let v: serde_json::Value =
        serde_json::from_str(&json::render(&report.diagnostics)).expect("valid JSON");
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "MP1002");
    assert_eq!(d["file"], "web.yaml");
    assert_eq!(d["line"], 17);
    assert_eq!(d["column"], 5);
    assert_eq!(d["hint"], "did you mean `retries`?");
    assert_eq!(v["summary"]["errors"], 1);
}
