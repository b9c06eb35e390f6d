//! The controller's Prometheus metrics, in the text exposition format.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `meshplan_reconcile_duration_seconds` | histogram | one reconcile: fetch, compile, plan, apply |
//! | `meshplan_reconciles_total{result}` | counter | by result: `applied`, `unchanged`, `failed`, `refused` |
//! | `meshplan_last_applied_revision_info{revision}` | gauge (1) | the revision the cluster runs |
//! | `meshplan_last_applied_timestamp_seconds` | gauge | when it was applied |
//! | `meshplan_drift_objects` | gauge | objects that differ from Git now (report-only kinds, or before healing) |
//! | `meshplan_drift_healed_total` | counter | out-of-band edits undone |
//! | `meshplan_apply_errors_total{reason}` | counter | failed calls, by error label |
//! | `meshplan_managed_objects` | gauge | objects in the inventory |
//! | `meshplan_leader` | gauge | 1 on the replica that acts |
//! | `meshplan_rollout_phase{service,phase}` | gauge (1) | each rollout's phase |
//! | `meshplan_rollout_canary_weight{service}` | gauge | the canary's share of traffic, percent |
//! | `meshplan_rollout_transitions_total{service}` | counter | rollout transitions |
//! | `meshplan_rollout_analyses_total{service,verdict}` | counter | analyses, by verdict: `pass`, `fail`, `inconclusive` |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use super::outcome::Outcome;

const BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    results: BTreeMap<Outcome, u64>,
    revision: Option<String>,
    applied_at: f64,
    drift: u64,
    healed: u64,
    errors: BTreeMap<&'static str, u64>,
    managed: u64,
    leader: bool,
    /// `(service, phase, weight)`.
    rollouts: Vec<(String, &'static str, u32)>,
    transitions: BTreeMap<String, u64>,
    analyses: BTreeMap<(String, &'static str), u64>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn reconciled(&self, took: Duration, result: Outcome) {
        let secs = took.as_secs_f64();
        self.with(|m| {
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    m.buckets[i] += 1;
                }
            }
            m.count += 1;
            m.sum += secs;
            *m.results.entry(result).or_default() += 1;
        });
    }

    pub fn applied(&self, revision: &str, at_unix: f64, managed: usize) {
        self.with(|m| {
            m.revision = Some(revision.to_owned());
            m.applied_at = at_unix;
            m.managed = managed as u64;
        });
    }

    pub fn drift(&self, objects: usize, healed: usize) {
        self.with(|m| {
            m.drift = objects as u64;
            m.healed += healed as u64;
        });
    }

    pub fn error(&self, label: &'static str) {
        self.with(|m| *m.errors.entry(label).or_default() += 1);
    }

    pub fn leader(&self, leader: bool) {
        self.with(|m| m.leader = leader);
    }

    pub fn rollouts(&self, states: Vec<(String, &'static str, u32)>) {
        self.with(|m| m.rollouts = states);
    }

    pub fn rollout_transition(&self, service: &str) {
        self.with(|m| *m.transitions.entry(service.to_owned()).or_default() += 1);
    }

    pub fn rollout_analysis(&self, service: &str, verdict: &'static str) {
        self.with(|m| *m.analyses.entry((service.to_owned(), verdict)).or_default() += 1);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.with(|m| {
            let mut s = String::new();
            let _ = writeln!(s, "# HELP meshplan_reconcile_duration_seconds Time one reconcile took (fetch, compile, plan, apply).");
            let _ = writeln!(s, "# TYPE meshplan_reconcile_duration_seconds histogram");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(s, "meshplan_reconcile_duration_seconds_bucket{{le=\"{b}\"}} {}", m.buckets[i]);
            }
            let _ = writeln!(s, "meshplan_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}", m.count);
            let _ = writeln!(s, "meshplan_reconcile_duration_seconds_sum {}", m.sum);
            let _ = writeln!(s, "meshplan_reconcile_duration_seconds_count {}", m.count);
            let _ = writeln!(s, "# HELP meshplan_reconciles_total Reconciles by result.");
            let _ = writeln!(s, "# TYPE meshplan_reconciles_total counter");
            for r in Outcome::ALL {
                let _ = writeln!(s, "meshplan_reconciles_total{{result=\"{}\"}} {}", r.metric_label(), m.results.get(&r).copied().unwrap_or(0));
            }
            let _ = writeln!(s, "# HELP meshplan_last_applied_revision_info The revision the cluster runs.");
            let _ = writeln!(s, "# TYPE meshplan_last_applied_revision_info gauge");
            if let Some(r) = &m.revision {
                let _ = writeln!(s, "meshplan_last_applied_revision_info{{revision=\"{}\"}} 1", escape(r));
            }
            let _ = writeln!(s, "# HELP meshplan_last_applied_timestamp_seconds When the last revision was applied.");
            let _ = writeln!(s, "# TYPE meshplan_last_applied_timestamp_seconds gauge");
            let _ = writeln!(s, "meshplan_last_applied_timestamp_seconds {}", m.applied_at);
            let _ = writeln!(s, "# HELP meshplan_drift_objects Objects that differ from Git now.");
            let _ = writeln!(s, "# TYPE meshplan_drift_objects gauge");
            let _ = writeln!(s, "meshplan_drift_objects {}", m.drift);
            let _ = writeln!(s, "# HELP meshplan_drift_healed_total Out-of-band edits undone.");
            let _ = writeln!(s, "# TYPE meshplan_drift_healed_total counter");
            let _ = writeln!(s, "meshplan_drift_healed_total {}", m.healed);
            let _ = writeln!(s, "# HELP meshplan_apply_errors_total Failed reconciles and API calls, by reason.");
            let _ = writeln!(s, "# TYPE meshplan_apply_errors_total counter");
            for (k, v) in &m.errors {
                let _ = writeln!(s, "meshplan_apply_errors_total{{reason=\"{k}\"}} {v}");
            }
            let _ = writeln!(s, "# HELP meshplan_managed_objects Objects in the inventory.");
            let _ = writeln!(s, "# TYPE meshplan_managed_objects gauge");
            let _ = writeln!(s, "meshplan_managed_objects {}", m.managed);
            let _ = writeln!(s, "# HELP meshplan_leader 1 on the replica that acts.");
            let _ = writeln!(s, "# TYPE meshplan_leader gauge");
            let _ = writeln!(s, "meshplan_leader {}", u8::from(m.leader));
            let _ = writeln!(s, "# HELP meshplan_rollout_phase Each rollout's phase.");
            let _ = writeln!(s, "# TYPE meshplan_rollout_phase gauge");
            for (svc, phase, _) in &m.rollouts {
                let _ = writeln!(s, "meshplan_rollout_phase{{service=\"{}\",phase=\"{phase}\"}} 1", escape(svc));
            }
            let _ = writeln!(s, "# HELP meshplan_rollout_canary_weight The canary's share of traffic, in percent.");
            let _ = writeln!(s, "# TYPE meshplan_rollout_canary_weight gauge");
            for (svc, _, w) in &m.rollouts {
                let _ = writeln!(s, "meshplan_rollout_canary_weight{{service=\"{}\"}} {w}", escape(svc));
            }
            let _ = writeln!(s, "# HELP meshplan_rollout_transitions_total Rollout transitions.");
            let _ = writeln!(s, "# TYPE meshplan_rollout_transitions_total counter");
            for (svc, n) in &m.transitions {
                let _ = writeln!(s, "meshplan_rollout_transitions_total{{service=\"{}\"}} {n}", escape(svc));
            }
            let _ = writeln!(s, "# HELP meshplan_rollout_analyses_total Rollout analyses, by verdict.");
            let _ = writeln!(s, "# TYPE meshplan_rollout_analyses_total counter");
            for ((svc, v), n) in &m.analyses {
                let _ = writeln!(s, "meshplan_rollout_analyses_total{{service=\"{}\",verdict=\"{v}\"}} {n}", escape(svc));
            }
            s
        })
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_buckets_and_the_revision() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(30), Outcome::Applied);
        m.reconciled(Duration::from_secs(3), Outcome::Failed);
        m.applied("abc", 10.0, 5);
        let text = m.render();
        assert!(
            text.contains("meshplan_reconcile_duration_seconds_bucket{le=\"0.05\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("meshplan_reconcile_duration_seconds_count 2\n"));
        assert!(text.contains("meshplan_reconciles_total{result=\"failed\"} 1\n"));
        assert!(text.contains("meshplan_last_applied_revision_info{revision=\"abc\"} 1\n"));
        assert!(text.contains("meshplan_managed_objects 5\n"));
    }
}
