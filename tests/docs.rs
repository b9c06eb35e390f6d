//! The examples in docs/intents.md are real: every ```yaml block naming a
//! `# file:` is written to a repository, which must check clean.

use std::path::Path;

use meshplan_compiler::check_dir;
use meshplan_policy_lang::diagnostic::human;

#[test]
fn intents_reference_examples_check_clean() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/intents.md"))
            .expect("docs/intents.md exists");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let body = block.split("```").next().unwrap_or("");
        let Some(name) = body.lines().next().and_then(|l| l.strip_prefix("# file: ")) else {
            continue;
        };
        let path = dir.path().join(name.trim());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        files += 1;
    }
    assert!(
        files >= 4,
        "expected the reference's example files, found {files}"
    );
    let (repo, report) = check_dir(dir.path()).expect("readable");
    assert!(
        report.diagnostics.is_empty(),
        "docs/intents.md examples do not check clean:\n{}",
        human::render_all(&report.diagnostics)
    );
    assert_eq!(repo.services.len(), 3);
    assert_eq!(repo.policies.len(), 1);
    assert!(repo.config.is_some());
}

/// docs/meshes.md's feature matrix is the emitters' own declarations.
/// `MESHPLAN_BLESS=1` rewrites it.
#[test]
fn the_mesh_feature_matrix_matches_the_emitters() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/meshes.md");
    let doc = std::fs::read_to_string(&path).expect("docs/meshes.md exists");
    let (begin, end) = ("<!-- matrix:begin -->\n", "<!-- matrix:end -->");
    let a = doc.find(begin).expect("begin marker") + begin.len();
    let b = doc.find(end).expect("end marker");
    let want = meshplan_compiler::emit::features::matrix_markdown();
    if doc[a..b] == want {
        return;
    }
    if std::env::var_os("MESHPLAN_BLESS").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &doc[..a], &doc[b..])).unwrap();
        return;
    }
    panic!(
        "docs/meshes.md's matrix is stale; run `MESHPLAN_BLESS=1 cargo test --test docs` to regenerate it. Expected:\n{want}"
    );
}
