//! Every object `render` emits is accepted by a real kube-apiserver with
//! the upstream CRDs installed (server-side dry-run): the emitters produce
//! what the meshes' own schemas demand. Needs the test environment.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PatchParams, PostParams};
use meshplan_testenv::crds::apply_value_with;
use meshplan_testenv::{error_chain, TestEnv};

fn render_json(repo: &Path, mesh: &str) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_meshplan"))
        .args([
            "render",
            repo.to_str().unwrap(),
            "--mesh",
            mesh,
            "--format",
            "json",
            // Features a mesh cannot express are reported, not fatal, here:
            // this test is about what *is* emitted.
            "--unsupported",
            "warning",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"].as_array().unwrap().clone()
}

fn repos() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("compiler/tests/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.push(root.join("examples-repo"));
    v.sort();
    v
}

#[tokio::test]
async fn the_real_apiserver_accepts_every_rendered_object_of_every_mesh() {
    let env = TestEnv::get();
    let client = env.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    common::install_smi_crd(&client).await;
    let dry = PatchParams::apply("meshplan").force().dry_run();
    let mut checked = 0;
    let mut kinds = BTreeSet::new();
    let mut failures = Vec::new();
    for (repo, mesh) in repos().iter().flat_map(|r| {
        common::all_meshes()
            .into_iter()
            .map(move |m| (r.clone(), m))
    }) {
        let objects = render_json(&repo, mesh);
        let ns: BTreeSet<&str> = objects
            .iter()
            .filter_map(|o| o["metadata"]["namespace"].as_str())
            .collect();
        for n in ns {
            let mut obj = Namespace::default();
            obj.metadata.name = Some(n.to_owned());
            // Already there from another case: fine.
            let _ = namespaces.create(&PostParams::default(), &obj).await;
        }
        for o in &objects {
            checked += 1;
            kinds.insert(o["kind"].as_str().unwrap_or_default().to_owned());
            if let Err(e) = apply_value_with(&client, o, &dry).await {
                failures.push(format!("{} ({mesh}): {}", repo.display(), error_chain(&e)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} objects rejected:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 40, "only {checked} objects");
    for kind in [
        "ServiceIntentions",
        "CiliumNetworkPolicy",
        "NetworkPolicy",
        "TrafficSplit",
    ] {
        assert!(kinds.contains(kind), "no {kind} was checked: {kinds:?}");
    }
}
