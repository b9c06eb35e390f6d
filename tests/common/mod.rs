//! Helpers shared by the binary's tests.

pub mod rollouts;
pub mod running;

use std::process::{Command, Output};

/// Runs the `meshplan` binary from the workspace root, without colour.
#[allow(dead_code)]
pub fn meshplan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshplan"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

/// `meshplan.yaml` of a test repository: Istio, in namespace `ns`.
#[allow(dead_code)] // not every test file writes repositories
pub fn config_yaml(ns: &str) -> String {
    format!("apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\ndefaultNamespace: {ns}\n")
}

/// A service with versions v1 and v2, `/api/` split `100 - canary` :
/// `canary`, callable from namespace `caller`.
#[allow(dead_code)]
pub fn service_yaml(name: &str, canary: u32, caller: &str) -> String {
    format!(
        "apiVersion: meshplan.dev/v1alpha1
kind: ServiceIntent
metadata:
  name: {name}
spec:
  ports:
    - {{ name: http, port: 80, protocol: http }}
  versions:
    - name: v1
      labels: {{ app: {name}, version: v1 }}
    - name: v2
      labels: {{ app: {name}, version: v2 }}
  routes:
    - name: api
      match:
        - path: {{ prefix: /api/ }}
      destination:
        weights:
          - {{ version: v1, weight: {} }}
          - {{ version: v2, weight: {canary} }}
  access:
    allow:
      - from:
          - namespace: {caller}
",
        100 - canary
    )
}

/// Every target, by its meshplan.yaml name.
#[allow(dead_code)]
pub fn all_meshes() -> Vec<&'static str> {
    meshplan_policy_lang::intent::Target::ALL
        .iter()
        .map(|t| meshplan_compiler::target_name(*t))
        .collect()
}

/// Installs the SMI TrafficSplit CRD (archived upstream, so not among the
/// shared CRDs: it is kept beside the compiler's tests).
#[allow(dead_code)]
pub async fn install_smi_crd(client: &kube::Client) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compiler/tests/crds");
    if let Err(e) = meshplan_testenv::crds::install_crds(client, &dir).await {
        panic!("{}", meshplan_testenv::error_chain(&e));
    }
}

/// Runs meshplan as the least-privilege ServiceAccount, with `inventory`.
#[allow(dead_code)]
pub fn meshplan_sa(args: &[&str], inventory: &str) -> Output {
    let env = meshplan_testenv::TestEnv::get();
    let mut all: Vec<&str> = args.to_vec();
    let kc = env.sa_kubeconfig.to_str().unwrap();
    all.extend(["--kubeconfig", kc, "--inventory", inventory]);
    meshplan(&all)
}
