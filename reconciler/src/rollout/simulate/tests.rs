//! The simulator's replay over a scripted history: when each stage
//! advances, when a bad canary is rolled back, how few range requests a
//! long period takes.

use std::cell::Cell;
use std::collections::BTreeMap;

use meshplan_policy_lang::intent::Rollout;

use super::*;
use crate::rollout::analysis::tests::service;

/// A history: the canary's success rate (percent) as a function of the
/// time, 1,000 requests an interval and 20 ms everywhere.
struct History {
    success: fn(u64) -> f64,
    calls: Cell<usize>,
    points: Cell<u64>,
}

impl History {
    fn new(success: fn(u64) -> f64) -> Self {
        History {
            success,
            calls: Cell::new(0),
            points: Cell::new(0),
        }
    }
}

impl RangeSource for History {
    fn query_range(
        &self,
        promql: &str,
        start: u64,
        end: u64,
        step: u64,
    ) -> Result<BTreeMap<u64, f64>, QueryError> {
        assert!((end - start) / step < MAX_POINTS, "over Prometheus's limit");
        self.calls.set(self.calls.get() + 1);
        self.points
            .set(self.points.get() + (end - start) / step + 1);
        Ok((start..=end)
            .step_by(step as usize)
            .map(|t| {
                let v = if promql.starts_with("sum(increase") {
                    1000.0
                } else if promql.starts_with("100 * ") {
                    if promql.contains("destination_version=\"v2\"") {
                        (self.success)(t)
                    } else {
                        100.0
                    }
                } else {
                    20.0
                };
                (t, v)
            })
            .collect())
    }
}

fn rollout(steps: &str) -> Rollout {
    serde_saphyr::from_str(&format!("stable: v1\ncanary: v2\nsteps: {steps}\nanalysis:\n  interval: 1m\n  minRequestVolume: 100\n  successRate: {{ min: 99 }}\n  latency: {{ max: 500ms }}\n  failureLimit: 2\n")).unwrap()
}

const T0: u64 = 1_700_000_000;

fn moves(s: &Simulation) -> Vec<(u64, String, u32)> {
    s.events
        .iter()
        .filter_map(|e| match e {
            SimEvent::Transition {
                time, to, weight, ..
            } => Some(((time - T0) / 60, to.clone(), *weight)),
            SimEvent::Analyses { .. } => None,
        })
        .collect()
}

#[test]
fn a_healthy_canary_advances_a_stage_per_passing_analysis_and_pause() {
    let h = History::new(|_| 99.9);
    let r = rollout("[{ weight: 10 }, { weight: 50, pause: 5m }, { weight: 100 }]");
    let s = simulate(&h, &service(), &r, T0, T0 + 3600);
    assert_eq!(s.outcome, "Succeeded", "{s:#?}");
    assert_eq!(s.weight, 100);
    let m = moves(&s);
    // Step 0 at 10 % from the start; its first analysis (minute 1) passes
    // and moves to 50 %; that stage waits its 5 minutes; 100 % after the
    // next analysis, then promotion settles at once.
    assert_eq!(
        m.first(),
        Some(&(0, "Progressing@step 0".into(), 10)),
        "{m:?}"
    );
    let weights: Vec<u32> = m.iter().map(|(_, _, w)| *w).collect();
    assert!(weights.windows(2).all(|w| w[0] <= w[1]), "{m:?}");
    assert_eq!(
        m.last().map(|x| x.1.as_str()),
        Some("Succeeded@canary"),
        "{m:?}"
    );
    let done = m.last().unwrap().0;
    // 50 % at minute 1, its pause over at minute 6, 100 % then; minute
    // 7's analysis passes the last stage.
    assert_eq!(done, 7, "{m:?}");
    // Every analysis passed, reported as one run.
    let runs: Vec<_> = s
        .events
        .iter()
        .filter(|e| matches!(e, SimEvent::Analyses { .. }))
        .collect();
    assert!(
        runs.iter()
            .all(|e| matches!(e, SimEvent::Analyses { verdict, .. } if verdict == "pass")),
        "{runs:?}"
    );
    // One range request per distinct query (canary and stable: volume,
    // success rate, latency each), not one per minute.
    assert_eq!(s.requests, s.queries.len());
    assert!(s.queries.len() >= 5, "{:?}", s.queries);
}

#[test]
fn a_canary_that_goes_bad_is_rolled_back_after_failure_limit_analyses() {
    // Healthy for 20 minutes, then 5 % of errors.
    let h = History::new(|t| if t < T0 + 20 * 60 { 99.9 } else { 95.0 });
    let r = rollout("[{ weight: 10, pause: 1h }, { weight: 100 }]");
    let s = simulate(&h, &service(), &r, T0, T0 + 7200);
    assert_eq!(s.outcome, "Failed", "{s:#?}");
    assert_eq!(s.weight, 0);
    // Failures at minutes 20 and 21: the second reaches failureLimit 2.
    let m = moves(&s);
    let rolled = m
        .iter()
        .find(|x| x.1.starts_with("RollingBack"))
        .expect("rolled back");
    assert_eq!(rolled.0, 21, "{m:?}");
    let fails = s.events.iter().find_map(|e| match e {
        SimEvent::Analyses {
            verdict,
            first,
            count,
            checks,
            detail,
            ..
        } if verdict == "fail" => Some((*first, *count, checks.clone(), detail.clone())),
        _ => None,
    });
    let (first, count, checks, detail) = fails.expect("a failing run");
    assert_eq!(((first - T0) / 60, count), (20, 2));
    assert_eq!(checks, ["success rate"]);
    assert!(detail.contains("95"), "{detail}");
    // The passes before it are one run of 19.
    assert!(
        s.events.iter().any(
            |e| matches!(e, SimEvent::Analyses { verdict, count: 19, .. } if verdict == "pass")
        ),
        "{:#?}",
        s.events
    );
}

