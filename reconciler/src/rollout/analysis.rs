//! One analysis interval: the canary's metrics from Prometheus, judged
//! into a [`Verdict`] for the state machine.
//!
//! | check | query | fails when | inconclusive when |
//! |---|---|---|---|
//! | request volume | requests to the canary in the interval | — | under `minRequestVolume`, or no data |
//! | success rate | percent of canary requests not 5xx | under `successRate.min` | no data |
//! | latency | the canary's `latency.percentile` (default p99) | over `latency.max` | no data (no traffic) |
//! | custom metrics | the intent's PromQL (`{{service}}`, `{{namespace}}`, `{{version}}`, `{{interval}}` substituted) | the CEL `successCondition` over `result` is false | no data, or the condition cannot be evaluated |
//! | SLO gate | the canary's burn rate of each gated SLO, by the SLO's own SLI, over the page alert's long and short windows | over the page threshold (14.4× at 30 days) over both, with `onBurn: fail` | the same with `onBurn: hold` (default): promotion is held, never granted |
//!
//! Prometheus unreachable, or a query error, is inconclusive: a rollout
//! never advances on missing evidence. Any failed check fails the
//! interval; otherwise any inconclusive one makes it inconclusive.

use std::fmt::Write as _;

use meshplan_compiler::metrics::{page_burn_rate, PAGE_WINDOWS};
use meshplan_compiler::rollout::Subject;
use meshplan_policy_lang::cel::eval::{Bindings, Engine};
use meshplan_policy_lang::intent::rollout::{Analysis, OnBurn, SloGate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Verdict;

/// Why a query has no answer: each makes its check inconclusive, never a
/// pass.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Prometheus could not be reached, or its answer not read (`at`: its
    /// URL without credentials).
    #[error("Prometheus at {at}: {reason}")]
    Unreachable { at: String, reason: String },
    #[error("not a Prometheus answer: {0}")]
    NotAnAnswer(String),
    /// Prometheus refused the query (its `error`).
    #[error("query failed: {0}")]
    Refused(String),
    /// There is nothing to ask: the SLO has no SLI.
    #[error("SLO `{0}` has no SLI")]
    NoSli(String),
}

impl QueryError {
    /// Prometheus at `url` (shown without credentials) could not be
    /// reached or read, because of `e`.
    pub fn unreachable(url: &str, e: &dyn std::fmt::Display) -> QueryError {
        QueryError::Unreachable {
            at: crate::outgoing::shown_url(url),
            reason: e.to_string(),
        }
    }
}

/// Where metrics come from (Prometheus; a fake in unit tests).
pub trait MetricSource {
    /// The value of an instant query: `Ok(None)` when it returns no
    /// series, or NaN.
    fn query(&self, promql: &str) -> Result<Option<f64>, QueryError>;
}

/// The Prometheus HTTP API at `url` — with a path prefix when it has one
/// (Mimir's `/prometheus`) — through `http`, which adds the credentials the
/// operator bound to that URL.
#[derive(Debug, Clone)]
pub struct Prometheus {
    pub url: String,
    pub http: std::sync::Arc<crate::outgoing::Http>,
}

impl Prometheus {
    /// Prometheus at `url`, without credentials.
    pub fn plain(url: &str) -> Prometheus {
        Prometheus {
            url: url.to_owned(),
            http: Default::default(),
        }
    }
}

impl MetricSource for Prometheus {
    fn query(&self, promql: &str) -> Result<Option<f64>, QueryError> {
        let url = format!("{}/api/v1/query", self.url.trim_end_matches('/'));
        let fail = |e: &dyn std::fmt::Display| QueryError::unreachable(&self.url, e);
        let body = self
            .http
            .get(&url)
            .map_err(|e| fail(&e))?
            .query("query", promql)
            .config()
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .call()
            .map_err(|e| fail(&e))?
            .into_body()
            .read_to_string()
            .map_err(|e| fail(&e))?;
        parse_instant(&body)
    }
}

