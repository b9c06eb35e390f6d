//! The rollout analysis queries the compiler derives read the right series
//! from a real Prometheus: the generator simulates a failing canary beside a
//! healthy stable version, and the queries tell them apart, for every
//! flavour's metric names (Linkerd's and Consul's by the pods' labels, and
//! by a configured workload name). Needs the test environment.

use std::time::Duration;

use meshplan_compiler::check_sources;
use meshplan_compiler::metrics::{Flavor, Vocabulary};
use meshplan_compiler::rollout::{subjects, Subject};
use meshplan_policy_lang::intent::config::MetricsWorkload;
use meshplan_policy_lang::parse::Sources;
use meshplan_testenv::{unique_name, wait_for, TestEnv, Workload};

fn service(name: &str) -> Subject {
    let intent = format!(
        "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: {name}, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: {name}, version: v2 }} }}\n  rollout: {{ stable: v1, canary: v2, steps: [{{ weight: 10 }}, {{ gate: manual }}, {{ weight: 100 }}] }}\n"
    );
    let (repo, report) = check_sources(&Sources {
        files: vec![("s.yaml".into(), intent)],
    });
    assert!(report.passes(false), "{:?}", report.diagnostics);
    subjects(&repo).unwrap().remove(0)
}

#[tokio::test]
async fn analysis_queries_tell_a_failing_canary_from_a_healthy_stable() {
    let env = TestEnv::get();
    let prom = env.prometheus();
    let name = unique_name("shop");
    let s = service(&name);
    env.metrics()
        .set(&[
            Workload::new(&name, "shop", "v1")
                .rps(100.0)
                .error_rate(0.0)
                .latency_ms(20.0),
            Workload::new(&name, "shop", "v2")
                .rps(50.0)
                .error_rate(0.2)
                .latency_ms(20.0)
                .tail(0.05, 2000.0),
        ])
        .unwrap();
    let deployments = MetricsWorkload {
        label: "deployment".into(),
        name: "{{service}}-{{version}}".into(),
    };
    for flavor in [
        Flavor::Istio.into(),
        Flavor::Linkerd.into(),
        Vocabulary::new(Flavor::Linkerd, Some(deployments)),
        Flavor::Consul.into(),
        Flavor::Hubble.into(),
    ] {
        let s = s.clone().with_metrics(flavor.clone());
        let stable = s.analysis_queries("v1", "5s", 99);
        let canary = s.analysis_queries("v2", "5s", 99);
        let value = |q: &str| prom.query(q).unwrap().first().map(|s| s.value);
        wait_for(
            &format!("{flavor:?} success rates"),
            Duration::from_secs(30),
            || {
                let ok = value(&stable.success_rate).is_some_and(|v| v > 99.9)
                    && value(&canary.success_rate).is_some_and(|v| (v - 80.0).abs() < 2.0);
                async move { ok.then_some(()) }
            },
        )
        .await;
        let vol = value(&canary.request_volume).unwrap();
        // 50 rps over a 5 s window: up to 250 requests.
        assert!(vol > 50.0 && vol < 300.0, "{flavor:?} canary volume {vol}");
        let p99 = value(&canary.latency).unwrap();
        assert!(
            p99 > 1000.0,
            "{flavor:?} canary p99 {p99} should show the slow tail"
        );
        let p99 = value(&stable.latency).unwrap();
        assert!(p99 <= 25.0, "{flavor:?} stable p99 {p99}");
    }
}
