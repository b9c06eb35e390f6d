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
use meshplan_compiler::rollout::{self as planned, canary_weight, Subject};
use meshplan_compiler::Positions;
use meshplan_policy_lang::intent::rollout::Rollout;
use meshplan_policy_lang::parse::Repository;

use crate::cluster::Cluster;
use crate::outgoing::Http;
use crate::rollout::analysis::{self, Prometheus};
use crate::rollout::store::{self, StoreError};
use crate::rollout::webhook::{self, NotYet};
use crate::rollout::{At, CommandResult, Effect, Event, Phase, State, Verdict};
use crate::Error;
use meshplan_policy_lang::intent::rollout::WebhookType;

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
    /// revision; returns their transitions.
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
            };
            let fx = t.try_start(&key, now).await;
            t.describe(now);
            if previous.as_ref() != Some(&t.state) {
                t.save(cluster, &self.home).await.map_err(|e| match e {
                    StoreError::Api(e) => e,
                    StoreError::Conflict(k) => Error::Api {
                        what: format!("starting the rollout of {k}"),
                        detail:
                            "its state changed while it was written: retried on the next reconcile"
                                .into(),
                        code: Some(409),
                    },
                })?;
            }
            transitions.extend(transitioned(&key, &fx));
            tracked.insert(key, t);
        }
        self.tracked = tracked;
        Ok(transitions)
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

    /// Logs, records and announces rollout transitions.
    /// `revision`: the one whose rollouts moved (for commit statuses).
    pub(super) async fn transitioned(
        &mut self,
        transitions: Vec<Transitioned>,
        revision: Option<&str>,
    ) {
        self.announce(super::notices::rollouts(&transitions, revision));
        for t in transitions {
            let line = format!(
                "rollout {}: {} → {} ({})",
                t.service, t.from, t.to, t.reason
            );
            if t.warning() {
                self.log.warn(&line);
            } else {
                self.log.info(&line);
            }
            self.metrics.rollout_transition(&t.service);
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

impl Tracked {
    /// `namespace/name`.
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// One tick of this rollout: adopt a state written by someone else,
    /// carry out a queued command, analyse when due, let time pass, settle,
    /// save.
    async fn tick(
        &mut self,
        key: &str,
        stored: Option<&store::Stored>,
        cluster: &Cluster,
        home: &str,
    ) -> Result<TickOne, Error> {
        let mut one = TickOne::default();
        // Written by someone else (a command, another replica): adopt
        // it, unless it is about another canary or definition.
        if let Some(s) = stored {
            if Some(&s.resource_version) != self.version.as_ref()
                && s.state.canary == self.rollout.canary
                && s.state.fingerprint == self.fingerprint
            {
                self.state = s.state.clone();
                self.version = Some(s.resource_version.clone());
            }
        }
        let before = self.state.clone();
        let now = unix_now();
        let mut fx = Vec::new();
        if let Some(cmd) = self.state.command.take() {
            let (accepted, message) = match self.state.handle(&self.rollout, cmd.kind.event(), now)
            {
                Ok(effects) => {
                    let m = effects
                        .iter()
                        .filter_map(|e| match e {
                            Effect::Transitioned { from, to, .. } => Some(format!("{from} → {to}")),
                            Effect::Apply(_) => None,
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    fx.extend(effects);
                    (true, if m.is_empty() { "done".to_owned() } else { m })
                }
                Err(r) => (false, r.0),
            };
            self.state.command_result = Some(CommandResult {
                id: cmd.id,
                kind: cmd.kind,
                accepted,
                message,
                time: now,
            });
        }
        self.waiting = None;
        fx.extend(self.try_start(key, now).await);
        let mut events = Vec::new();
        if let Some(verdict) = self.analyse_if_due(now).await {
            one.analysis = Some(verdict_name(&verdict));
            events.push(Event::Analysis(verdict));
        }
        events.push(Event::Tick);
        fx.extend(self.step(key, events, now).await);
        fx.extend(self.settle(key, now).await);
        one.waiting = self.waiting.clone();
        self.describe(now);
        if self.state == before {
            return Ok(one);
        }
        match self.save(cluster, home).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                // Someone wrote first: theirs stands; re-read next tick.
                self.state = before;
                return Ok(one);
            }
            Err(StoreError::Api(e)) => {
                self.state = before;
                return Err(e);
            }
        }
        one.moved = fx.iter().any(|e| matches!(e, Effect::Apply(_)));
        one.moves = transitioned(key, &fx);
        self.notify(key, &one.moves);
        Ok(one)
    }

    /// Starts an idle rollout once its pre-rollout webhooks say yes.
    async fn try_start(&mut self, key: &str, now: u64) -> Vec<Effect> {
        if self.state.phase != Phase::Idle {
            return Vec::new();
        }
        if let Err(why) = self.hooks(WebhookType::PreRollout, key, "starting").await {
            self.waiting = Some(format!("waits for the pre-rollout webhook: {why}"));
            return self.not_yet(&why, now);
        }
        self.state.start(&self.rollout, now)
    }

    /// Feeds `events`; a move to a further stage waits for the
    /// step-confirmation webhooks (without their yes, the stage holds and
    /// the analyses still count).
    async fn step(&mut self, key: &str, events: Vec<Event>, now: u64) -> Vec<Effect> {
        let feed = |s: &mut State, rollout: &Rollout| -> Vec<Effect> {
            events
                .iter()
                .flat_map(|e| s.handle(rollout, e.clone(), now).unwrap_or_default())
                .collect()
        };
        let mut trial = self.state.clone();
        let fx = feed(&mut trial, &self.rollout);
        let advances = trial.at != self.state.at && trial.at != At::Stable;
        if advances && webhook::has(&self.rollout, WebhookType::StepConfirmation) {
            if let Err(why) = self
                .hooks(WebhookType::StepConfirmation, key, "the stage passed")
                .await
            {
                self.waiting = Some(format!("waits for step confirmation: {why}"));
                let failed = self.not_yet(&why, now);
                if !failed.is_empty() {
                    return failed;
                }
                self.state.hold = true;
                let fx = feed(&mut self.state, &self.rollout);
                self.state.hold = false;
                return fx;
            }
        }
        self.state = trial;
        fx
    }

    /// Finishes promotion and rollback once their webhooks say yes.
    async fn settle(&mut self, key: &str, now: u64) -> Vec<Effect> {
        let kind = match self.state.phase {
            Phase::Promoting => WebhookType::PostRollout,
            Phase::RollingBack { .. } => WebhookType::Rollback,
            _ => return Vec::new(),
        };
        let reason = self
            .state
            .history
            .last()
            .map_or(String::new(), |t| t.reason.clone());
        if let Err(why) = self.hooks(kind, key, &reason).await {
            self.waiting = Some(format!(
                "waits for the {} webhook: {why}",
                webhook::type_name(kind)
            ));
            return self.not_yet(&why, now);
        }
        self.state.settle(now)
    }

    /// Counts a gate's "not yet"; once its hook's `failureLimit` is
    /// reached, the rollout fails (the transition's effects).
    fn not_yet(&mut self, why: &NotYet, now: u64) -> Vec<Effect> {
        self.state.hook_failures += 1;
        match why.limit {
            Some(limit) if self.state.hook_failures >= limit => {
                self.waiting = None;
                self.state.webhook_failed(&why.hook, limit, now)
            }
            _ => Vec::new(),
        }
    }

    /// Calls the rollout's webhooks of `kind` (off the runtime: blocking).
    async fn hooks(&mut self, kind: WebhookType, key: &str, reason: &str) -> Result<(), NotYet> {
        if !webhook::has(&self.rollout, kind) {
            return Ok(());
        }
        let (http, rollout, key, state, reason) = (
            Arc::clone(&self.http),
            self.rollout.clone(),
            key.to_owned(),
            self.state.clone(),
            reason.to_owned(),
        );
        let out = tokio::task::spawn_blocking(move || {
            webhook::gate(&http, &rollout, kind, &key, &state, &reason)
        })
        .await
        .map_err(|e| NotYet {
            hook: webhook::type_name(kind).to_owned(),
            limit: None,
            message: format!("the webhook task failed: {e}"),
        })?;
        if out.is_ok() {
            self.state.hook_failures = 0;
        }
        out
    }

    /// Tells the notification webhooks about each transition, in the
    /// background: their answers gate nothing.
    fn notify(&self, key: &str, moves: &[Transitioned]) {
        if moves.is_empty() || !webhook::has(&self.rollout, WebhookType::Notification) {
            return;
        }
        let (http, rollout, key, state) = (
            Arc::clone(&self.http),
            self.rollout.clone(),
            key.to_owned(),
            self.state.clone(),
        );
        let reasons: Vec<String> = moves
            .iter()
            .map(|m| format!("{} → {}: {}", m.from, m.to, m.reason))
            .collect();
        tokio::task::spawn_blocking(move || {
            for r in reasons {
                let _ = webhook::gate(&http, &rollout, WebhookType::Notification, &key, &state, &r);
            }
        });
    }
    async fn save(&mut self, cluster: &Cluster, home: &str) -> Result<(), StoreError> {
        let v = store::save(
            cluster,
            home,
            &self.namespace,
            &self.name,
            &self.state,
            self.version.as_deref(),
        )
        .await?;
        self.version = Some(v);
        Ok(())
    }

    /// Runs the analysis when one is due: the stage is progressing, the
    /// rollout is analysed, and an interval passed since the last one.
    async fn analyse_if_due(&mut self, now: u64) -> Option<Verdict> {
        let analysis = self.rollout.analysis.clone()?;
        if self.state.phase != Phase::Progressing || self.state.skip_analysis {
            return None;
        }
        let every = analysis
            .interval
            .map_or(60, |d| (d.as_millis() / 1000).max(1));
        if now < self.state.stage_started + every {
            return None;
        }
        let due = match self.analysed_at {
            // Half a tick early is on time: the tick is a second.
            Some(t) => t.elapsed() + ROLLOUT_TICK / 2 >= std::time::Duration::from_secs(every),
            None => now >= self.state.last_analysis.as_ref().map_or(0, |r| r.time) + every,
        };
        if !due {
            return None;
        }
        self.analysed_at = Some(std::time::Instant::now());
        let Some(prom) = self.prometheus.clone() else {
            let v = Verdict::Inconclusive("meshplan.yaml sets no `metrics.url`".into());
            self.state.last_analysis = Some(analysis::Record {
                time: now,
                verdict: "inconclusive".into(),
                checks: Vec::new(),
            });
            return Some(v);
        };
        let Some(subject) = self.subject.clone() else {
            // Compiled right after its state was read: not reached.
            return Some(Verdict::Inconclusive(
                "the revision is not compiled yet".into(),
            ));
        };
        let (version, stable) = (self.rollout.canary.clone(), self.rollout.stable.clone());
        // Prometheus is called with a blocking client: off the runtime.
        let report = tokio::task::spawn_blocking(move || {
            let engine = meshplan_policy_lang::cel::eval::Engine::new();
            let mut report =
                analysis::analyse(&prom, &engine, &subject, &version, Some(&stable), &analysis);
            if let Some(gate) = &analysis.slo_gate {
                let mut checks = report.checks;
                checks.extend(analysis::slo_gate(&prom, &subject, &version, gate));
                report = analysis::finish(checks);
            }
            report
        })
        .await
        .ok()?;
        self.state.last_analysis = Some(report.record(now));
        Some(report.verdict)
    }

    /// Fills the state's display fields: versions, weight, next action.
    fn describe(&mut self, now: u64) {
        if let Some(w) = &self.waiting {
            self.state.stable = self.rollout.stable.clone();
            self.state.weight = canary_weight(&self.rollout, self.state.at.into());
            self.state.next = w.clone();
            return;
        }
        let key = self.key();
        let s = &mut self.state;
        s.stable = self.rollout.stable.clone();
        s.weight = canary_weight(&self.rollout, s.at.into());
        let every = self
            .rollout
            .analysis
            .as_ref()
            .map(|a| a.interval.map_or(60, |d| (d.as_millis() / 1000).max(1)));
        s.next = match &s.phase {
            Phase::Idle => "starts with the next reconcile".into(),
            Phase::Progressing => match (every, s.skip_analysis) {
                (Some(every), false) => {
                    let last = s.last_analysis.as_ref().map_or(0, |r| r.time);
                    let due = (last + every).max(s.stage_started + every);
                    format!("analysis in {}s", due.saturating_sub(now))
                }
                _ => {
                    let pause = match s.at {
                        crate::rollout::At::Step(i) => self
                            .rollout
                            .steps
                            .get(i)
                            .and_then(|st| st.pause)
                            .map_or(0, |d| d.as_millis() / 1000),
                        _ => 0,
                    };
                    format!(
                        "next step in {}s",
                        (s.stage_started + pause).saturating_sub(now)
                    )
                }
            },
            Phase::Paused { reason } => match reason {
                crate::rollout::PauseReason::ManualGate => {
                    format!("waits for `meshplan rollout promote {}`", key)
                }
                crate::rollout::PauseReason::Frozen => {
                    "frozen after failures: `promote --force` or `abort`".into()
                }
                _ => format!("paused: `meshplan rollout resume {key}`"),
            },
            Phase::Promoting | Phase::RollingBack { .. } => "settling".into(),
            Phase::Succeeded => "done: the canary takes all traffic".into(),
            Phase::Failed { .. } => "rolled back: push a new canary to try again".into(),
        };
    }
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