/// The first sample of an instant-query answer.
pub fn parse_instant(body: &str) -> Result<Option<f64>, QueryError> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| QueryError::NotAnAnswer(e.to_string()))?;
    if v["status"] != "success" {
        return Err(QueryError::Refused(
            v["error"].as_str().unwrap_or("unknown error").to_owned(),
        ));
    }
    let sample = match v["data"]["resultType"].as_str() {
        Some("vector") => v["data"]["result"].get(0).map(|r| r["value"][1].clone()),
        Some("scalar") => Some(v["data"]["result"][1].clone()),
        _ => None,
    };
    Ok(sample
        .and_then(|s| s.as_str().and_then(|t| t.parse::<f64>().ok()))
        .filter(|x| x.is_finite()))
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub name: String,
    /// The measured value, when there was one.
    pub value: Option<f64>,
    pub outcome: Outcome,
    /// In a sentence: `success rate 97.1% < 99%`.
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

/// An interval's results, and the verdict they make.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub checks: Vec<CheckResult>,
    pub verdict: Verdict,
}

/// An analysis as stored with the rollout's state (`rollout status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Unix seconds.
    pub time: u64,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    pub checks: Vec<CheckRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// `pass`, `fail` or `inconclusive`.
    pub outcome: String,
    pub detail: String,
}

impl Report {
    pub fn record(&self, time: u64) -> Record {
        let outcome = |o: Outcome| match o {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
        };
        Record {
            time,
            verdict: match &self.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail(_) => "fail",
                Verdict::Inconclusive(_) => "inconclusive",
            }
            .into(),
            checks: self
                .checks
                .iter()
                .map(|c| CheckRecord {
                    name: c.name.clone(),
                    value: c.value,
                    outcome: outcome(c.outcome).into(),
                    detail: c.detail.clone(),
                })
                .collect(),
        }
    }
}

/// Runs every configured check for `version` of `s` (in its metric
/// vocabulary); the built-in success
/// rate and latency are compared with `stable`'s over the same interval
/// when it is given (shown, and judged when the intent sets
/// `maxDropVsStable` / `maxRatioVsStable`).
pub fn analyse(
    source: &dyn MetricSource,
    engine: &Engine,
    s: &Subject,
    version: &str,
    stable: Option<&str>,
    analysis: &Analysis,
) -> Report {
    let interval = analysis.interval.map_or("1m".to_owned(), |d| d.to_string());
    let percentile = analysis
        .latency
        .as_ref()
        .and_then(|l| l.percentile)
        .unwrap_or(99);
    let q = s.analysis_queries(version, &interval, percentile);
    let qs = stable.map(|v| s.analysis_queries(v, &interval, percentile));
    // The stable version's value of a query, as a note and for comparison.
    let baseline =
        |promql: Option<&String>| -> Option<f64> { source.query(promql?).ok().flatten() };
    let mut checks = Vec::new();
    let measure = |name: &str, promql: &str| -> Result<Option<f64>, CheckResult> {
        source.query(promql).map_err(|e| CheckResult {
            name: name.to_owned(),
            value: None,
            outcome: Outcome::Inconclusive,
            detail: e.to_string(),
        })
    };

    // Volume first: with too little traffic, nothing else means anything.
    match measure("request volume", &q.request_volume) {
        Err(c) => checks.push(c),
        Ok(v) => {
            let min = analysis.min_request_volume.unwrap_or(0) as f64;
            let have = v.unwrap_or(0.0);
            let outcome = if v.is_none() || have < min {
                Outcome::Inconclusive
            } else {
                Outcome::Pass
            };
            let mut detail = format!("{have:.0} requests in {interval}");
            if min > 0.0 {
                let _ = write!(detail, " (minimum {min:.0})");
            }
            checks.push(CheckResult {
                name: "request volume".into(),
                value: v,
                outcome,
                detail,
            });
        }
    }
    if checks.iter().any(|c| c.outcome != Outcome::Pass) {
        return finish(checks);
    }
    if let Some(sr) = &analysis.success_rate {
        checks.push(match measure("success rate", &q.success_rate) {
            Err(c) => c,
            Ok(None) => no_data("success rate"),
            Ok(Some(v)) => {
                let base = baseline(qs.as_ref().map(|q| &q.success_rate));
                let outcome = if v >= sr.min {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                };
                let detail = format!(
                    "success rate {v:.2}% {} {}%",
                    if v >= sr.min { ">=" } else { "<" },
                    sr.min
                );
                let (outcome, detail) = against_stable(
                    outcome,
                    detail,
                    base,
                    sr.max_drop_vs_stable,
                    |b| Some(b - v),
                    |e, b, m| format!("; {e:.2} points under stable's {b:.2}% (max {m})"),
                    |b| format!(" (stable {b:.2}%)"),
                );
                CheckResult {
                    name: "success rate".into(),
                    value: Some(v),
                    outcome,
                    detail,
                }
            }
        });
    }
    if let Some(l) = &analysis.latency {
        let max = l.max.as_millis() as f64;
        let name = format!("p{percentile} latency");
        checks.push(match measure(&name, &q.latency) {
            Err(c) => c,
            Ok(None) => no_data(&name),
            Ok(Some(v)) => {
                let base = baseline(qs.as_ref().map(|q| &q.latency));
                let outcome = if v <= max {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                };
                let detail = format!(
                    "{name} {v:.0}ms {} {max:.0}ms",
                    if v <= max { "<=" } else { ">" }
                );
                let (outcome, detail) = against_stable(
                    outcome,
                    detail,
                    base,
                    l.max_ratio_vs_stable,
                    |b| (b > 0.0).then(|| v / b),
                    |e, b, m| format!("; {e:.2}× stable's {b:.0}ms (max {m}×)"),
                    |b| format!(" (stable {b:.0}ms)"),
                );
                CheckResult {
                    name: name.clone(),
                    value: Some(v),
                    outcome,
                    detail,
                }
            }
        });
    }
    for m in &analysis.metrics {
        let promql = s.own_query(&m.query, version, &interval);
        checks.push(match measure(&m.name, &promql) {
            Err(c) => c,
            Ok(None) => no_data(&m.name),
            Ok(Some(v)) => condition(engine, &m.name, &m.success_condition, v),
        });
    }
    finish(checks)
}

