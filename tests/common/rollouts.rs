//! Helpers of the progressive-delivery live tests (`rollout_live.rs`,
//! `rollout_gates_live.rs`): a one-service repository with a rollout, the
//! metrics generator's traffic, `meshplan run`, and reading where the
//! rollout stands.
#![allow(dead_code)] // not every test file uses every helper

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use meshplan_testenv::{TestEnv, Workload};
use serde_json::Value;

use super::running::Running;

/// A repository with one service `svc` (v1 stable, v2 canary) whose
/// rollout is `rollout` (YAML lines under `rollout:`), analysed from
/// `metrics_url`.
pub fn repo(ns: &str, svc: &str, metrics_url: &str, rollout: &str) -> tempfile::TempDir {
    repo_for("istio", ns, svc, metrics_url, rollout)
}

pub fn repo_for(
    target: &str,
    ns: &str,
    svc: &str,
    metrics_url: &str,
    rollout: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meshplan.yaml"),
        format!("apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [{target}]\ndefaultNamespace: {ns}\nmetrics:\n  url: {metrics_url}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("svc.yaml"),
        format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: {svc}\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: {svc}, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: {svc}, version: v2 }} }}\n  rollout:\n    stable: v1\n    canary: v2\n{rollout}"),
    )
    .unwrap();
    dir
}

/// Healthy traffic to both versions of `svc`.
pub fn traffic(ns: &str, svc: &str, error_rate: f64, tail_ms: Option<f64>, rps: f64) {
    let mut canary = Workload::new(svc, ns, "v2")
        .rps(rps)
        .error_rate(error_rate)
        .latency_ms(20.0);
    if let Some(ms) = tail_ms {
        canary = canary.tail(0.2, ms);
    }
    TestEnv::get()
        .metrics()
        .set(&[
            Workload::new(svc, ns, "v1")
                .rps(30.0)
                .error_rate(0.0)
                .latency_ms(20.0),
            canary,
        ])
        .unwrap();
}

pub fn start(dir: &Path, inventory: &str) -> Running {
    // A long interval: every move below comes from the rollout ticks.
    Running::start(&[dir.to_str().unwrap(), "--interval", "5m"], inventory)
}

/// The canary's weight on the VirtualService's default route.
/// The VirtualService `svc` in `ns`, as JSON.
pub async fn virtual_service(client: &kube::Client, ns: &str, svc: &str) -> Option<Value> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    );
    let vs = api.get_opt(svc).await.ok()??;
    serde_json::to_value(vs).ok()
}

pub async fn weight(client: &kube::Client, ns: &str, svc: &str) -> Option<i64> {
    let vs = virtual_service(client, ns, svc).await?;
    let routes = vs["spec"]["http"].as_array()?;
    let default = routes.last()?;
    default["route"]
        .as_array()?
        .iter()
        .find(|r| r["destination"]["subset"] == "v2")
        .map(|r| r["weight"].as_i64().unwrap_or(0))
}

/// `meshplan rollout status KEY --format json`, once there is a state.
pub fn status(key: &str, inventory: &str) -> Option<Value> {
    let out = super::meshplan_sa(&["rollout", "status", key, "--format", "json"], inventory);
    if out.status.code() != Some(0) {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0).cloned()
}

pub async fn wait_phase(
    key: &str,
    inventory: &str,
    phase: &str,
    within: Duration,
    run: &Running,
) -> Value {
    let what = format!("{key} to reach {phase}");
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = status(key, inventory) {
            if s["phase"] == phase {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: it is {}\n--- meshplan run:\n{}",
                    serde_json::to_string_pretty(&s).unwrap(),
                    run.log()
                );
            }
        } else if Instant::now() > deadline {
            panic!("{what}: no state\n--- meshplan run:\n{}", run.log());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn wait_weight(
    client: &kube::Client,
    ns: &str,
    svc: &str,
    w: i64,
    within: Duration,
    run: &Running,
) {
    let deadline = Instant::now() + within;
    loop {
        let now = weight(client, ns, svc).await;
        if now == Some(w) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{ns}/{svc}: canary weight {now:?}, expected {w}\n--- meshplan run:\n{}",
                run.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Clone, Copy)]
pub enum Mesh {
    Istio,
    Linkerd,
}

/// Every canary weight the route shows, in order, until it reaches 100.
pub async fn weights_until_promoted(
    client: &kube::Client,
    ns: &str,
    svc: &str,
    mesh: Mesh,
    within: Duration,
    run: &Running,
) -> Vec<i64> {
    let mut seen: Vec<i64> = Vec::new();
    let deadline = Instant::now() + within;
    while seen.last() != Some(&100) {
        let w = match mesh {
            Mesh::Istio => weight(client, ns, svc).await,
            Mesh::Linkerd => linkerd_weight(client, ns, svc).await,
        };
        if let Some(w) = w.filter(|w| seen.last() != Some(w)) {
            seen.push(w);
        }
        assert!(
            Instant::now() < deadline,
            "weights so far {seen:?}\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

pub const HEALTHY_ANALYSIS: &str = "    analysis:\n      interval: 2s\n      failureLimit: 2\n      inconclusiveLimit: 1000\n      minRequestVolume: 10\n      successRate: { min: 99 }\n      latency: { percentile: 99, max: 500ms }\n";

/// The canary backend's weight on Linkerd's HTTPRoute.
pub async fn linkerd_weight(client: &kube::Client, ns: &str, svc: &str) -> Option<i64> {
    let gvk = GroupVersionKind::gvk("policy.linkerd.io", "v1beta3", "HTTPRoute");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "httproutes"),
    );
    let r = api.get_opt(svc).await.ok()??;
    let rules = r.data["spec"]["rules"].as_array()?;
    rules.last()?["backendRefs"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == format!("{svc}-v2").as_str())
        .map(|b| b["weight"].as_i64().unwrap_or(0))
}
