//! `meshplan rollout simulate`: the rollout replayed over history. The
//! same state machine and the same analysis as `meshplan run`, fed with
//! what Prometheus recorded between two moments instead of what it says
//! now — "would this rollout have survived last Tuesday?", answered before
//! the intent merges.
//!
//! # Expected flow
//!
//! 1. The rollout starts at `from` (its pre-rollout webhooks are assumed
//!    to say yes: the simulation calls nothing but Prometheus).
//! 2. Time advances one analysis interval at a time. At each boundary the
//!    analysis runs when `meshplan run` would run it (the stage is
//!    progressing, an interval after the stage started and after the last
//!    analysis), then time passes (pauses elapse at the first boundary
//!    after they end), then promotion and rollback settle.
//! 3. It stops when the rollout succeeds or fails, waits at a manual gate
//!    (nobody promotes in the past), or reaches `to`.
//!
//! # Guarantees
//!
//! - Each distinct PromQL is fetched once, as a range query over the
//!   whole period at the analysis interval (in chunks of at most 11,000
//!   points, Prometheus's limit): a week of 1-minute analyses is a handful
//!   of requests, not ten thousand. The value at a boundary is what an
//!   instant query at that moment returns.
//! - A query's error makes every analysis that needs it inconclusive, as
//!   in `meshplan run`: a simulation never passes on missing evidence.
//! - Analyses in a row with the same verdict and the same failing checks
//!   are reported once, with their count and time span.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use meshplan_compiler::rollout::{canary_weight, Subject};
use meshplan_policy_lang::cel::eval::Engine;
use meshplan_policy_lang::intent::Rollout;
use serde::Serialize;

use super::analysis::{self, MetricSource, Outcome, Prometheus, QueryError};
use super::{Effect, Event, PauseReason, Phase, State, Verdict};

/// Prometheus's most points in one range answer.
const MAX_POINTS: u64 = 11_000;

/// A range query: the first series' values of `promql` at each step from
/// `start` to `end` (unix seconds), the steps where it has none left out.
pub trait RangeSource {
    fn query_range(
        &self,
        promql: &str,
        start: u64,
        end: u64,
        step: u64,
    ) -> Result<BTreeMap<u64, f64>, QueryError>;
}

impl RangeSource for Prometheus {
    fn query_range(
        &self,
        promql: &str,
        start: u64,
        end: u64,
        step: u64,
    ) -> Result<BTreeMap<u64, f64>, QueryError> {
        let url = format!("{}/api/v1/query_range", self.url.trim_end_matches('/'));
        let fail = |e: &dyn std::fmt::Display| QueryError::unreachable(&self.url, e);
        let body = self
            .http
            .get(&url)
            .map_err(|e| fail(&e))?
            .query("query", promql)
            .query("start", start.to_string())
            .query("end", end.to_string())
            .query("step", step.to_string())
            .config()
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .call()
            .map_err(|e| fail(&e))?
            .into_body()
            .with_config()
            // One series of 11,000 points is under a megabyte; a custom
            // query may answer a few hundred series, of which only the
            // first counts (as for instant queries). Beyond this, refused.
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| fail(&e))?;
        parse_range(&body)
    }
}

/// A range-query answer by unix second: at each step, the first series
/// that has a value then — what an instant query at that step answers,
/// even when series come and go over the period (a pod restarted).
pub fn parse_range(body: &str) -> Result<BTreeMap<u64, f64>, QueryError> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| QueryError::NotAnAnswer(e.to_string()))?;
    if v["status"] != "success" {
        return Err(QueryError::Refused(
            v["error"].as_str().unwrap_or("unknown error").to_owned(),
        ));
    }
    let mut out = BTreeMap::new();
    let series = v["data"]["result"].as_array().into_iter().flatten();
    for p in series.filter_map(|s| s["values"].as_array()).flatten() {
        let (Some(t), Some(x)) = (
            p[0].as_f64(),
            p[1].as_str().and_then(|x| x.parse::<f64>().ok()),
        ) else {
            continue;
        };
        if x.is_finite() {
            out.entry(t as u64).or_insert(x);
        }
    }
    Ok(out)
}

/// A query's values by unix second.
type Series = BTreeMap<u64, f64>;

/// Answers instant queries at the current boundary from range queries,
/// each fetched once over the whole period.
struct Replay<'a> {
    source: &'a dyn RangeSource,
    /// The first boundary, the last, and the interval between them.
    start: u64,
    end: u64,
    step: u64,
    now: Cell<u64>,
    fetched: RefCell<BTreeMap<String, Result<Series, QueryError>>>,
    requests: Cell<usize>,
}

impl Replay<'_> {
    fn fetch(&self, promql: &str) -> Result<BTreeMap<u64, f64>, QueryError> {
        let mut all = BTreeMap::new();
        let mut from = self.start;
        while from <= self.end {
            let to = self.end.min(from + (MAX_POINTS - 1) * self.step);
            self.requests.set(self.requests.get() + 1);
            all.extend(self.source.query_range(promql, from, to, self.step)?);
            from = to + self.step;
        }
        Ok(all)
    }
}

impl MetricSource for Replay<'_> {
    fn query(&self, promql: &str) -> Result<Option<f64>, QueryError> {
        if !self.fetched.borrow().contains_key(promql) {
            let got = self.fetch(promql);
            self.fetched.borrow_mut().insert(promql.to_owned(), got);
        }
        match &self.fetched.borrow()[promql] {
            Ok(values) => Ok(values.get(&self.now.get()).copied()),
            Err(e) => Err(e.clone()),
        }
    }
}

