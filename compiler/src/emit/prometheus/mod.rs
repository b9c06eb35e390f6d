//! Prometheus: SLO recording rules and multi-window, multi-burn-rate
//! alerts (a `PrometheusRule` per service with SLOs), and the canary
//! analysis queries the rollout engine runs, both from the mesh's standard
//! metrics.
//!
//! Not a target of its own: the Istio, Linkerd, Consul and Cilium emitters
//! call it with their metric [`Flavor`] (Cilium's is Hubble) and the
//! repository's `metrics.workload` ([`Vocabulary`]). Object names carry the
//! flavor (`<name>-slos-istio`), so rendering two meshes at once does not
//! clash.
//!
//! For each SLO and window `W` in 5m, 30m, 1h, 2h, 6h, 1d, 3d, a recording
//! rule `meshplan:slo_error_ratio:rate<W>` (labels `namespace`, `service`,
//! `slo`). With the error budget `B = 1 − objective/100` and the SLO's
//! period `P` (its `window`, 30d by default), an alert fires when both
//! windows burn faster than `factor × B`, where `factor = share × P / long
//! window`: the rate that spends `share` of the budget in the long window
//! (the SRE workbook's "Alerting on SLOs", table 5-8, and Sloth's
//! `getBurnRateFactor`; Sloth's 30d and 28d window catalogues use these
//! shares and windows):
//!
//! | alert | long window | short window | budget share | factor at 30d | at 28d | at 7d |
//! |---|---|---|---|---|---|---|
//! | page | 1h | 5m | 2 % | 14.4 | 13.44 | 3.36 |
//! | page | 6h | 30m | 5 % | 6 | 5.6 | 1.4 |
//! | ticket | 1d | 2h | 10 % | 3 | 2.8 | 0.7 |
//! | ticket | 3d | 6h | 10 % | 1 | 0.93 | 0.23 |
//!
//! Availability counts HTTP 5xx (and the SLI's `errorCodes`) as errors;
//! on a service with a gRPC port, also the gRPC statuses a server fails
//! with (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
//! DATA_LOSS: the ones grpc-gateway maps to 5xx), which Istio reports in
//! `grpc_response_status` under HTTP 200. Linkerd classifies a response
//! (`classification="failure"`: 5xx or a non-OK gRPC status); extra
//! `errorCodes` are added to its failures, not substituted for them.

use meshplan_policy_lang::intent::slo::Sli;
use meshplan_policy_lang::intent::Slo;
use serde_json::{json, Value};

use meshplan_policy_lang::intent::Protocol;

mod vocabulary;
pub use vocabulary::{Flavor, Vocabulary};

use super::{gateway_duration, EmitError};
use crate::ir::Service;
use crate::object::{json_map, json_str, JsonText, MeshObject};

const API: &str = "monitoring.coreos.com/v1";
const WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];
/// (long window, short window, its length in hours, the share of the error
/// budget that burning that fast for the long window spends), per
/// severity.
const PAGE: [(&str, &str, f64, f64); 2] = [("1h", "5m", 1.0, 0.02), ("6h", "30m", 6.0, 0.05)];
const TICKET: [(&str, &str, f64, f64); 2] = [("1d", "2h", 24.0, 0.10), ("3d", "6h", 72.0, 0.10)];
/// gRPC statuses a server fails with (`grpc_response_status`).
pub(super) const GRPC_SERVER_ERRORS: &str = "2|4|12|13|14|15";

/// An SLI's error ratio (bad / all events), for any window: what does not
/// depend on the window is worked out once per SLO, since every SLO has a
/// rule per window and 10,000 services make 140,000 of them.
///
/// The PromQL is built as it stands inside a JSON string (`"` as `\"`):
/// escaping is the same character by character, so its parts are escaped
/// once each instead of every query whole (PromQL is full of quotes, and
/// escaping it was 3 % of a large render).
enum ErrorRatio {
    /// `(bad) / (all)`: requests matching any of `bad` (extra matchers,
    /// each a disjoint set of series) of all.
    Requests {
        metric: &'static str,
        bad: Vec<String>,
    },
    /// `1 - ((good) / (all))`: requests in the `le` bucket of all.
    Latency { metric: &'static str, le: String },
    /// `1 - ((good) / (total))`, `{{window}}` replaced.
    Custom { good: String, total: String },
}

impl ErrorRatio {
    fn of(flavor: Flavor, sli: &Sli, grpc: bool) -> Option<Self> {
        if let Some(a) = &sli.availability {
            return Some(ErrorRatio::Requests {
                metric: flavor.requests(),
                bad: flavor
                    .errors(&a.error_codes, grpc)
                    .iter()
                    .map(|e| escaped(e))
                    .collect(),
            });
        }
        if let Some(l) = &sli.latency {
            return Some(ErrorRatio::Latency {
                metric: flavor.buckets(),
                le: flavor.le(l.threshold.as_millis()),
            });
        }
        let c = sli.custom.as_ref()?;
        // `{{window}}` has nothing to escape: replacing it in the escaped
        // text is replacing it in the query.
        Some(ErrorRatio::Custom {
            good: escaped(&c.good_query),
            total: escaped(&c.total_query),
        })
    }

