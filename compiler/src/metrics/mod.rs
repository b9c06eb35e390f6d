//! Each mesh's metric vocabulary, in one place: what its standard request
//! metrics and latency histogram are called, the histogram's default
//! bucket bounds, how a version's requests are told apart ([`Vocabulary`]),
//! an SLI as PromQL and the SLO alerts' burn rates ([`sli`]), and the
//! queries the rollout engine evaluates ([`analysis`]).
//!
//! Three readers share it, so they cannot disagree: the SLO recording
//! rules and alerts (`emit::prometheus`), the rollout engine's analysis and
//! SLO gate (through [`crate::rollout::Subject`]), and `check`'s warning
//! about a latency threshold no bucket bound matches ([`findings`],
//! MP2011).

use meshplan_policy_lang::diagnostic::{Code, Diagnostic, Severity};
use meshplan_policy_lang::intent::config::MetricsFlavor;
use meshplan_policy_lang::intent::Target;
use meshplan_policy_lang::parse::Repository;
use meshplan_policy_lang::yaml::Path;

use crate::object::json_str;

pub(crate) mod analysis;
mod sli;
mod vocabulary;

pub use analysis::AnalysisQueries;
pub(crate) use sli::{burn_factor, ErrorRatio, PAGE, TICKET};
pub use sli::{page_burn_rate, PAGE_WINDOWS};
pub use vocabulary::{Flavor, Vocabulary};

/// gRPC statuses a server fails with (`grpc_response_status`).
pub(crate) const GRPC_SERVER_ERRORS: &str = "2|4|12|13|14|15";

/// Istio's default `istio_request_duration_milliseconds` buckets (Envoy's
/// own defaults, so Consul's sidecars have them too).
const ENVOY_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Linkerd's `response_latency_ms` buckets.
const LINKERD_BUCKETS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

/// Hubble's `hubble_http_request_duration_seconds` buckets (client_golang's
/// defaults), in milliseconds.
const HUBBLE_BUCKETS_MS: [f64; 11] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

impl Flavor {
    /// The flavour of the metrics `target`'s data plane writes, if it
    /// writes request metrics.
    pub fn of_target(target: Target) -> Option<Flavor> {
        MetricsFlavor::of_target(target).map(Flavor::from)
    }

    /// The default bucket bounds of the latency histogram, in
    /// milliseconds.
    pub fn default_buckets_ms(self) -> &'static [f64] {
        match self {
            Flavor::Istio | Flavor::Consul => &ENVOY_BUCKETS_MS,
            Flavor::Linkerd => &LINKERD_BUCKETS_MS,
            Flavor::Hubble => &HUBBLE_BUCKETS_MS,
        }
    }
}

/// What the targets' metrics make of the repository's SLOs, as `check`
/// warnings: MP2011, a latency threshold that is no bucket bound of a
/// target's histogram (its `le` series does not exist, so the SLO never
/// evaluates).
pub fn findings(repo: &Repository) -> Vec<Diagnostic> {
    let targets: &[Target] = repo
        .config
        .as_ref()
        .map_or(&[], |c| c.value.targets.as_slice());
    let flavors: Vec<Flavor> = [
        Flavor::Istio,
        Flavor::Linkerd,
        Flavor::Consul,
        Flavor::Hubble,
    ]
    .into_iter()
    .filter(|f| targets.iter().any(|t| Flavor::of_target(*t) == Some(*f)))
    .collect();
    let mut out = Vec::new();
    for s in &repo.services {
        for (i, slo) in s.value.spec.slos.iter().enumerate() {
            let Some(l) = &slo.sli.latency else { continue };
            let ms = l.threshold.as_millis();
            for f in &flavors {
                let buckets = f.default_buckets_ms();
                let bound = ms as f64;
                if buckets.contains(&bound) {
                    continue;
                }
                let below = buckets.iter().rev().find(|b| **b < bound);
                let above = buckets.iter().find(|b| **b > bound);
                let near: Vec<String> = below
                    .into_iter()
                    .chain(above)
                    .map(|b| format!("{b}ms"))
                    .collect();
                out.push(
                    Diagnostic::new(
                        Code::NotABucket.as_str(),
                        Severity::Warning,
                        format!("{ms}ms is not a bucket bound of `{}` (with the mesh's default buckets): the SLI's `le=\"{ms}\"` series does not exist, so the SLO never evaluates", f.buckets()),
                    )
                    .at(s.locate(&Path::parse(&format!("spec.slos[{i}].sli.latency.threshold"))))
                    .hint(format!("use a bucket bound ({}), or configure the mesh's histogram with this bound", near.join(" or "))),
                );
            }
        }
    }
    out
}

/// `s` as it stands inside a JSON string (without the quotes around it).
pub(crate) fn escaped(s: &str) -> String {
    let quoted = json_str(s);
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_owned()
}

