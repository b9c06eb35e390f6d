//! Prometheus: SLO recording rules and multi-window, multi-burn-rate
//! alerts (a `PrometheusRule` per service with SLOs), and the canary
//! analysis queries the rollout engine runs, both from the mesh's standard
//! metrics.
//!
//! Not a target of its own: the Istio and Linkerd emitters call it with
//! their metric [`Flavor`]. Object names carry the flavor
//! (`<name>-slos-istio`), so rendering both meshes at once does not clash.
//!
//! For each SLO and window `W` in 5m, 30m, 1h, 2h, 6h, 1d, 3d, a recording
//! rule `meshplan:slo_error_ratio:rate<W>` (labels `namespace`, `service`,
//! `slo`). With the error budget `B = 1 − objective/100`:
//!
//! | alert | long window | short window | burn rate |
//! |---|---|---|---|
//! | page | 1h | 5m | 14.4 × B |
//! | page | 6h | 30m | 6 × B |
//! | ticket | 1d | 2h | 3 × B |
//! | ticket | 3d | 6h | 1 × B |

use std::fmt::Write as _;

use meshplan_policy_lang::intent::slo::Sli;
use meshplan_policy_lang::intent::Slo;
use serde_json::{json, Value};

use super::{gateway_duration, EmitError};
use crate::ir::Service;
use crate::object::{json_map, json_str, JsonText, MeshObject};

const API: &str = "monitoring.coreos.com/v1";
const WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];
/// (long window, short window, burn-rate factor), per severity.
const PAGE: [(&str, &str, f64); 2] = [("1h", "5m", 14.4), ("6h", "30m", 6.0)];
const TICKET: [(&str, &str, f64); 2] = [("1d", "2h", 3.0), ("3d", "6h", 1.0)];

/// Whose standard metrics the queries use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `istio_requests_total`, `istio_request_duration_milliseconds_bucket`.
    Istio,
    /// `response_total`, `response_latency_ms_bucket` (inbound).
    Linkerd,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Istio => "istio",
            Flavor::Linkerd => "linkerd",
        }
    }

    /// The label selector of a service's inbound traffic, optionally of
    /// one version.
    fn selector(self, s: &Service, version: Option<&str>) -> String {
        match self {
            Flavor::Istio => {
                let mut sel = format!(
                    "reporter=\"destination\",destination_service_name=\"{}\",destination_service_namespace=\"{}\"",
                    s.host, s.namespace
                );
                if let Some(v) = version {
                    let _ = write!(sel, ",destination_version=\"{v}\"");
                }
                sel
            }
            // Linkerd's inbound metrics name the workload (Deployment), not
            // the Service: meshplan expects `<service>-<version>`.
            Flavor::Linkerd => match version {
                Some(v) => format!(
                    "direction=\"inbound\",namespace=\"{}\",deployment=\"{}-{v}\"",
                    s.namespace, s.host
                ),
                None => format!(
                    "direction=\"inbound\",namespace=\"{}\",deployment=~\"{h}|{h}-.*\"",
                    s.namespace,
                    h = s.host
                ),
            },
        }
    }

    fn requests(self) -> &'static str {
        match self {
            Flavor::Istio => "istio_requests_total",
            Flavor::Linkerd => "response_total",
        }
    }

    fn buckets(self) -> &'static str {
        match self {
            Flavor::Istio => "istio_request_duration_milliseconds_bucket",
            Flavor::Linkerd => "response_latency_ms_bucket",
        }
    }

    fn errors(self, extra_codes: &[String]) -> String {
        let extra: String = extra_codes.iter().map(|c| format!("|{c}")).collect();
        match self {
            Flavor::Istio => format!(",response_code=~\"5..{extra}\""),
            Flavor::Linkerd if extra.is_empty() => ",classification=\"failure\"".into(),
            Flavor::Linkerd => format!(",status_code=~\"5..{extra}\""),
        }
    }
}

