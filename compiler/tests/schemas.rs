//! Every object the compiler emits, for every test repository and mesh,
//! passes the upstream CRD schemas in `$MESHPLAN_CRDS` (default
//! `../shared/crds`) — including the `x-kubernetes-validations` rules the
//! test apiserver (1.20) cannot run. Skipped rules are printed, not hidden.

use std::path::{Path, PathBuf};

use meshplan_compiler::check_dir;
use meshplan_compiler::validate::SchemaSet;
use meshplan_compiler::{compile, Options};
use meshplan_policy_lang::intent::config::UnsupportedSetting;
use meshplan_policy_lang::intent::Target;

fn crds() -> PathBuf {
    let dir = std::env::var_os("MESHPLAN_CRDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/crds"));
    assert!(
        dir.is_dir(),
        "no CRD schemas at {} (set MESHPLAN_CRDS; scripts/test.sh does)",
        dir.display()
    );
    dir
}

fn repos() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("compiler/tests/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.push(root.join("examples-repo"));
    v.sort();
    v
}

#[test]
fn every_emitted_object_passes_the_upstream_schemas() {
    let mut set = SchemaSet::load(&crds()).unwrap();
    // SMI is archived: its CRD is kept beside the tests (see the file).
    set.add_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crds/smi.yaml"))
        .unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut skipped = std::collections::BTreeSet::new();
    let mut kinds = std::collections::BTreeSet::new();
    for repo in repos() {
        let (r, report) = check_dir(&repo).unwrap();
        for target in Target::ALL {
            let opts = Options {
                targets: Some(vec![target]),
                unsupported: Some(UnsupportedSetting::Warning),
                ..Options::default()
            };
            let compiled = compile(&r, &report, &opts).unwrap();
            kinds.extend(compiled.objects.iter().map(|o| o.kind));
            let v = set.validate(&compiled.objects);
            checked += v.objects;
            skipped.extend(v.rules_skipped);
            for x in v.violations {
                failures.push(format!(
                    "{} {target:?}: {} {}: {}",
                    repo.display(),
                    x.object,
                    x.path,
                    x.message
                ));
            }
        }
    }
    eprintln!(
        "{checked} objects validated; {} distinct CEL rules skipped:",
        skipped.len()
    );
    for s in &skipped {
        eprintln!("  {s}");
    }
    assert!(checked > 100, "only {checked} objects had a schema");
    for kind in [
        "ServiceIntentions",
        "CiliumNetworkPolicy",
        "TrafficSplit",
        "ServiceRouter",
    ] {
        assert!(kinds.contains(kind), "no {kind} was validated: {kinds:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