/// Shortest decimal that round-trips, without float noise (`0.0144`).
pub(crate) fn fmt_f64(v: f64) -> String {
    let s = format!("{:.10}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use meshplan_policy_lang::intent::slo::Sli;
    use meshplan_policy_lang::intent::Slo;
    use serde_json::json;

    use super::analysis::{analysis_queries, version_error_ratio};
    use super::*;
    use crate::ir::Service;
    use crate::testing::lowered;

    /// The query `ratio` makes over 5m, read back from its JSON string.
    fn query(ratio: &ErrorRatio, sel: &str) -> String {
        serde_json::from_str(&ratio.over(&escaped(sel), "5m")).unwrap()
    }

    /// Service `web` in `shop`, with one port of `protocol` and versions
    /// `v1` and `v2` (the latter labelled `v2_label: v2`), lowered.
    fn web(protocol: &str, v2_label: &str) -> Service {
        lowered(&format!("ports: [{{ name: {protocol}, port: 80, protocol: {protocol} }}]\n  versions:\n    - {{ name: v1, labels: {{ app: web, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: web, {v2_label}: v2 }} }}\n"))
    }

    /// Consul's and Hubble's analysis: their own metrics, their own ways of
    /// finding a version, Hubble's seconds turned into milliseconds.
    #[test]
    fn consul_and_hubble_queries_use_their_own_vocabulary() {
        let s = web("http", "app.kubernetes.io/version");
        let q = analysis_queries(&Flavor::Consul.into(), &s, "v2", "1m", 99);
        assert_eq!(
            q.request_volume,
            "sum(increase(envoy_cluster_upstream_rq{envoy_cluster_name=\"local_app\",local_cluster=\"web\",namespace=\"shop\",app=\"web\",app_kubernetes_io_version=\"v2\"}[1m]))"
        );
        assert!(
            q.success_rate.contains("envoy_response_code=~\"5..\""),
            "{}",
            q.success_rate
        );
        assert!(
            q.latency.starts_with(
                "histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{"
            ),
            "{}",
            q.latency
        );
        let q = analysis_queries(&Flavor::Hubble.into(), &s, "v2", "1m", 95);
        assert_eq!(
            q.request_volume,
            "sum(increase(hubble_http_requests_total{reporter=\"server\",destination_namespace=\"shop\",destination_workload=\"web-v2\"}[1m]))"
        );
        assert!(
            q.success_rate.contains("status=~\"5..\""),
            "{}",
            q.success_rate
        );
        assert!(q.latency.starts_with("1000 * histogram_quantile(0.95, sum by (le) (rate(hubble_http_request_duration_seconds_bucket{"), "{}", q.latency);
        // A latency SLO's bucket in Hubble's unit.
        let slo: Slo = serde_json::from_value(json!({
            "name": "fast", "objective": 99.0,
            "sli": {"latency": {"threshold": "250ms"}}
        }))
        .unwrap();
        let q = version_error_ratio(&Flavor::Hubble.into(), &s, &slo, "v2", "5m").unwrap();
        assert!(q.contains("le=\"0.25\""), "{q}");
        let q = version_error_ratio(&Flavor::Consul.into(), &s, &slo, "v2", "5m").unwrap();
        assert!(q.contains("le=\"250\""), "{q}");
    }

    /// The SLO gate measures the canary with the alert's own SLI: error
    /// codes and gRPC statuses included, the canary's selector.
    #[test]
    fn a_version_error_ratio_is_the_recording_rules_sli_for_that_version() {
        let slo: Slo = serde_json::from_value(json!({
            "name": "avail", "objective": 99.9,
            "sli": {"availability": {"errorCodes": ["429"]}}
        }))
        .unwrap();
        let s = web("grpc", "version");
        let q = version_error_ratio(&Flavor::Istio.into(), &s, &slo, "v2", "1h").unwrap();
        assert!(q.contains("destination_version=\"v2\""), "{q}");
        assert!(q.contains("response_code=~\"5..|429\""), "{q}");
        assert!(
            q.contains("grpc_response_status=~\"2|4|12|13|14|15\""),
            "{q}"
        );
        assert!(q.contains("[1h]"), "{q}");
        let custom: Slo = serde_json::from_value(json!({
            "name": "c", "objective": 99.0,
            "sli": {"custom": {
                "goodQuery": "sum(rate(ok{version=\"{{version}}\"}[{{window}}]))",
                "totalQuery": "sum(rate(all{svc=\"{{service}}\"}[{{window}}]))"
            }}
        }))
        .unwrap();
        let q = version_error_ratio(&Flavor::Istio.into(), &s, &custom, "v2", "5m").unwrap();
        assert_eq!(
            q,
            "1 - ((sum(rate(ok{version=\"v2\"}[5m]))) / (sum(rate(all{svc=\"web\"}[5m]))))"
        );
        assert_eq!(page_burn_rate(&slo), 14.4);
    }

    #[test]
    fn queries_built_escaped_read_back_as_the_plain_promql() {
        let sel = r#"a="x",b=~"y\\d""#;
        let custom: Sli = serde_json::from_value(json!({"custom": {
            "goodQuery": r#"sum(rate(ok{r="\\"}[{{window}}]))"#,
            "totalQuery": "sum(rate(all[{{window}}]))",
        }}))
        .unwrap();
        let ratio = ErrorRatio::of(Flavor::Istio, &custom, false).unwrap();
        assert_eq!(
            query(&ratio, sel),
            r#"1 - ((sum(rate(ok{r="\\"}[5m]))) / (sum(rate(all[5m]))))"#
        );
        let latency: Sli =
            serde_json::from_value(json!({"latency": {"threshold": "250ms"}})).unwrap();
        let ratio = ErrorRatio::of(Flavor::Linkerd, &latency, false).unwrap();
        let m = "response_latency_ms_bucket";
        assert_eq!(
            query(&ratio, sel),
            format!(
                r#"1 - ((sum(rate({m}{{{sel},le="250"}}[5m]))) / (sum(rate({m}{{{sel},le="+Inf"}}[5m]))))"#
            )
        );
        let availability: Sli =
            serde_json::from_value(json!({"availability": {"errorCodes": ["429"]}})).unwrap();
        let ratio = ErrorRatio::of(Flavor::Istio, &availability, false).unwrap();
        let m = "istio_requests_total";
        assert_eq!(
            query(&ratio, sel),
            format!(
                r#"(sum(rate({m}{{{sel},response_code=~"5..|429"}}[5m]))) / (sum(rate({m}{{{sel}}}[5m])))"#
            )
        );
    }

    #[test]
    fn burn_rate_factors_are_the_budget_share_over_the_period() {
        let slo = |window: &str| -> Slo {
            serde_json::from_value(json!({"name": "a", "objective": 99.9, "window": window, "sli": {"availability": {}}}))
                .unwrap()
        };
        let f = |w: &str, hours: f64, share: f64| fmt_f64(burn_factor(&slo(w), hours, share));
        // Sloth's 30d and 28d catalogues; the SRE workbook's table 5-8.
        assert_eq!(
            [
                f("30d", 1.0, 0.02),
                f("30d", 6.0, 0.05),
                f("30d", 24.0, 0.1),
                f("30d", 72.0, 0.1)
            ],
            ["14.4", "6", "3", "1"]
        );
        assert_eq!(
            [
                f("28d", 1.0, 0.02),
                f("28d", 6.0, 0.05),
                f("28d", 24.0, 0.1)
            ],
            ["13.44", "5.6", "2.8"]
        );
        assert_eq!(f("7d", 1.0, 0.02), "3.36");
    }

    #[test]
    fn formats_thresholds_without_float_noise() {
        assert_eq!(fmt_f64(14.4 * (1.0 - 99.9 / 100.0)), "0.0144");
        assert_eq!(fmt_f64(0.99), "0.99");
        assert_eq!(fmt_f64(1.0), "1");
    }

    /// MP2011, through the check every command runs: a threshold between
    /// two of a target's bucket bounds is flagged with the bounds around
    /// it, once per target whose histogram lacks it, at the threshold.
    #[test]
    fn a_latency_threshold_between_buckets_is_flagged_per_mesh() {
        let warnings = |targets: &str, threshold: &str| -> Vec<String> {
            let config = format!("apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [{targets}]\ndefaultNamespace: shop\n");
            let intent = format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: web }}\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  slos:\n    - name: fast\n      objective: 99\n      sli: {{ latency: {{ threshold: {threshold} }} }}\n");
            let (_, report) = crate::check_sources(&meshplan_policy_lang::parse::Sources {
                files: vec![
                    ("meshplan.yaml".into(), config),
                    ("svc.yaml".into(), intent),
                ],
            });
            report
                .diagnostics
                .iter()
                .filter(|d| d.code == "MP2011")
                .map(|d| {
                    format!(
                        "{}:{} {} ({})",
                        d.location.as_ref().map_or(0, |l| l.span.start.line),
                        d.location.as_ref().map_or(0, |l| l.span.start.col),
                        d.message,
                        d.hint.as_deref().unwrap_or_default()
                    )
                })
                .collect()
        };
        let w = warnings("istio", "300ms");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "9:36 300ms is not a bucket bound of `istio_request_duration_milliseconds_bucket`"
            ),
            "{w:?}"
        );
        assert!(w[0].ends_with("(use a bucket bound (250ms or 500ms), or configure the mesh's histogram with this bound)"), "{w:?}");
        assert!(
            warnings("linkerd", "300ms").is_empty(),
            "300 is a Linkerd bucket"
        );
        assert!(
            warnings("gateway-api", "300ms").is_empty(),
            "no histogram of its own"
        );
        let both = warnings("linkerd, cilium, consul", "3s");
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(
            both[0].contains("`envoy_cluster_upstream_rq_time_bucket`"),
            "{both:?}"
        );
        assert!(
            both[1].contains("`hubble_http_request_duration_seconds_bucket`"),
            "{both:?}"
        );
        assert!(warnings("istio", "250ms").is_empty());
    }
}
