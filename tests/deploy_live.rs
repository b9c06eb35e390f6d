//! deploy/: the kustomize base renders, the real API server accepts every
//! object of it, and the Deployment is locked down as docs/deploy.md says.
//! Needs the test environment (and kubectl, which the environment has).

use std::path::Path;
use std::process::Command;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use meshplan_testenv::TestEnv;
use serde_json::Value;

fn rendered() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("kubectl")
        .args(["kustomize", root.join("deploy").to_str().unwrap()])
        .output()
        .expect("kubectl runs (scripts/env/install.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
    docs.into_iter().filter(|d| d.is_object()).collect()
}

#[tokio::test]
async fn the_api_server_accepts_every_object_of_the_kustomize_base() {
    let env = TestEnv::get();
    let client = env.client().await;
    let docs = rendered();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(&k), "deploy/ has no {k}: {kinds:?}");
    }
    for d in &docs {
        let (group, version) = d["apiVersion"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap_or(("", d["apiVersion"].as_str().unwrap()));
        let kind = d["kind"].as_str().unwrap();
        let (ar, _) =
            kube::discovery::pinned_kind(&client, &GroupVersionKind::gvk(group, version, kind))
                .await
                .unwrap();
        let name = d["metadata"]["name"].as_str().unwrap();
        let api: Api<DynamicObject> = match d["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            name,
            &PatchParams::apply("meshplan-tests").force().dry_run(),
            &Patch::Apply(d),
        )
        .await
        .unwrap_or_else(|e| panic!("{kind} {name} refused: {e}"));
    }
}

#[test]
fn the_deployment_is_locked_down() {
    let docs = rendered();
    let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["serviceAccountName"], "meshplan");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert!(c["resources"]["limits"]["cpu"].is_string());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--leader-election"), "{args:?}");
    assert!(args.contains(&"--listen=0.0.0.0:8080"), "{args:?}");
    // The arguments parse: `meshplan run` accepts them (a --help run of the
    // real parser, with the arguments before it).
    let mut all: Vec<&str> = args.clone();
    all.push("--help");
    let out = Command::new(env!("CARGO_BIN_EXE_meshplan"))
        .args(&all)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_image_is_multi_stage_minimal_non_root_and_built_by_the_dist_script() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Dockerfile"))
            .unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[1].contains("distroless"), "{froms:?}");
    let user = text.lines().rfind(|l| l.starts_with("USER ")).unwrap();
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    // The shipped binary is the one the render benchmark measures.
    let build = text.lines().find(|l| l.starts_with("RUN bin=")).unwrap();
    assert!(build.contains("scripts/build-dist.sh"), "{build}");
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/build-dist.sh")
        .is_file());
}