/// The SLO gate: judges the canary as the SLO's fast page alert judges the
/// service — its SLI's error ratio (the recording rules' query, for the
/// canary's version) over a long and a short window, each against the
/// page burn rate (14.4× the budget for a 30-day period) — and, while it
/// burns over both, holds promotion (`onBurn: hold`, the default) or fails
/// the interval (`onBurn: fail`).
pub fn slo_gate(
    source: &dyn MetricSource,
    s: &Subject,
    version: &str,
    gate: &SloGate,
) -> Vec<CheckResult> {
    let (long, short) = gate.windows().map_or_else(
        || (PAGE_WINDOWS.0.to_owned(), PAGE_WINDOWS.1.to_owned()),
        |w| (w.long.to_string(), w.short.to_string()),
    );
    s.slos()
        .iter()
        .filter(|slo| gate.covers(&slo.name))
        .map(|slo| {
            let name = format!("SLO gate {}", slo.name);
            let budget = 1.0 - slo.objective / 100.0;
            let threshold = page_burn_rate(slo);
            let ratio = |window: &str| match s.error_ratio(slo, version, window) {
                Some(q) => source.query(&q),
                None => Err(QueryError::NoSli(slo.name.clone())),
            };
            match (ratio(&long), ratio(&short)) {
                (Err(e), _) | (_, Err(e)) => CheckResult {
                    name,
                    value: None,
                    outcome: Outcome::Inconclusive,
                    detail: e.to_string(),
                },
                (Ok(None), _) | (_, Ok(None)) => no_data(&name),
                (Ok(Some(l)), Ok(Some(sh))) => {
                    let (over_long, over_short) = (l / budget, sh / budget);
                    let burning = over_long > threshold && over_short > threshold;
                    let (outcome, tail) = match (burning, gate.on_burn()) {
                        (false, _) => (Outcome::Pass, ""),
                        (true, OnBurn::Hold) => (Outcome::Inconclusive, ": promotion held"),
                        (true, OnBurn::Fail) => (Outcome::Fail, ": the canary fails"),
                    };
                    CheckResult {
                        name: name.clone(),
                        value: Some(over_long),
                        outcome,
                        detail: format!(
                            "{name}: burn rate {over_long:.1}× over {long}, {over_short:.1}× over {short}; the page threshold is {threshold}× over both{tail}"
                        ),
                    }
                }
            }
        })
        .collect()
}

