//! Progressive delivery inside the reconciler: each service's rollout state
//! machine ([`crate::rollout`]) driven by time, analysis and commands, its
//! position fed to the compiler — the weights meshplan applies *are* the
//! rollout's state, so no second tool fights over them, and real drift is
//! still caught.
//!
//! # Expected flow
//!
//! - **A new revision**: for each service with a `rollout` (as its intent
//!   declares it: nothing is lowered to learn it), the stored state is read
//!   and resumed — or restarted at the first stage when the canary version
//!   or the rollout changed, or when no state exists (a rebuilt cluster
//!   starts at step 0, never at 100 %) — and started when idle. Its
//!   position goes to the compiler, which lowers the revision once and
//!   hands back each rollout's [`Subject`]: what its analysis measures.
//!   The states are saved once it compiled ([`Rollouts::save_started`]):
//!   a revision that does not compile leaves them as they were.
//! - **Every tick** (a second while a rollout runs): the stored states are
//!   listed (one LIST); a pending command (`meshplan rollout promote`…) is
//!   applied and its result recorded; a due analysis runs against
//!   Prometheus; time advances pauses; promotion and rollback settle. When
//!   a position moved, the revision is compiled again with the new
//!   positions and applied.
//!
//! # Guarantees
//!
//! - **Write, then apply**: a state is saved (compare-and-swap) before the
//!   weights of its position are applied. A reconciler killed in between
//!   applies the saved position when it restarts: it resumes at the same
//!   step. A save that loses the race (another replica, a command) is
//!   dropped and the state re-read on the next tick.
//! - **No evidence, no progress**: without `metrics.url`, or with
//!   Prometheus unreachable, an analysis is inconclusive.
//! - **Unreadable state stops the reconcile** rather than guessing a
//!   position: applying "not started" would roll a running canary back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use meshplan_compiler::metrics::Vocabulary;
use meshplan_compiler::rollout::{self as planned, Subject};
use meshplan_compiler::Positions;
use meshplan_policy_lang::intent::rollout::Rollout;
use meshplan_policy_lang::parse::Repository;

use crate::cluster::Cluster;
use crate::outgoing::Http;
use crate::rollout::analysis::Prometheus;
use crate::rollout::store::{self, StoreError};
use crate::rollout::{Effect, Phase, State, Verdict};
use crate::Error;

mod tracked;

/// How often the controller ticks while a rollout runs.
pub const ROLLOUT_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One transition, for the log, an Event and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transitioned {
    /// `namespace/name`.
    pub service: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    /// The phase it moved to.
    pub phase: Phase,
}

impl Transitioned {
    /// Ended badly (rolled back, failed, frozen).
    pub fn warning(&self) -> bool {
        self.phase.ends_badly()
    }
}

/// What a tick did.
#[derive(Debug, Default)]
pub struct Ticked {
    /// A position moved: compile and apply again.
    pub moved: bool,
    pub transitions: Vec<Transitioned>,
    /// `(service, verdict)` of each analysis run.
    pub analyses: Vec<(String, &'static str)>,
    /// Webhooks that did not answer yes (for the log).
    pub waiting: Vec<String>,
}

/// The rollouts of the current revision.
#[derive(Debug)]
pub struct Rollouts {
    /// meshplan's namespace, where states are kept.
    home: String,
    /// The client of Prometheus and the webhooks.
    http: Arc<Http>,
    tracked: BTreeMap<String, Tracked>,
}

/// See [`Rollouts::save_point`].
#[derive(Debug)]
pub struct SavePoint(BTreeMap<String, Tracked>);

#[derive(Clone, Debug)]
struct Tracked {
    namespace: String,
    name: String,
    rollout: Rollout,
    fingerprint: String,
    /// The service as compiled for the current revision ([`Rollouts::attach`]).
    subject: Option<Subject>,
    prometheus: Option<Prometheus>,
    http: Arc<Http>,
    state: State,
    /// The stored version the state was read or written at.
    version: Option<String>,
    /// The webhook the rollout waits for, and why (shown as its next step).
    waiting: Option<String>,
    /// When this process last analysed it (due times to the millisecond;
    /// the stored record has whole seconds).
    analysed_at: Option<std::time::Instant>,
    /// Started or restarted by [`Rollouts::refresh`], not yet saved
    /// ([`Rollouts::save_started`]).
    unsaved: bool,
}

impl Rollouts {
    pub fn new(home: &str, http: Arc<Http>) -> Rollouts {
        Rollouts {
            home: home.to_owned(),
            http,
            tracked: BTreeMap::new(),
        }
    }