/// An SLI's error ratio (bad / all events), for any window: what does not
/// depend on the window is worked out once per SLO, since every SLO has a
/// rule per window and 10,000 services make 140,000 of them.
///
/// The PromQL is built as it stands inside a JSON string (`"` as `\"`):
/// escaping is the same character by character, so its parts are escaped
/// once each instead of every query whole (PromQL is full of quotes, and
/// escaping it was 3 % of a large render).
enum ErrorRatio {
    /// `(bad) / (all)`: requests matching `bad` (extra matchers) of all.
    Requests { metric: &'static str, bad: String },
    /// `1 - ((good) / (all))`: requests in the `le` bucket of all.
    Latency { metric: &'static str, le: String },
    /// `1 - ((good) / (total))`, `{{window}}` replaced.
    Custom { good: String, total: String },
}

impl ErrorRatio {
    fn of(flavor: Flavor, sli: &Sli) -> Option<Self> {
        if let Some(a) = &sli.availability {
            return Some(ErrorRatio::Requests {
                metric: flavor.requests(),
                bad: escaped(&flavor.errors(&a.error_codes)),
            });
        }
        if let Some(l) = &sli.latency {
            return Some(ErrorRatio::Latency {
                metric: flavor.buckets(),
                le: le_value(l.threshold.as_millis()),
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
                sum_rate(&mut out, metric, &[bad]);
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

/// A histogram bucket bound as Prometheus prints it (`500`, `0.5`).
fn le_value(ms: u64) -> String {
    ms.to_string()
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
fn alert_expr(s: &Service, slo: &Slo, windows: &[(&str, &str, f64)]) -> String {
    let budget = 1.0 - slo.objective / 100.0;
    let sel = escaped(&sel_of(s, slo));
    let conditions = windows
        .iter()
        .map(|(long, short, factor)| {
            let threshold = fmt_f64(factor * budget);
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

/// Shortest decimal that round-trips, without float noise (`0.0144`).
fn fmt_f64(v: f64) -> String {
    let s = format!("{:.10}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// The PrometheusRule of a service's SLOs, if it has any.
pub fn slo_rules(
    emitter: &'static str,
    flavor: Flavor,
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
    let sel = escaped(&flavor.selector(s, None));
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
        match ErrorRatio::of(flavor, &slo.sli) {
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
        let window = slo
            .window
            .map(gateway_duration)
            .unwrap_or_else(|| "30d".into());
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
            &format!("{}-slos-{}", s.name, flavor.name()),
            &s.origin,
        )
        .spec_text(spec)
        .build(),
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
    flavor: Flavor,
    s: &Service,
    version: &str,
    interval: &str,
    percentile: u32,
) -> AnalysisQueries {
    let sel = flavor.selector(s, Some(version));
    let req = flavor.requests();
    let errors = flavor.errors(&[]);
    AnalysisQueries {
        request_volume: format!("sum(increase({req}{{{sel}}}[{interval}]))"),
        success_rate: format!(
            "100 * (1 - (sum(rate({req}{{{sel}{errors}}}[{interval}])) or vector(0)) / sum(rate({req}{{{sel}}}[{interval}])))"
        ),
        latency: format!(
            "histogram_quantile({}, sum by (le) (rate({}{{{sel}}}[{interval}])))",
            fmt_f64(f64::from(percentile) / 100.0),
            flavor.buckets()
        ),
    }
}

/// The share of `version`'s requests slower than `ms` over `interval`
/// (`ms` should be a bucket bound: see MP2011).
pub fn slower_than(flavor: Flavor, s: &Service, version: &str, interval: &str, ms: u64) -> String {
    let sel = flavor.selector(s, Some(version));
    let b = flavor.buckets();
    format!(
        "1 - (sum(rate({b}{{{sel},le=\"{}\"}}[{interval}])) / sum(rate({b}{{{sel},le=\"+Inf\"}}[{interval}])))",
        le_value(ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query `ratio` makes over 5m, read back from its JSON string.
    fn query(ratio: &ErrorRatio, sel: &str) -> String {
        serde_json::from_str(&ratio.over(&escaped(sel), "5m")).unwrap()
    }

    #[test]
    fn queries_built_escaped_read_back_as_the_plain_promql() {
        let sel = r#"a="x",b=~"y\\d""#;
        let custom: Sli = serde_json::from_value(json!({"custom": {
            "goodQuery": r#"sum(rate(ok{r="\\"}[{{window}}]))"#,
            "totalQuery": "sum(rate(all[{{window}}]))",
        }}))
        .unwrap();
        let ratio = ErrorRatio::of(Flavor::Istio, &custom).unwrap();
        assert_eq!(
            query(&ratio, sel),
            r#"1 - ((sum(rate(ok{r="\\"}[5m]))) / (sum(rate(all[5m]))))"#
        );
        let latency: Sli =
            serde_json::from_value(json!({"latency": {"threshold": "250ms"}})).unwrap();
        let ratio = ErrorRatio::of(Flavor::Linkerd, &latency).unwrap();
        let m = "response_latency_ms_bucket";
        assert_eq!(
            query(&ratio, sel),
            format!(
                r#"1 - ((sum(rate({m}{{{sel},le="250"}}[5m]))) / (sum(rate({m}{{{sel},le="+Inf"}}[5m]))))"#
            )
        );
        let availability: Sli =
            serde_json::from_value(json!({"availability": {"errorCodes": ["429"]}})).unwrap();
        let ratio = ErrorRatio::of(Flavor::Istio, &availability).unwrap();
        let m = "istio_requests_total";
        assert_eq!(
            query(&ratio, sel),
            format!(
                r#"(sum(rate({m}{{{sel},response_code=~"5..|429"}}[5m]))) / (sum(rate({m}{{{sel}}}[5m])))"#
            )
        );
    }

    #[test]
    fn formats_thresholds_without_float_noise() {
        assert_eq!(fmt_f64(14.4 * (1.0 - 99.9 / 100.0)), "0.0144");
        assert_eq!(fmt_f64(0.99), "0.99");
        assert_eq!(fmt_f64(1.0), "1");
    }
}
