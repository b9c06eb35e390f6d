//! `meshplan rollout simulate` against the real Prometheus, over history
//! backfilled with promtool where the right answer is known: a canary that
//! turns bad five hours in survives a rollout that ends before, and is
//! rolled back by one that is still at 50 % then. Needs the test
//! environment.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::meshplan;
use meshplan_testenv::{unique_name, wait_for, TestEnv};
use serde_json::Value;

const MIN: u64 = 60;
const HOUR: u64 = 3600;

/// Istio's counters of versions v1 and v2 of `name`, one sample every
/// 15 s from `start` to `end`: 10 requests a second each, and from `bad`
/// on 10 % of v2's answer 500.
fn history(name: &str, start: u64, end: u64, bad: u64) -> String {
    let mut out = String::new();
    for (version, code) in [("v1", "200"), ("v2", "200"), ("v2", "500")] {
        let labels = format!("reporter=\"destination\",destination_service_name=\"{name}\",destination_service_namespace=\"shop\",destination_version=\"{version}\",response_code=\"{code}\"");
        let mut total = 0.0;
        let mut t = start;
        while t <= end {
            let _ = writeln!(out, "istio_requests_total{{{labels}}} {total} {t}");
            let rate = match (version, code, t >= bad) {
                ("v2", "500", true) => 1.0,
                ("v2", "500", false) => 0.0,
                ("v2", _, true) => 9.0,
                _ => 10.0,
            };
            total += rate * 15.0;
            t += 15;
        }
    }
    out.push_str("# EOF\n");
    out
}

fn repo(dir: &std::path::Path, name: &str, prometheus: &str) {
    std::fs::write(
        dir.join("meshplan.yaml"),
        format!("apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\ndefaultNamespace: shop\nmetrics: {{ url: \"{prometheus}\" }}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("svc.yaml"),
        format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: {name} }}\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: {name}, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: {name}, version: v2 }} }}\n  rollout:\n    stable: v1\n    canary: v2\n    steps: [{{ weight: 10, pause: 2h }}, {{ weight: 50, pause: 2h }}, {{ weight: 100 }}]\n    analysis:\n      interval: 1m\n      minRequestVolume: 100\n      successRate: {{ min: 99 }}\n      failureLimit: 3\n"),
    )
    .unwrap();
}

fn simulate(dir: &std::path::Path, name: &str, from: u64, to: u64) -> (Option<i32>, Value) {
    let out = meshplan(&[
        "rollout",
        "simulate",
        name,
        "--repo",
        dir.to_str().unwrap(),
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
        "--format",
        "json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

/// The minute after `from` at which the rollout moved to `phase`.
fn moved(v: &Value, phase: &str, from: u64) -> Option<u64> {
    v["events"].as_array()?.iter().find_map(|e| {
        let t = e["time"].as_u64()?;
        (e["kind"] == "transition" && e["to"].as_str()?.starts_with(phase))
            .then(|| (t - from) / MIN)
    })
}

#[tokio::test]
async fn a_rollout_replayed_over_history_survives_or_fails_as_the_history_says() {
    let env = TestEnv::get();
    let name = unique_name("sim");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Twelve hours ago, on a minute; the canary turns bad 5 h after h0.
    let start = (now - 12 * HOUR) / MIN * MIN;
    let h0 = start + 10 * MIN;
    let bad = h0 + 5 * HOUR;
    let end = h0 + 8 * HOUR;
    env.backfill(&history(&name, start, end, bad)).unwrap();
    let prom = env.prometheus();
    let probe = format!("sum(istio_requests_total{{destination_service_name=\"{name}\"}})");
    wait_for(
        "Prometheus to load the backfilled blocks",
        Duration::from_secs(150),
        || {
            let loaded = prom
                .query_at(&probe, h0 + HOUR)
                .is_ok_and(|s| !s.is_empty());
            async move { loaded.then_some(()) }
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path(), &name, &env.prometheus_url);

    // From h0: 10 % for 2 h, 50 % for 2 h, 100 % at 4 h 1 m — before the
    // canary turns bad.
    let (code, v) = simulate(dir.path(), &name, h0, h0 + 6 * HOUR);
    assert_eq!(v["outcome"], "Succeeded", "{v:#}");
    assert_eq!(code, Some(0));
    assert_eq!(moved(&v, "Progressing@step 1", h0), Some(120), "{v:#}");
    assert_eq!(moved(&v, "Progressing@step 2", h0), Some(240), "{v:#}");
    assert!(matches!(moved(&v, "Succeeded", h0), Some(241)), "{v:#}");
    let requests = v["requests"].as_u64().unwrap();
    assert!(requests <= 6, "one range request per query: {v:#}");

    // From h0 + 2 h: still at 50 % when the canary turns bad (3 h in):
    // three failed analyses, then rolled back.
    let from = h0 + 2 * HOUR;
    let (code, v) = simulate(dir.path(), &name, from, from + 6 * HOUR);
    assert_eq!(v["outcome"], "Failed", "{v:#}");
    assert_eq!(code, Some(1));
    let back = moved(&v, "RollingBack", from).expect("rolled back");
    // Bad from minute 180: the analyses of minutes 181, 182 and 183 fail.
    assert_eq!(back, 183, "{v:#}");
    let fails = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "analyses" && e["verdict"] == "fail")
        .expect("failed analyses");
    assert_eq!(fails["count"], 3, "{v:#}");
    assert!(
        fails["detail"].as_str().unwrap().contains("success rate"),
        "{fails}"
    );
    assert!(
        v["queries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q.as_str().unwrap().contains(&name)),
        "{v:#}"
    );
}

#[test]
fn simulate_explains_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path(), "web", "http://127.0.0.1:9");
    let run = |service: &str, from: &str| {
        let repo = dir.path().to_str().unwrap();
        meshplan(&[
            "rollout", "simulate", service, "--repo", repo, "--from", from,
        ])
    };
    let out = run("nope", "now-1h");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no service `nope`") && err.contains("shop/web"),
        "{err}"
    );
    let out = run("web", "yesterday");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a time"), "{err}");
    // Prometheus down: every analysis inconclusive, the rollout never
    // advances (paused after five), exit 0 (it did not fail), and the text
    // says why.
    let out = run("web", "now-10m");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("inconclusive ×")
            && text.contains("result: Paused (canary at 10%)")
            && text.contains("Connection refused"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(0));
}
