//! `meshplan diff --against`: comparing with another checkout or a
//! rendered tree, as a CI step does. No cluster needed.

mod common;

use std::path::Path;

use common::meshplan;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_repository_matches_its_own_rendered_tree() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let r = meshplan(&["render", "compiler/tests/cases/zero-trust", "--out", dir]);
    assert_eq!(r.status.code(), Some(0));
    let d = meshplan(&[
        "diff",
        "compiler/tests/cases/zero-trust",
        "--against",
        dir,
        "--exit-code",
    ]);
    assert_eq!(d.status.code(), Some(0), "{}", stdout(&d));
    assert!(
        stdout(&d).ends_with("Plan: 0 to create, 0 to update, 0 to prune, 12 unchanged.\n"),
        "{}",
        stdout(&d)
    );
}

#[test]
fn a_changed_checkout_shows_its_object_diffs_and_what_they_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let head = tmp.path().join("head");
    copy_dir(Path::new("compiler/tests/cases/zero-trust"), &head);
    let file = head.join("services.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let changed = text.replacen(
        "          - namespace: batch\n",
        "          - namespace: batch\n          - namespace: reporting\n",
        1,
    );
    assert_ne!(text, changed, "the fixture changed: update this test");
    std::fs::write(&file, changed).unwrap();

    let d = meshplan(&[
        "diff",
        head.to_str().unwrap(),
        "--against",
        "compiler/tests/cases/zero-trust",
        "--exit-code",
    ]);
    let out = stdout(&d);
    assert_eq!(d.status.code(), Some(1), "{out}");
    assert!(
        out.contains("~ update AuthorizationPolicy bank/accounts (security.istio.io)"),
        "{out}"
    );
    assert!(out.contains("+        - reporting"), "{out}");
    assert!(
        out.contains(
            "What changes:\n  bank/accounts\n    access: gains namespace reporting on port db\n"
        ),
        "{out}"
    );
    assert!(
        out.ends_with("Plan: 0 to create, 1 to update, 0 to prune, 11 unchanged.\n"),
        "{out}"
    );

    let md = meshplan(&[
        "diff",
        head.to_str().unwrap(),
        "--against",
        "compiler/tests/cases/zero-trust",
        "--format",
        "markdown",
    ]);
    assert_eq!(md.status.code(), Some(0));
    assert!(
        stdout(&md).contains("  - access: gains namespace reporting on port db\n"),
        "{}",
        stdout(&md)
    );
}

#[test]
fn an_intent_removed_since_the_base_is_a_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    copy_dir(Path::new("compiler/tests/cases/canary-weights"), &base);
    let head = tmp.path().join("head");
    copy_dir(&base, &head);
    std::fs::remove_file(head.join("search.yaml")).unwrap();
    let d = meshplan(&[
        "diff",
        head.to_str().unwrap(),
        "--against",
        base.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(d.status.code(), Some(0), "{}", stdout(&d));
    let plan: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap();
    assert!(plan["counts"]["prune"].as_u64().unwrap() >= 1, "{plan:#}");
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] == "prune" && c["name"].as_str().unwrap().starts_with("search")),
        "{plan:#}"
    );
    assert_eq!(plan["summary"][0]["lines"][0], "removed");
}

#[test]
fn diff_needs_a_base_to_compare_with() {
    let d = meshplan(&["diff", "examples-repo"]);
    assert_eq!(d.status.code(), Some(2));
    let err = String::from_utf8_lossy(&d.stderr);
    assert!(
        err.contains("--cluster") && err.contains("--against"),
        "{err}"
    );
}

#[test]
fn a_missing_base_directory_is_a_clear_error() {
    let d = meshplan(&["diff", "examples-repo", "--against", "no/such/dir"]);
    assert_eq!(d.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&d.stderr).contains("--against no/such/dir: not a directory"));
}