    /// The rollouts tracked now, to [`Rollouts::restore`] if the revision
    /// that replaces them turns out not to compile.
    pub fn save_point(&self) -> SavePoint {
        SavePoint(self.tracked.clone())
    }

    pub fn restore(&mut self, p: SavePoint) {
        self.tracked = p.0;
    }

    /// Whether any rollout is under way (ticks are then frequent).
    pub fn active(&self) -> bool {
        self.tracked.values().any(|t| !t.state.finished())
    }

    /// Where each rollout stands, for the compiler.
    pub fn positions(&self) -> Positions {
        Positions {
            by_service: self
                .tracked
                .iter()
                .map(|(k, t)| (k.clone(), t.state.at.into()))
                .collect(),
        }
    }

    /// The states, by `namespace/name`.
    pub fn states(&self) -> impl Iterator<Item = (&String, &State)> {
        self.tracked.iter().map(|(k, t)| (k, &t.state))
    }

    /// Reads, resumes (or restarts) and starts the rollouts of a new
    /// revision; returns their transitions. Nothing is saved until
    /// [`Rollouts::save_started`]: a revision that then fails to compile
    /// leaves the stored states as they were.
    pub async fn refresh(
        &mut self,
        cluster: &Cluster,
        repo: &Repository,
    ) -> Result<Vec<Transitioned>, Error> {
        let now = unix_now();
        let config = repo.config.as_ref().map(|c| &c.value);
        let prometheus = config
            .and_then(|c| c.metrics.as_ref())
            .filter(|m| !m.url.is_empty())
            .map(|m| Prometheus {
                url: m.url.clone(),
                http: Arc::clone(&self.http),
            });
        // `check` refuses an analysis without a known flavour (MP2014), so
        // a revision that gets here has one; without, nothing is queried.
        let prometheus = prometheus.filter(|_| Vocabulary::of(config).is_some());
        let mut tracked = BTreeMap::new();
        let mut transitions = Vec::new();
        for d in planned::declared(repo) {
            let key = d.key();
            let rollout = d.rollout.clone();
            let fingerprint = fingerprint(&rollout);
            let stored = store::load(cluster, &self.home, d.namespace, d.name).await?;
            let version = stored.as_ref().map(|s| s.resource_version.clone());
            let previous = stored.map(|s| s.state);
            let state = State::resume_or_restart(previous.clone(), &rollout, &fingerprint, now);
            let mut t = Tracked {
                namespace: d.namespace.to_owned(),
                name: d.name.to_owned(),
                rollout,
                fingerprint,
                subject: None,
                prometheus: prometheus.clone(),
                http: Arc::clone(&self.http),
                state,
                version,
                waiting: None,
                analysed_at: None,
                unsaved: false,
            };
            let fx = t.try_start(&key, now).await;
            t.describe(now);
            t.unsaved = previous.as_ref() != Some(&t.state);
            transitions.extend(transitioned(&key, &fx));
            tracked.insert(key, t);
        }
        self.tracked = tracked;
        Ok(transitions)
    }

    /// Saves the states [`Rollouts::refresh`] started or restarted, once
    /// the revision compiled and before its weights are applied (write,
    /// then apply).
    pub async fn save_started(&mut self, cluster: &Cluster) -> Result<(), Error> {
        for t in self.tracked.values_mut().filter(|t| t.unsaved) {
            t.save(cluster, &self.home).await.map_err(|e| match e {
                StoreError::Api(e) => e,
                StoreError::Conflict(k) => Error::Api {
                    what: format!("starting the rollout of {k}"),
                    detail: "its state changed while it was written: retried on the next reconcile"
                        .into(),
                    code: Some(409),
                },
            })?;
            t.unsaved = false;
        }
        Ok(())
    }

    /// Hands each rollout the service as the compiler lowered it for the
    /// current revision and positions: what its next analysis measures.
    pub fn attach(&mut self, subjects: &[Subject]) {
        for s in subjects {
            if let Some(t) = self.tracked.get_mut(&s.key()) {
                t.subject = Some(s.clone());
            }
        }
    }