    /// The ratio over `window` as a JSON string (quotes included), `sel`
    /// (escaped) selecting the service's traffic.
    fn over(&self, sel: &str, window: &str) -> String {
        // `sum(rate(<metric>{<sel><extra>}[<window>]))`
        let sum_rate = |out: &mut String, metric: &str, extra: &[&str]| {
            out.push_str("sum(rate(");
            out.push_str(metric);
            out.push('{');
            out.push_str(sel);
            extra.iter().for_each(|e| out.push_str(e));
            out.push_str("}[");
            out.push_str(window);
            out.push_str("]))");
        };
        let mut out = String::with_capacity(2 * sel.len() + 128);
        out.push('"');
        match self {
            ErrorRatio::Requests { metric, bad } => {
                out.push('(');
                if let [one] = bad.as_slice() {
                    sum_rate(&mut out, metric, &[one]);
                } else {
                    // Each part may have no series at all.
                    for (i, b) in bad.iter().enumerate() {
                        if i > 0 {
                            out.push_str(" + ");
                        }
                        out.push('(');
                        sum_rate(&mut out, metric, &[b]);
                        out.push_str(" or vector(0))");
                    }
                }
                out.push_str(") / (");
                sum_rate(&mut out, metric, &[]);
                out.push(')');
            }
            ErrorRatio::Latency { metric, le } => {
                out.push_str("1 - ((");
                sum_rate(&mut out, metric, &[",le=\\\"", le, "\\\""]);
                out.push_str(") / (");
                sum_rate(&mut out, metric, &[",le=\\\"+Inf\\\""]);
                out.push_str("))");
            }
            ErrorRatio::Custom { good, total } => {
                out.push_str("1 - ((");
                out.push_str(&good.replace("{{window}}", window));
                out.push_str(") / (");
                out.push_str(&total.replace("{{window}}", window));
                out.push_str("))");
            }
        }
        out.push('"');
        out
    }
}

fn record_name(window: &str) -> String {
    format!("meshplan:slo_error_ratio:rate{window}")
}

fn sel_of(s: &Service, slo: &Slo) -> String {
    format!(
        "namespace=\"{}\",service=\"{}\",slo=\"{}\"",
        s.namespace, s.host, slo.name
    )
}

/// `s` as it stands inside a JSON string (without the quotes around it).
fn escaped(s: &str) -> String {
    let quoted = json_str(s);
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_owned()
}

/// The burn-rate condition over `windows`, as a JSON string (see
/// [`ErrorRatio`]).
fn alert_expr(s: &Service, slo: &Slo, windows: &[(&str, &str, f64, f64)]) -> String {
    let budget = 1.0 - slo.objective / 100.0;
    let sel = escaped(&sel_of(s, slo));
    let conditions = windows
        .iter()
        .map(|(long, short, hours, share)| {
            let threshold = fmt_f64(burn_factor(slo, *hours, *share) * budget);
            format!(
                "({long_rec}{{{sel}}} > {threshold} and {short_rec}{{{sel}}} > {threshold})",
                long_rec = record_name(long),
                short_rec = record_name(short)
            )
        })
        .collect::<Vec<_>>()
        .join(" or ");
    format!("\"{conditions}\"")
}

/// The burn rate that spends `share` of the error budget of `slo`'s period
/// in `hours` (14.4 for 2 % in 1 h of 30 days).
fn burn_factor(slo: &Slo, hours: f64, share: f64) -> f64 {
    let period_hours = slo.window.map_or(30.0 * 24.0, |w| w.as_secs_f64() / 3600.0);
    share * period_hours / hours
}

/// A period as people write it: `30d`, not `720h`.
fn days(d: meshplan_policy_lang::intent::Duration) -> String {
    match d.as_millis() {
        ms if ms > 0 && ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        _ => gateway_duration(d),
    }
}

/// Shortest decimal that round-trips, without float noise (`0.0144`).
pub(super) fn fmt_f64(v: f64) -> String {
    let s = format!("{:.10}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// The PrometheusRule of a service's SLOs, if it has any.
pub fn slo_rules(
    emitter: &'static str,
    vocab: &Vocabulary,
    s: &Service,
    errors: &mut Vec<EmitError>,
) -> Option<MeshObject> {
    if s.slos.is_empty() {
        return None;
    }
    // Written as text, body and canonical side by side, without a tree:
    // this object is a third of a large render's bytes. Keys: a group's
    // `name`, `rules`; a recording rule's `record`, `expr`, `labels`; an
    // alert's `alert`, `expr`, `labels`, `annotations` (sorted for the
    // canonical text).
    // An SLO's group is 2–3 KB of JSON: room for it up front, rather than
    // growing both texts a dozen times.
    let mut spec = JsonText::with_capacity(3072 * s.slos.len());
    spec.both(br#"{"groups":["#);
    let sel = escaped(&vocab.selector(s, None));
    for (i, slo) in s.slos.iter().enumerate() {
        if i > 0 {
            spec.both(b",");
        }
        spec.both(br#"{"name":"#);
        spec.string(&format!("meshplan-{}-{}-{}", s.namespace, s.name, slo.name));
        spec.both(br#","rules":["#);
        let mut rules = 0;
        let mut next_rule = |spec: &mut JsonText| {
            if rules > 0 {
                spec.both(b",");
            }
            rules += 1;
        };
        let grpc = s.ports.iter().any(|p| p.protocol == Protocol::Grpc);
        match ErrorRatio::of(vocab.flavor, &slo.sli, grpc) {
            None => errors.push(EmitError::new(
                emitter,
                &s.origin,
                format!("SLO `{}` has no SLI", slo.name),
            )),
            Some(ratio) => {
                // Sorted already: the same in both texts.
                let labels = json_map([
                    ("namespace", s.namespace.as_str()),
                    ("service", &s.host),
                    ("slo", &slo.name),
                ]);
                for w in WINDOWS {
                    next_rule(&mut spec);
                    let record = json_str(&record_name(w));
                    let expr = ratio.over(&sel, w);
                    let [r, e, l] = [&record, &expr, &labels].map(String::as_bytes);
                    spec.map(&[("record", r, r), ("expr", e, e), ("labels", l, l)]);
                }
            }
        }
        let window = slo.window.map_or_else(|| "30d".into(), days);
        if let Some(alerting) = &slo.alerting {
            for (severity, target, windows) in [
                ("page", &alerting.page, &PAGE),
                ("ticket", &alerting.ticket, &TICKET),
            ] {
                let Some(t) = target.as_ref().filter(|t| t.enabled != Some(false)) else {
                    continue;
                };
                let mut l = serde_json::Map::new();
                l.insert("severity".into(), severity.into());
                for (k, v) in &t.labels {
                    l.insert(k.clone(), v.clone().into());
                }
                let mut annotations = json!({
                    "summary": format!("{}/{}: SLO {} ({}% over {window}) is burning its error budget too fast", s.namespace, s.host, slo.name, slo.objective),
                });
                if let Some(url) = &alerting.runbook_url {
                    annotations["runbook_url"] = url.clone().into();
                }
                let name = match severity {
                    "page" => "SLOBurnRatePage",
                    _ => "SLOBurnRateTicket",
                };
                let (name, expr) = (json_str(name), alert_expr(s, slo, windows));
                let (n, e) = (name.as_bytes(), expr.as_bytes());
                let (l, a) = (JsonText::of(&Value::Object(l)), JsonText::of(&annotations));
                next_rule(&mut spec);
                spec.map(&[
                    ("alert", n, n),
                    ("expr", e, e),
                    ("labels", &l.body, &l.canonical),
                    ("annotations", &a.body, &a.canonical),
                ]);
            }
        }
        spec.both(b"]}");
    }
    spec.both(b"]}");
    Some(
        MeshObject::builder(
            emitter,
            API,
            "PrometheusRule",
            &s.namespace,
            &format!("{}-slos-{}", s.name, vocab.flavor.name()),
            &s.origin,
        )
        .spec_text(spec)
        .build(),
    )
}

/// The windows of the SLO alerts' fast page pair (long, short): the
/// rollout engine's SLO gate judges the canary over them by default.
pub const PAGE_WINDOWS: (&str, &str) = (PAGE[0].0, PAGE[0].1);

/// The burn rate over which the SLO's fast page alert fires (14.4 for a
/// 30-day period, 3.36 for 7 days): the SLO gate's threshold.
pub fn page_burn_rate(slo: &Slo) -> f64 {
    let (_, _, hours, share) = PAGE[0];
    burn_factor(slo, hours, share)
}

/// The error ratio of `slo`'s SLI for `version` of `s` over `window`, as
/// plain PromQL: the query of the SLO's recording rules (its `errorCodes`,
/// gRPC statuses, latency bucket or custom queries alike), with the
/// version's selector. A custom SLI's queries are the author's: their
/// `{{version}}`, `{{service}}` and `{{namespace}}` are substituted, and
/// without `{{version}}` they measure the whole service.
pub fn version_error_ratio(
    vocab: &Vocabulary,
    s: &Service,
    slo: &Slo,
    version: &str,
    window: &str,
) -> Option<String> {
    let grpc = s.ports.iter().any(|p| p.protocol == Protocol::Grpc);
    let ratio = ErrorRatio::of(vocab.flavor, &slo.sli, grpc)?;
    let quoted = ratio.over(&escaped(&vocab.selector(s, Some(version))), window);
    let plain: String = serde_json::from_str(&quoted).ok()?;
    Some(
        plain
            .replace("{{version}}", version)
            .replace("{{service}}", &s.host)
            .replace("{{namespace}}", &s.namespace),
    )
}

/// The PromQL the rollout engine evaluates for one version over an
/// analysis interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalysisQueries {
    /// Requests in the interval (compared with `minRequestVolume`).
    pub request_volume: String,
    /// Success rate in percent.
    pub success_rate: String,
    /// The latency percentile, in milliseconds.
    pub latency: String,
}

/// Analysis queries for `version` of `s` over `interval` (`1m`), with the
/// latency `percentile` (50–99).
pub fn analysis_queries(
    vocab: &Vocabulary,
    s: &Service,
    version: &str,
    interval: &str,
    percentile: u32,
) -> AnalysisQueries {
    let flavor = vocab.flavor;
    let sel = vocab.selector(s, Some(version));
    let req = flavor.requests();
    // The rollout engine's success rate: HTTP failures (issue: gRPC and
    // `errorCodes` are the SLO's, not yet the analysis').
    let errors = flavor.errors(&[], false).remove(0);
    AnalysisQueries {
        request_volume: format!("sum(increase({req}{{{sel}}}[{interval}]))"),
        success_rate: format!(
            "100 * (1 - (sum(rate({req}{{{sel}{errors}}}[{interval}])) or vector(0)) / sum(rate({req}{{{sel}}}[{interval}])))"
        ),
        // In milliseconds whatever the histogram's unit.
        latency: format!(
            "{}histogram_quantile({}, sum by (le) (rate({}{{{sel}}}[{interval}])))",
            if flavor.in_seconds() { "1000 * " } else { "" },
            fmt_f64(f64::from(percentile) / 100.0),
            flavor.buckets()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query `ratio` makes over 5m, read back from its JSON string.
    fn query(ratio: &ErrorRatio, sel: &str) -> String {
        serde_json::from_str(&ratio.over(&escaped(sel), "5m")).unwrap()
    }

    /// Service `web` in `shop`, with one port of `protocol` and versions
    /// `v1` and `v2` (the latter labelled `v2_label: v2`), lowered.
    fn web(protocol: &str, v2_label: &str) -> Service {
        lowered(&format!("ports: [{{ name: {protocol}, port: 80, protocol: {protocol} }}]\n  versions:\n    - {{ name: v1, labels: {{ app: web, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: web, {v2_label}: v2 }} }}\n"))
    }

    /// Service `web` in `shop` with `spec` (indented by two), lowered.
    pub(super) fn lowered(spec: &str) -> Service {
        let intent = format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: web, namespace: shop }}\nspec:\n  {spec}");
        // Not checked: some cases are deliberately ambiguous.
        let (repo, _) =
            meshplan_policy_lang::check::check_sources(&meshplan_policy_lang::parse::Sources {
                files: vec![("s.yaml".into(), intent)],
            });
        crate::lower::lower(&repo, &crate::Positions::default())
            .unwrap()
            .services
            .remove(0)
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
}
