//! Rollout analysis against a real Prometheus scraping the controlled
//! metrics generator: healthy, failing, slow and quiet canaries get the
//! right verdict, for Istio's and Linkerd's metric names; an unreachable
//! Prometheus is inconclusive. Needs the test environment.

use std::time::Duration;

use meshplan_compiler::check_sources;
use meshplan_compiler::metrics::Flavor;
use meshplan_compiler::rollout::{subjects, Subject};
use meshplan_policy_lang::cel::eval::Engine;
use meshplan_policy_lang::intent::rollout::Analysis;
use meshplan_policy_lang::parse::Sources;
use meshplan_reconciler::rollout::analysis::{analyse, Prometheus};
use meshplan_reconciler::rollout::Verdict;
use meshplan_testenv::{unique_name, wait_for, TestEnv, Workload};

fn service(name: &str, flavor: Flavor) -> Subject {
    let intent = format!(
        "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: {name}, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: {name}, version: v2 }} }}\n  rollout: {{ stable: v1, canary: v2, steps: [{{ weight: 10 }}, {{ gate: manual }}, {{ weight: 100 }}] }}\n"
    );
    let (repo, report) = check_sources(&Sources {
        files: vec![("s.yaml".into(), intent)],
    });
    assert!(report.passes(false), "{:?}", report.diagnostics);
    subjects(&repo)
        .unwrap()
        .remove(0)
        .with_metrics(flavor.into())
}

const ANALYSIS: &str = "interval: 5s\nminRequestVolume: 40\nsuccessRate: { min: 99 }\nlatency: { percentile: 99, max: 500ms }\nmetrics:\n  - name: error-ratio\n    query: 'sum(rate(istio_requests_total{destination_service_name=\"{{service}}\",destination_version=\"{{version}}\",response_code=~\"5..\"}[{{interval}}])) / sum(rate(istio_requests_total{destination_service_name=\"{{service}}\",destination_version=\"{{version}}\"}[{{interval}}]))'\n    successCondition: result <= 0.01\n";

#[tokio::test]
async fn canaries_get_the_verdict_their_metrics_deserve() {
    let env = TestEnv::get();
    let (healthy, failing, slow, quiet) = (
        unique_name("healthy"),
        unique_name("failing"),
        unique_name("slow"),
        unique_name("quiet"),
    );
    env.metrics()
        .set(&[
            Workload::new(&healthy, "shop", "v2")
                .rps(40.0)
                .error_rate(0.0)
                .latency_ms(20.0),
            Workload::new(&failing, "shop", "v2")
                .rps(40.0)
                .error_rate(0.2)
                .latency_ms(20.0),
            Workload::new(&slow, "shop", "v2")
                .rps(40.0)
                .error_rate(0.0)
                .latency_ms(20.0)
                .tail(0.05, 2000.0),
            Workload::new(&quiet, "shop", "v2")
                .rps(0.5)
                .error_rate(0.0)
                .latency_ms(20.0),
        ])
        .unwrap();
    let prom = Prometheus::plain(&env.prometheus_url);
    let engine = Engine::new();
    let analysis: Analysis = serde_saphyr::from_str(ANALYSIS).unwrap();
    for flavor in [Flavor::Istio, Flavor::Linkerd] {
        // The custom metric is written with Istio's names: on Linkerd only
        // the built-in checks run.
        let mut a = analysis.clone();
        if flavor == Flavor::Linkerd {
            a.metrics.clear();
        }
        let verdict =
            |name: &str| analyse(&prom, &engine, &service(name, flavor), "v2", None, &a).verdict;
        wait_for(
            &format!("{flavor:?}: the healthy canary to pass"),
            Duration::from_secs(40),
            || {
                let v = verdict(&healthy);
                async move { (v == Verdict::Pass).then_some(()) }
            },
        )
        .await;
        let v = verdict(&failing);
        let Verdict::Fail(why) = &v else {
            panic!("{flavor:?} failing canary: {v:?}")
        };
        assert!(why.contains("success rate"), "{why}");
        if flavor == Flavor::Istio {
            assert!(why.contains("error-ratio"), "{why}");
        }
        let v = verdict(&slow);
        let Verdict::Fail(why) = &v else {
            panic!("{flavor:?} slow canary: {v:?}")
        };
        assert!(
            why.contains("p99 latency") && !why.contains("success rate"),
            "{why}"
        );
        let v = verdict(&quiet);
        assert!(
            matches!(&v, Verdict::Inconclusive(w) if w.contains("(minimum 40)")),
            "{flavor:?} quiet canary: {v:?}"
        );
    }
    // Prometheus gone: inconclusive, never a pass.
    let gone = Prometheus::plain("http://127.0.0.1:9");
    let v = analyse(
        &gone,
        &engine,
        &service(&healthy, Flavor::Istio),
        "v2",
        None,
        &analysis,
    )
    .verdict;
    assert!(
        matches!(&v, Verdict::Inconclusive(w) if w.contains("127.0.0.1:9")),
        "{v:?}"
    );
}