#[test]
fn a_week_of_minutes_takes_a_few_requests_in_chunks_under_the_limit() {
    let h = History::new(|_| 99.9);
    // A pause longer than the week: the analysis runs every minute.
    let r = rollout("[{ weight: 10, pause: 30d }, { weight: 100 }]");
    let week = 7 * 24 * 3600;
    let s = simulate(&h, &service(), &r, T0, T0 + week);
    assert_eq!(s.outcome, "Progressing");
    // 10,080 minutes fit one chunk of 11,000 points per query.
    let queries = s.queries.len();
    assert_eq!(s.requests, queries);
    assert_eq!(h.calls.get(), queries);
    assert_eq!(h.points.get(), queries as u64 * 10_080);
    let analyses: u32 = s
        .events
        .iter()
        .map(|e| match e {
            SimEvent::Analyses { count, .. } => *count,
            SimEvent::Transition { .. } => 0,
        })
        .sum();
    assert_eq!(analyses, 10_080);
    // A fortnight: two chunks each.
    let h = History::new(|_| 99.9);
    let s = simulate(&h, &service(), &r, T0, T0 + 2 * week);
    assert_eq!(s.requests, 2 * queries);
    assert_eq!(h.points.get(), queries as u64 * 20_160);
}

#[test]
fn a_manual_gate_ends_the_simulation_waiting_for_a_person() {
    let h = History::new(|_| 99.9);
    let r = rollout("[{ weight: 10 }, { weight: 50, gate: manual }, { weight: 100 }]");
    let s = simulate(&h, &service(), &r, T0, T0 + 3600);
    assert_eq!(s.outcome, "Paused", "{s:#?}");
    assert_eq!(s.weight, 50);
}

#[test]
fn a_query_error_is_inconclusive_never_a_pass() {
    struct Down;
    impl RangeSource for Down {
        fn query_range(
            &self,
            _: &str,
            _: u64,
            _: u64,
            _: u64,
        ) -> Result<BTreeMap<u64, f64>, QueryError> {
            Err(QueryError::Unreachable {
                at: "http://p".into(),
                reason: "connection refused".into(),
            })
        }
    }
    let r = rollout("[{ weight: 10 }, { weight: 100 }]");
    let s = simulate(&Down, &service(), &r, T0, T0 + 600);
    assert_ne!(s.outcome, "Succeeded");
    assert!(s
        .events
        .iter()
        .any(|e| matches!(e, SimEvent::Analyses { verdict, .. } if verdict == "inconclusive")));
    assert!(s
        .events
        .iter()
        .all(|e| !matches!(e, SimEvent::Analyses { verdict, .. } if verdict == "pass")));
}

#[test]
fn each_move_shows_the_weight_it_leads_to() {
    let h = History::new(|_| 99.9);
    let mut r = rollout("[{ weight: 10, pause: 2m }, { weight: 50, pause: 2m }, { weight: 100 }]");
    r.analysis = None;
    let s = simulate(&h, &service(), &r, T0, T0 + 3600);
    let m = moves(&s);
    assert_eq!(
        m,
        [
            (0, "Progressing@step 0".into(), 10),
            (2, "Progressing@step 1".into(), 50),
            (4, "Progressing@step 2".into(), 100),
            // The last step, without a pause, is left at the next tick.
            (5, "Promoting@canary".into(), 100),
            (5, "Succeeded@canary".into(), 100),
        ]
    );
}

#[test]
fn a_frozen_failure_is_a_failure() {
    let h = History::new(|_| 90.0);
    let mut r = rollout("[{ weight: 10 }, { weight: 100 }]");
    r.freeze_on_failure = true;
    let s = simulate(&h, &service(), &r, T0, T0 + 600);
    assert_eq!(
        (s.outcome.as_str(), s.failed, s.weight),
        ("Paused", true, 10),
        "{s:#?}"
    );
}

#[test]
fn a_range_answer_is_what_an_instant_query_would_say_at_each_step() {
    // Two series: the first stops at 120 (a pod gone), the second starts
    // at 60; where both have a value, the first's counts.
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"pod":"a"},"values":[[60,"1"],[120,"2"]]},
        {"metric":{"pod":"b"},"values":[[60,"10"],[120,"20"],[180,"30"],[240,"NaN"]]}]}}"#;
    let got = parse_range(body).unwrap();
    assert_eq!(got, BTreeMap::from([(60, 1.0), (120, 2.0), (180, 30.0)]));
    let err = parse_range(r#"{"status":"error","error":"bad_data: parse error"}"#).unwrap_err();
    assert_eq!(err, QueryError::Refused("bad_data: parse error".into()));
}
