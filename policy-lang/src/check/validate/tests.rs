//! Validation of rollout options and meshplan.yaml settings.

use crate::check::check_sources;
use crate::parse::Sources;

/// `code message` of what check finds in `text` as file `name` (only the
/// errors with `errors_only`).
fn found(name: &str, text: String, errors_only: bool) -> Vec<String> {
    let (_, report) = check_sources(&Sources {
        files: vec![(name.into(), text)],
    });
    report
        .diagnostics
        .iter()
        .filter(|d| !errors_only || d.is_error())
        .map(|d| format!("{} {}", d.code, d.message))
        .collect()
}

fn diagnostics(rollout_gate: &str) -> Vec<String> {
    let intent = format!(
        "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: web }}\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: web, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: web, version: v2 }} }}\n  slos:\n    - {{ name: up, objective: 99.9, sli: {{ availability: {{}} }} }}\n  rollout:\n    stable: v1\n    canary: v2\n    steps: [{{ weight: 50 }}, {{ weight: 100 }}]\n    analysis:\n      sloGate: {rollout_gate}\n"
    );
    found("web.yaml", intent, false)
}

#[test]
fn slo_gate_options_are_checked() {
    for ok in [
        "true",
        "[up]",
        "{ onBurn: fail }",
        "{ slos: [up], onBurn: hold, windows: { long: 1h, short: 5m } }",
    ] {
        let d = diagnostics(ok);
        assert!(
            d.iter().all(|d| !d.starts_with("MP1")
                && !d.starts_with("MP2002")
                && !d.starts_with("MP2005")),
            "{ok}: {d:?}"
        );
    }
    let d = diagnostics("{ slos: [down] }");
    assert!(
        d.iter().any(|d| d.contains("SLO `down` is not defined")),
        "{d:?}"
    );
    let d = diagnostics("{ windows: { long: 5m, short: 1h } }");
    assert!(
        d.iter().any(|d| d.contains("short window must be shorter")),
        "{d:?}"
    );
    let d = diagnostics("{ onBurn: explode }");
    assert!(!d.is_empty(), "an unknown onBurn is refused");
}

/// The diagnostics of a meshplan.yaml whose `metrics` is `metrics`.
fn config_diagnostics(metrics: &str) -> Vec<String> {
    let config = format!("apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [linkerd]\nmetrics: {metrics}\n");
    found("meshplan.yaml", config, false)
}

#[test]
fn a_metrics_workload_names_a_label_and_each_version() {
    let ok =
        "{ url: http://p, workload: { label: deployment, name: \"{{service}}-{{version}}\" } }";
    assert!(
        config_diagnostics(ok).is_empty(),
        "{:?}",
        config_diagnostics(ok)
    );
    let d = config_diagnostics(
        "{ url: http://p, workload: { label: k8s.io/app, name: \"{{version}}\" } }",
    );
    assert!(
        d.iter()
            .any(|d| d.contains("`k8s.io/app` is not a Prometheus label name")),
        "{d:?}"
    );
    let d = config_diagnostics(
        "{ url: http://p, workload: { label: deployment, name: '{{version}}\"}' } }",
    );
    assert!(
        d.iter()
            .any(|d| d.contains("cannot be in a workload's name")),
        "{d:?}"
    );
    let d = config_diagnostics(
        "{ url: http://p, workload: { label: deployment, name: \"{{service}}\" } }",
    );
    assert!(
        d.iter().any(|d| d.contains("must contain `{{version}}`")),
        "{d:?}"
    );
}

#[test]
fn a_preview_names_its_requests_and_has_no_place_beside_an_ab_test() {
    let intent = |rollout: &str| {
        format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: web }}\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: web, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: web, version: v2 }} }}\n  rollout:\n    stable: v1\n    canary: v2\n    steps: [{{ gate: manual }}, {{ weight: 100 }}]\n{rollout}")
    };
    let codes = |rollout: &str| found("web.yaml", intent(rollout), true);
    let ok = "    strategy: blueGreen\n    preview: { match: [{ headers: { x-preview: { exact: \"true\" } } }] }\n";
    assert!(codes(ok).is_empty(), "{:?}", codes(ok));
    let d = codes("    strategy: blueGreen\n    preview: { match: [] }\n");
    assert!(
        d.iter().any(|d| d.contains("a preview needs a `match`")),
        "{d:?}"
    );
    let d = codes("    strategy: abTest\n    abTest: { match: [{ headers: { x-t: { exact: a } } }], iterations: 1 }\n    preview: { match: [{ headers: { x-preview: { exact: \"true\" } } }] }\n");
    assert!(d.iter().any(|d| d.contains("no place beside it")), "{d:?}");
}

#[test]
fn sticky_canaries_are_for_shifting_weights_with_a_cookie_browsers_keep() {
    let intent = |ports: &str, rollout: &str| {
        format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: web }}\nspec:\n  ports: [{ports}]\n  versions:\n    - {{ name: v1, labels: {{ app: web, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: web, version: v2 }} }}\n  rollout:\n    stable: v1\n    canary: v2\n    steps: [{{ weight: 10 }}, {{ gate: manual }}, {{ weight: 100 }}]\n{rollout}")
    };
    let http = "{ name: http, port: 80, protocol: http }";
    let codes = |ports: &str, rollout: &str| -> Vec<String> {
        let (_, report) = check_sources(&Sources {
            files: vec![("web.yaml".into(), intent(ports, rollout))],
        });
        report
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("{} {}", d.code, d.message))
            .collect()
    };
    for ok in [
        "    sessionAffinity: {}\n",
        "    sessionAffinity: { cookieName: \"canary_web.1\", maxAge: 400d }\n",
        "    strategy: mirror\n    mirror: { percentage: 10, iterations: 1 }\n    sessionAffinity: { maxAge: 1s }\n",
    ] {
        assert!(codes(http, ok).is_empty(), "{ok}: {:?}", codes(http, ok));
    }
    let has = |ports: &str, rollout: &str, code: &str, text: &str| {
        let d = codes(ports, rollout);
        assert!(
            d.iter().any(|d| d.starts_with(code) && d.contains(text)),
            "{rollout}: {d:?}"
        );
    };
    has(
        http,
        "    strategy: blueGreen\n    sessionAffinity: {}\n",
        "MP2005",
        "switches all traffic at once",
    );
    has(http, "    strategy: abTest\n    abTest: { match: [{ headers: { x: { exact: a } } }], iterations: 1 }\n    sessionAffinity: {}\n", "MP2005", "no place beside it");
    has(
        "{ name: db, port: 5432, protocol: tcp }",
        "    sessionAffinity: {}\n",
        "MP2005",
        "only has tcp ports",
    );
    for bad in [
        "a b",
        "a=b",
        "a;b",
        "\"q\"",
        "",
        "a%b",
        "__Host-c",
        "__secure-c",
    ] {
        has(
            http,
            &format!("    sessionAffinity: {{ cookieName: '{bad}' }}\n"),
            "MP1006",
            "is not a cookie name",
        );
    }
    has(
        http,
        &format!(
            "    sessionAffinity: {{ cookieName: {} }}\n",
            "c".repeat(65)
        ),
        "MP1006",
        "is not a cookie name",
    );
    for bad in ["500ms", "401d"] {
        has(
            http,
            &format!("    sessionAffinity: {{ maxAge: {bad} }}\n"),
            "MP2004",
            "from 1s to 400d",
        );
    }
}