    /// One tick: commands, due analyses, time, settling.
    pub async fn tick(&mut self, cluster: &Cluster) -> Result<Ticked, Error> {
        use futures::stream::{self, StreamExt};
        let mut out = Ticked::default();
        if self.tracked.is_empty() {
            return Ok(out);
        }
        let stored = store::list(cluster, &self.home).await?;
        let home = self.home.as_str();
        // Rollouts move independently: their analyses (Prometheus) and
        // saves run side by side, a bounded number at a time, so a tick
        // with many due analyses still fits in its second.
        let results: Vec<(String, Result<TickOne, Error>)> = stream::iter(self.tracked.iter_mut())
            .map(|(key, t)| {
                let s = stored.get(key);
                async move { (key.clone(), t.tick(key, s, cluster, home).await) }
            })
            .buffered(TICK_CONCURRENCY)
            .collect()
            .await;
        for (key, r) in results {
            let one = r?;
            if let Some(v) = one.analysis {
                out.analyses.push((key.clone(), v));
            }
            if let Some(w) = one.waiting {
                out.waiting.push(format!("rollout {key}: {w}"));
            }
            out.moved |= one.moved;
            out.transitions.extend(one.moves);
        }
        Ok(out)
    }
}

/// Rollouts worked on at once in a tick.
const TICK_CONCURRENCY: usize = 4;

/// What one rollout's tick did.
#[derive(Default)]
struct TickOne {
    analysis: Option<&'static str>,
    waiting: Option<String>,
    moved: bool,
    moves: Vec<Transitioned>,
}

/// With every rollout finished, one tick in this many.
const IDLE_TICKS: u32 = 10;

// The controller's side: ticking the rollouts, and announcing what moved.
impl super::Controller {
    /// Moves the rollouts; when a position moved, compiles the current
    /// revision again at the new positions and applies it.
    pub(super) async fn rollout_tick(&mut self) {
        if !self.rollouts.active() {
            // Finished rollouts only answer commands (refusals): seldom.
            self.idle_ticks += 1;
            if self.idle_ticks < IDLE_TICKS {
                return;
            }
        }
        self.idle_ticks = 0;
        let ticked = match self.rollouts.tick(&self.cluster).await {
            Ok(t) => t,
            Err(e) => {
                self.log.warn(&format!("rollouts: {e}"));
                return;
            }
        };
        for (service, verdict) in &ticked.analyses {
            self.metrics.rollout_analysis(service, verdict);
        }
        // Said once, not every second.
        for w in &ticked.waiting {
            if !self.waiting.contains(w) {
                self.log.warn(w);
            }
        }
        self.waiting = ticked.waiting.iter().cloned().collect();
        let revision = self.desired.as_ref().map(|d| d.name().to_owned());
        self.transitioned(ticked.transitions, revision.as_deref())
            .await;
        if !ticked.moved {
            return;
        }
        let Some(dir) = self.desired.as_ref().map(|d| d.dir.clone()) else {
            return;
        };
        let built = self
            .check(&dir)
            .and_then(|(repo, report)| self.build(&repo, &report));
        match built {
            Ok((objects, summary)) => {
                if let Some(d) = &mut self.desired {
                    d.objects = objects;
                    d.revision.summary = std::sync::Arc::new(summary);
                }
                self.sync(std::time::Instant::now()).await;
            }
            Err((message, _)) => self.log.warn(&format!("rollouts: {message}")),
        }
    }