/// Judges a check against the stable version's value `base`: with a
/// `limit`, an `excess` (how far the canary is from stable) over it fails,
/// and no stable value to compare with is inconclusive; without one,
/// stable's value is only shown.
fn against_stable(
    outcome: Outcome,
    mut detail: String,
    base: Option<f64>,
    limit: Option<f64>,
    excess: impl Fn(f64) -> Option<f64>,
    over: impl Fn(f64, f64, f64) -> String,
    shown: impl Fn(f64) -> String,
) -> (Outcome, String) {
    let measured = base.and_then(|b| excess(b).map(|e| (b, e)));
    match (measured, limit) {
        (Some((b, e)), Some(m)) => {
            detail.push_str(&over(e, b, m));
            let outcome = if e > m { Outcome::Fail } else { outcome };
            (outcome, detail)
        }
        (None, Some(_)) if outcome == Outcome::Pass => {
            detail.push_str("; stable has no data to compare with");
            (Outcome::Inconclusive, detail)
        }
        (Some((b, _)), None) => {
            detail.push_str(&shown(b));
            (outcome, detail)
        }
        _ => (outcome, detail),
    }
}

fn no_data(name: &str) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        value: None,
        outcome: Outcome::Inconclusive,
        detail: format!("{name}: no data"),
    }
}

fn condition(engine: &Engine, name: &str, cond: &str, v: f64) -> CheckResult {
    let result = engine
        .compile(cond, &["result"])
        .map_err(|_| "the success condition does not compile".to_owned())
        .and_then(|c| {
            engine
                .eval(
                    &c,
                    &Bindings::new().with_value("result", cel::Value::Float(v)),
                )
                .map_err(|e| format!("{e:?}"))
        });
    match result {
        Ok(cel::Value::Bool(ok)) => CheckResult {
            name: name.to_owned(),
            value: Some(v),
            outcome: if ok { Outcome::Pass } else { Outcome::Fail },
            detail: format!(
                "{name}: result {v} {} `{cond}`",
                if ok { "meets" } else { "breaks" }
            ),
        },
        Ok(_) | Err(_) => CheckResult {
            name: name.to_owned(),
            value: Some(v),
            outcome: Outcome::Inconclusive,
            detail: format!("{name}: `{cond}` could not be evaluated on {v}"),
        },
    }
}

