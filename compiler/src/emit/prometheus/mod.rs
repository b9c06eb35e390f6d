//! Prometheus: SLO recording rules and multi-window, multi-burn-rate
//! alerts (a `PrometheusRule` per service with SLOs) from the mesh's
//! standard metrics. What those metrics are called, how a version's
//! requests are told apart, an SLI as PromQL and the burn rates are
//! [`crate::metrics`]'s: the rollout engine's analysis speaks the same.
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

use meshplan_policy_lang::intent::slo::AlertTarget;
use meshplan_policy_lang::intent::Slo;

use meshplan_policy_lang::intent::Protocol;

use super::{gateway_duration, EmitError};
use crate::api::monitoring_coreos_com::{
    AlertingRule, Annotations, PromQl, PrometheusRuleSpec, RecordingRule, Rule, RuleGroup,
    SeriesLabels,
};
use crate::ir::Service;
use crate::metrics::{burn_factor, escaped, fmt_f64, ErrorRatio, Vocabulary, PAGE, TICKET};
use crate::object::MeshObject;

const API: &str = "monitoring.coreos.com/v1";
const WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

fn record_name(window: &str) -> String {
    format!("meshplan:slo_error_ratio:rate{window}")
}

fn sel_of(s: &Service, slo: &Slo) -> String {
    format!(
        "namespace=\"{}\",service=\"{}\",slo=\"{}\"",
        s.namespace, s.host, slo.name
    )
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

/// A period as people write it: `30d`, not `720h`.
fn days(d: meshplan_policy_lang::intent::Duration) -> String {
    match d.as_millis() {
        ms if ms > 0 && ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        _ => gateway_duration(d),
    }
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
    let sel = escaped(&vocab.selector(s, None));
    let grpc = s.ports.iter().any(|p| p.protocol == Protocol::Grpc);
    // Borrowed by every recording rule of its SLO.
    let labels: Vec<SeriesLabels> = s
        .slos
        .iter()
        .map(|slo| SeriesLabels {
            namespace: &s.namespace,
            service: &s.host,
            slo: &slo.name,
        })
        .collect();
    let groups = s
        .slos
        .iter()
        .zip(&labels)
        .map(|(slo, labels)| {
            let mut rules = Vec::new();
            match ErrorRatio::of(vocab.flavor, &slo.sli, grpc) {
                None => errors.push(EmitError::new(
                    emitter,
                    &s.origin,
                    format!("SLO `{}` has no SLI", slo.name),
                )),
                Some(ratio) => rules.extend(WINDOWS.map(|w| {
                    Rule::Record(RecordingRule {
                        expr: PromQl::quoted(ratio.over(&sel, w)),
                        labels,
                        record: record_name(w),
                    })
                })),
            }
            rules.extend(alerts(s, slo));
            RuleGroup {
                name: format!("meshplan-{}-{}-{}", s.namespace, s.name, slo.name),
                rules,
            }
        })
        .collect();
    Some(
        MeshObject::builder(
            emitter,
            API,
            "PrometheusRule",
            &s.namespace,
            &format!("{}-slos-{}", s.name, vocab.flavor.name()),
            &s.origin,
        )
        .spec_typed(&PrometheusRuleSpec { groups })
        .build(),
    )
}

/// The page and ticket alerts of `slo` its alerting enables.
fn alerts<'a>(s: &'a Service, slo: &'a Slo) -> Vec<Rule<'a>> {
    let Some(alerting) = &slo.alerting else {
        return Vec::new();
    };
    let window = slo.window.map_or_else(|| "30d".into(), days);
    let severities: [(&str, &Option<AlertTarget>, &[_; 2]); 2] = [
        ("page", &alerting.page, &PAGE),
        ("ticket", &alerting.ticket, &TICKET),
    ];
    severities
        .into_iter()
        .filter_map(|(severity, target, windows)| {
            let t = target.as_ref().filter(|t| t.enabled != Some(false))?;
            let mut labels = std::collections::BTreeMap::new();
            labels.insert("severity", severity);
            for (k, v) in &t.labels {
                labels.insert(k.as_str(), v.as_str());
            }
            Some(Rule::Alert(AlertingRule {
                alert: match severity {
                    "page" => "SLOBurnRatePage",
                    _ => "SLOBurnRateTicket",
                },
                annotations: Annotations {
                    runbook_url: alerting.runbook_url.as_deref(),
                    summary: format!(
                        "{}/{}: SLO {} ({}% over {window}) is burning its error budget too fast",
                        s.namespace, s.host, slo.name, slo.objective
                    ),
                },
                expr: PromQl::quoted(alert_expr(s, slo, windows)),
                labels,
            }))
        })
        .collect()
}