/// What a simulation found, in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    pub service: String,
    pub from: u64,
    pub to: u64,
    /// Seconds between analyses.
    pub interval: u64,
    pub events: Vec<SimEvent>,
    /// The phase at the end: Succeeded, Failed, Progressing (out of
    /// time), Paused (a manual gate or too many inconclusive analyses).
    pub outcome: String,
    /// The canary's weight at the end, in percent.
    pub weight: u32,
    /// Whether the rollout failed: rolled back, or held where it failed
    /// (`freezeOnFailure`).
    pub failed: bool,
    /// The distinct PromQL the analyses ran.
    pub queries: Vec<String>,
    /// Range requests sent to Prometheus.
    pub requests: usize,
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum SimEvent {
    /// `count` analyses in a row, from `first` to `last`, with the same
    /// verdict and the same checks not passing; `detail` is the first
    /// one's reason (`success rate 97.1% < 99%`).
    Analyses {
        first: u64,
        last: u64,
        count: u32,
        verdict: String,
        /// The checks that did not pass.
        checks: Vec<String>,
        detail: String,
    },
    /// The rollout moved.
    Transition {
        time: u64,
        from: String,
        to: String,
        reason: String,
        /// The canary's weight after the move.
        weight: u32,
    },
}

/// Replays `rollout` of `s` from `from` to `to` over `source`'s history.
pub fn simulate(
    source: &dyn RangeSource,
    s: &Subject,
    rollout: &Rollout,
    from: u64,
    to: u64,
) -> Simulation {
    let every = rollout
        .analysis
        .as_ref()
        .and_then(|a| a.interval)
        .map_or(60, |d| (d.as_millis() / 1000).max(1));
    let replay = Replay {
        source,
        start: from.saturating_add(every),
        end: to.max(from.saturating_add(every)),
        step: every,
        now: Cell::new(from),
        fetched: RefCell::default(),
        requests: Cell::new(0),
    };
    let engine = Engine::new();
    let mut out = Simulation {
        service: s.key(),
        from,
        to,
        interval: every,
        events: Vec::new(),
        outcome: String::new(),
        weight: 0,
        failed: false,
        queries: Vec::new(),
        requests: 0,
    };
    let mut state = State::new(&rollout.canary, "simulation", from);
    let fx = state.start(rollout, from);
    record(&mut out, rollout, &fx, from);
    let mut last_analysis: Option<u64> = None;
    let mut t = from;
    while t.saturating_add(every) <= to && !state.finished() && !waits_for_a_person(&state) {
        t += every;
        replay.now.set(t);
        let mut events = Vec::new();
        if let Some(a) = &rollout.analysis {
            let due = state.phase == Phase::Progressing
                && !state.skip_analysis
                && t >= state.stage_started + every
                && last_analysis.is_none_or(|l| t >= l + every);
            if due {
                last_analysis = Some(t);
                let mut report = analysis::analyse(
                    &replay,
                    &engine,
                    s,
                    &rollout.canary,
                    Some(&rollout.stable),
                    a,
                );
                if let Some(gate) = &a.slo_gate {
                    let mut checks = report.checks;
                    checks.extend(analysis::slo_gate(&replay, s, &rollout.canary, gate));
                    report = analysis::finish(checks);
                }
                analysed(&mut out, t, &report);
                events.push(Event::Analysis(report.verdict));
            }
        }
        events.push(Event::Tick);
        let mut fx: Vec<Effect> = events
            .into_iter()
            .flat_map(|e| state.handle(rollout, e, t).unwrap_or_default())
            .collect();
        fx.extend(state.settle(t));
        record(&mut out, rollout, &fx, t);
    }
    out.outcome = state.phase.name().to_owned();
    out.failed = matches!(
        state.phase,
        Phase::Failed { .. }
            | Phase::Paused {
                reason: PauseReason::Frozen
            }
    );
    out.weight = canary_weight(rollout, state.at.into());
    out.queries = replay.fetched.borrow().keys().cloned().collect();
    out.requests = replay.requests.get();
    out
}

/// Paused where only a person (or `meshplan rollout resume`) moves it on.
fn waits_for_a_person(s: &State) -> bool {
    matches!(
        s.phase,
        Phase::Paused {
            reason: PauseReason::ManualGate
                | PauseReason::Inconclusive
                | PauseReason::Frozen
                | PauseReason::Requested
        }
    )
}

fn record(out: &mut Simulation, rollout: &Rollout, fx: &[Effect], time: u64) {
    for e in fx {
        match e {
            // A move's weights come with it, just before its record.
            Effect::Apply(at) => out.weight = canary_weight(rollout, (*at).into()),
            Effect::Transitioned {
                from, to, reason, ..
            } => out.events.push(SimEvent::Transition {
                time,
                from: from.clone(),
                to: to.clone(),
                reason: reason.clone(),
                weight: out.weight,
            }),
        }
    }
}

fn analysed(out: &mut Simulation, t: u64, report: &analysis::Report) {
    let (verdict, detail) = match &report.verdict {
        Verdict::Pass => ("pass", String::new()),
        Verdict::Fail(why) => ("fail", why.clone()),
        Verdict::Inconclusive(why) => ("inconclusive", why.clone()),
    };
    let checks: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.outcome != Outcome::Pass)
        .map(|c| c.name.clone())
        .collect();
    if let Some(SimEvent::Analyses {
        last,
        count,
        verdict: v,
        checks: c,
        ..
    }) = out.events.last_mut()
    {
        if v == verdict && *c == checks {
            *last = t;
            *count += 1;
            return;
        }
    }
    out.events.push(SimEvent::Analyses {
        first: t,
        last: t,
        count: 1,
        verdict: verdict.into(),
        checks,
        detail,
    });
}

#[cfg(test)]
mod tests;