/// Folds check results into a verdict.
pub fn finish(checks: Vec<CheckResult>) -> Report {
    let reasons = |o: Outcome| -> String {
        checks
            .iter()
            .filter(|c| c.outcome == o)
            .map(|c| c.detail.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let verdict = if checks.iter().any(|c| c.outcome == Outcome::Fail) {
        Verdict::Fail(reasons(Outcome::Fail))
    } else if checks.iter().any(|c| c.outcome == Outcome::Inconclusive) {
        Verdict::Inconclusive(reasons(Outcome::Inconclusive))
    } else {
        Verdict::Pass
    };
    Report { checks, verdict }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Answers by the query's metric name (the first `(` … `{` token).
    struct Fake(BTreeMap<&'static str, Result<Option<f64>, QueryError>>);

    impl MetricSource for Fake {
        fn query(&self, promql: &str) -> Result<Option<f64>, QueryError> {
            for (k, v) in &self.0 {
                if promql.starts_with(k) {
                    return v.clone();
                }
            }
            Ok(None)
        }
    }

    /// `shop/web`, versions v1 and v2 and a rollout from one to the
    /// other, with `extra` in its spec (indented by two), compiled.
    fn subject_with(extra: &str) -> Subject {
        let intent = format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: web, namespace: shop }}\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: web, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: web, version: v2 }} }}\n  rollout: {{ stable: v1, canary: v2, steps: [{{ weight: 10 }}, {{ gate: manual }}, {{ weight: 100 }}] }}\n{extra}");
        let (repo, _) = meshplan_compiler::check_sources(&meshplan_policy_lang::parse::Sources {
            files: vec![("s.yaml".into(), intent)],
        });
        meshplan_compiler::rollout::subjects(&repo)
            .unwrap()
            .remove(0)
    }

    /// `shop/web`, versions v1 and v2, compiled.
    pub(crate) fn service() -> Subject {
        subject_with("")
    }

    fn analysis(yaml: &str) -> Analysis {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn run(answers: &[(&'static str, Result<Option<f64>, QueryError>)], a: &str) -> Report {
        let fake = Fake(answers.iter().cloned().collect());
        analyse(&fake, &Engine::new(), &service(), "v2", None, &analysis(a))
    }

    const ALL: &str = "minRequestVolume: 100\nsuccessRate: { min: 99 }\nlatency: { max: 500ms }\nmetrics:\n  - name: errors\n    query: 'errors_total{v=\"{{version}}\"}'\n    successCondition: result <= 0.01\n";

    /// Answers by version: `(volume, success rate, latency)` for the
    /// canary (v2) and the stable version (v1).
    struct ByVersion([(f64, f64, f64); 2]);

    impl MetricSource for ByVersion {
        fn query(&self, promql: &str) -> Result<Option<f64>, QueryError> {
            let (volume, rate, latency) = if promql.contains("destination_version=\"v1\"") {
                self.0[1]
            } else {
                self.0[0]
            };
            Ok(Some(if promql.starts_with("sum(increase") {
                volume
            } else if promql.starts_with("100 * ") {
                rate
            } else {
                latency
            }))
        }
    }

    #[test]
    fn the_canary_is_compared_with_stable_when_the_intent_asks() {
        let a = analysis("successRate: { min: 99, maxDropVsStable: 0.2 }\nlatency: { max: 500ms, maxRatioVsStable: 1.5 }\n");
        let src = ByVersion([(500.0, 99.5, 300.0), (5000.0, 99.99, 100.0)]);
        let r = analyse(&src, &Engine::new(), &service(), "v2", Some("v1"), &a);
        let Verdict::Fail(why) = &r.verdict else {
            panic!("{r:#?}")
        };
        assert!(
            why.contains("0.49 points under stable's 99.99% (max 0.2)"),
            "{why}"
        );
        assert!(why.contains("3.00× stable's 100ms (max 1.5×)"), "{why}");
        // Without the relative limits, stable is only shown.
        let a = analysis("successRate: { min: 99 }\nlatency: { max: 500ms }\n");
        let r = analyse(&src, &Engine::new(), &service(), "v2", Some("v1"), &a);
        assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
        assert!(
            r.checks[1].detail.ends_with("(stable 99.99%)"),
            "{:?}",
            r.checks[1]
        );
        assert!(
            r.checks[2].detail.ends_with("(stable 100ms)"),
            "{:?}",
            r.checks[2]
        );
    }

    #[test]
    fn healthy_metrics_pass() {
        let r = run(
            &[
                ("sum(increase", Ok(Some(500.0))),
                ("100 * ", Ok(Some(99.9))),
                ("histogram_quantile", Ok(Some(120.0))),
                ("errors_total", Ok(Some(0.0))),
            ],
            ALL,
        );
        assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
        assert_eq!(r.checks.len(), 4);
    }

    #[test]
    fn any_failed_check_fails_the_interval_with_its_reason() {
        let r = run(
            &[
                ("sum(increase", Ok(Some(500.0))),
                ("100 * ", Ok(Some(95.0))),
                ("histogram_quantile", Ok(Some(900.0))),
                ("errors_total", Ok(Some(0.2))),
            ],
            ALL,
        );
        let Verdict::Fail(why) = r.verdict else {
            panic!("{r:#?}")
        };
        assert!(why.contains("success rate 95.00% < 99%"), "{why}");
        assert!(why.contains("p99 latency 900ms > 500ms"), "{why}");
        assert!(
            why.contains("errors: result 0.2 breaks `result <= 0.01`"),
            "{why}"
        );
    }

    #[test]
    fn too_little_traffic_is_inconclusive_and_nothing_else_is_judged() {
        let r = run(
            &[("sum(increase", Ok(Some(12.0))), ("100 * ", Ok(Some(50.0)))],
            ALL,
        );
        assert_eq!(
            r.verdict,
            Verdict::Inconclusive("12 requests in 1m (minimum 100)".into())
        );
        assert_eq!(r.checks.len(), 1);
    }

    #[test]
    fn prometheus_unreachable_or_no_data_is_inconclusive_never_a_pass() {
        let r = run(
            &[(
                "sum(increase",
                Err(QueryError::Unreachable {
                    at: "http://x".into(),
                    reason: "connection refused".into(),
                }),
            )],
            ALL,
        );
        assert!(
            matches!(r.verdict, Verdict::Inconclusive(ref w) if w.contains("connection refused")),
            "{r:#?}"
        );
        let r = run(
            &[
                ("sum(increase", Ok(Some(500.0))),
                ("100 * ", Ok(None)),
                ("histogram_quantile", Ok(Some(1.0))),
                ("errors_total", Ok(Some(0.0))),
            ],
            ALL,
        );
        assert!(
            matches!(r.verdict, Verdict::Inconclusive(ref w) if w.contains("success rate: no data")),
            "{r:#?}"
        );
    }

    fn with_slo(objective: f64, sli: &str) -> Subject {
        subject_with(&format!(
            "  slos:\n    - name: avail\n      objective: {objective}\n      sli: {sli}\n"
        ))
    }

    /// A source answering the long-window and short-window queries.
    struct Windows(Option<f64>, Option<f64>);

    impl MetricSource for Windows {
        fn query(&self, promql: &str) -> Result<Option<f64>, QueryError> {
            match (promql.contains("[1h]"), promql.contains("[5m]")) {
                (true, _) => Ok(self.0),
                (_, true) => Ok(self.1),
                _ => Err(QueryError::Refused(format!("unexpected window: {promql}"))),
            }
        }
    }

    #[test]
    fn the_slo_gate_judges_the_canary_as_the_page_alert_does() {
        let s = with_slo(99.9, "{ availability: { errorCodes: ['429'] } }");
        let all = SloGate::All(true);
        // 2 % errors against a 0.1 % budget over both windows: a 20× burn.
        let r = slo_gate(&Windows(Some(0.02), Some(0.02)), &s, "v2", &all);
        assert_eq!(r[0].outcome, Outcome::Inconclusive, "{r:#?}");
        assert!(r[0].detail.contains("burn rate 20.0× over 1h, 20.0× over 5m; the page threshold is 14.4× over both: promotion held"), "{r:#?}");
        // Burning over the long window only (it stopped): the gate opens.
        let r = slo_gate(&Windows(Some(0.02), Some(0.0)), &s, "v2", &all);
        assert_eq!(r[0].outcome, Outcome::Pass, "{r:#?}");
        // `onBurn: fail` fails the interval.
        let fail: SloGate = serde_saphyr::from_str("{ onBurn: fail }").unwrap();
        let r = slo_gate(&Windows(Some(0.02), Some(0.02)), &s, "v2", &fail);
        assert_eq!(r[0].outcome, Outcome::Fail, "{r:#?}");
        // No data is inconclusive, never a pass.
        let r = slo_gate(&Windows(None, Some(0.0)), &s, "v2", &all);
        assert_eq!(r[0].outcome, Outcome::Inconclusive, "{r:#?}");
        // Other SLOs named: nothing gated.
        assert!(slo_gate(
            &Windows(Some(1.0), Some(1.0)),
            &s,
            "v2",
            &SloGate::Named(vec!["other".into()])
        )
        .is_empty());
        // A 7-day SLO pages at 3.36×: a 5× burn is over it.
        let week = subject_with("  slos:\n    - name: avail\n      objective: 99.0\n      window: 7d\n      sli: { availability: {} }\n");
        let r = slo_gate(&Windows(Some(0.05), Some(0.05)), &week, "v2", &all);
        assert_eq!(r[0].outcome, Outcome::Inconclusive, "{r:#?}");
    }

    /// The gate's queries are the SLI's: the error codes the SLO counts
    /// count here too, on the canary's series.
    #[test]
    fn the_slo_gate_queries_the_slos_own_sli_for_the_canary() {
        struct Seen(std::sync::Mutex<Vec<String>>);
        impl MetricSource for Seen {
            fn query(&self, promql: &str) -> Result<Option<f64>, QueryError> {
                self.0.lock().unwrap().push(promql.to_owned());
                Ok(Some(0.0))
            }
        }
        let seen = Seen(Default::default());
        let s = with_slo(99.9, "{ availability: { errorCodes: ['429'] } }");
        let windows: SloGate =
            serde_saphyr::from_str("{ windows: { long: 30s, short: 4s } }").unwrap();
        slo_gate(&seen, &s, "v2", &windows);
        let q = seen.0.lock().unwrap().clone();
        assert_eq!(q.len(), 2);
        assert!(q[0].contains("[30s]") && q[1].contains("[4s]"), "{q:?}");
        for q in &q {
            assert!(q.contains("response_code=~\"5..|429\""), "{q}");
            assert!(q.contains("destination_version=\"v2\""), "{q}");
        }
    }

    #[test]
    fn reads_prometheus_answers() {
        assert_eq!(
            parse_instant(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}}"#
            ),
            Ok(Some(0.5))
        );
        assert_eq!(
            parse_instant(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            Ok(None)
        );
        assert_eq!(
            parse_instant(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#
            ),
            Ok(None)
        );
        assert_eq!(
            parse_instant(r#"{"status":"error","error":"bad"}"#),
            Err(QueryError::Refused("bad".into()))
        );
    }
}