    /// Logs, records and announces rollout transitions: each with a log
    /// line and an Event, or, more than [`DETAILED`] at once that did not
    /// go wrong (a first sync of a large repository starts every rollout),
    /// one line and one Event per kind of move, each transition's line at
    /// debug level.
    /// `revision`: the one whose rollouts moved (for commit statuses).
    pub(super) async fn transitioned(
        &mut self,
        transitions: Vec<Transitioned>,
        revision: Option<&str>,
    ) {
        self.announce(super::notices::rollouts(&transitions, revision));
        for t in &transitions {
            self.metrics.rollout_transition(&t.service);
        }
        // What went wrong is told service by service, however many.
        let (warnings, fine): (Vec<&Transitioned>, Vec<&Transitioned>) =
            transitions.iter().partition(|t| t.warning());
        let mut lines: Vec<(&Transitioned, String)> =
            warnings.iter().map(|t| (*t, line(t))).collect();
        match fine.len() > DETAILED {
            false => lines.extend(fine.iter().map(|t| (*t, line(t)))),
            true => {
                for t in &fine {
                    self.log.debug(&line(t));
                }
                lines.extend(summarised(&fine));
            }
        }
        for (t, line) in lines {
            match t.warning() {
                true => self.log.warn(&line),
                false => self.log.info(&line),
            }
            let reason = t.phase.event_reason();
            super::status::event(
                &self.cluster,
                &self.cfg.inventory,
                t.warning(),
                reason,
                &line,
            )
            .await;
        }
        self.metrics.rollouts(
            self.rollouts
                .states()
                .map(|(k, s)| (k.clone(), s.phase.name(), s.weight))
                .collect(),
        );
    }
}

/// One transition's log line and Event message.
fn line(t: &Transitioned) -> String {
    format!(
        "rollout {}: {} → {} ({})",
        t.service, t.from, t.to, t.reason
    )
}

/// More transitions at once than this are summarised (see
/// `Controller::transitioned`).
const DETAILED: usize = 20;

/// One line per kind of move (from, to, reason), with how many services
/// made it and the first of them, each beside one of its transitions.
fn summarised<'a>(transitions: &[&'a Transitioned]) -> Vec<(&'a Transitioned, String)> {
    let mut kinds: BTreeMap<(&str, &str, &str), (usize, &Transitioned)> = BTreeMap::new();
    for t in transitions.iter().copied() {
        kinds.entry((&t.from, &t.to, &t.reason)).or_insert((0, t)).0 += 1;
    }
    kinds
        .into_iter()
        .map(|((from, to, reason), (n, first))| {
            let line = match n {
                1 => line(first),
                n => format!(
                    "rollouts of {n} services: {from} → {to} ({reason}), {} and {} more (each at debug level)",
                    first.service,
                    n - 1
                ),
            };
            (first, line)
        })
        .collect()
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail(_) => "fail",
        Verdict::Inconclusive(_) => "inconclusive",
    }
}

fn transitioned(key: &str, fx: &[Effect]) -> Vec<Transitioned> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Transitioned {
                from,
                to,
                reason,
                phase,
            } => Some(Transitioned {
                service: key.to_owned(),
                from: from.clone(),
                to: to.clone(),
                reason: reason.clone(),
                phase: phase.clone(),
            }),
            Effect::Apply(_) => None,
        })
        .collect()
}

/// Where the cluster's rollouts stand, for a one-off `apply` or `diff
/// --cluster` of `repo`: the stored step of every rollout still about the
/// same canary and definition (anything else has not started). Without
/// these, a manual apply during a rollout would put every canary back on
/// stable, and a CI diff would report every running rollout as a change.
/// No MeshRollout CRD (meshplan run never installed): no rollouts.
pub async fn current_positions(
    cluster: &Cluster,
    home: &str,
    repo: &Repository,
) -> Result<Positions, Error> {
    let declared: Vec<_> = planned::declared(repo).collect();
    // No rollout in the repository: nothing to ask the cluster.
    if declared.is_empty() {
        return Ok(Positions::default());
    }
    let stored = match store::list(cluster, home).await {
        Ok(s) => s,
        Err(Error::Api {
            code: Some(404), ..
        }) => return Ok(Positions::default()),
        Err(e) => return Err(e),
    };
    let mut positions = Positions::default();
    for d in declared {
        let Some(st) = stored.get(&d.key()) else {
            continue;
        };
        if st.state.canary == d.rollout.canary && st.state.fingerprint == fingerprint(d.rollout) {
            positions.by_service.insert(d.key(), st.state.at.into());
        }
    }
    Ok(positions)
}

/// A short hash of the rollout's definition: a change restarts it.
pub fn fingerprint(r: &Rollout) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(r).unwrap_or_default();
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(service: &str, to: &str, phase: Phase) -> Transitioned {
        Transitioned {
            service: service.into(),
            from: "idle".into(),
            to: to.into(),
            reason: "rollout started".into(),
            phase,
        }
    }

    #[test]
    fn many_transitions_are_counted_per_kind_of_move() {
        // Before: 10,000 services starting their rollouts were 10,000 info
        // lines and 10,000 Events.
        let mut all: Vec<Transitioned> = (0..30)
            .map(|i| moved(&format!("shop/s{i:02}"), "progressing", Phase::Progressing))
            .collect();
        all.push(moved("shop/odd", "succeeded", Phase::Succeeded));
        let all: Vec<&Transitioned> = all.iter().collect();
        let lines: Vec<String> = summarised(&all).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            lines,
            [
                "rollouts of 30 services: idle → progressing (rollout started), shop/s00 and 29 more (each at debug level)",
                "rollout shop/odd: idle → succeeded (rollout started)",
            ]
        );
    }
}
