//! The `rollout` stage: one state machine per service, moving its canary
//! through the intent's stages from analysis verdicts, time and manual
//! gates. Pure: the controller feeds it [`Event`]s, persists its [`State`]
//! and renders the [`Position`] it reports (the compiler turns a position
//! into weights, so the weights meshplan applies *are* the rollout's
//! state — no second tool fights over them).
//!
//! # Expected flow
//!
//! ```text
//! Idle ─start─▶ Progressing(step i) ─pass, pause elapsed─▶ Progressing(i+1) … ─▶ Promoting ─▶ Succeeded
//!                 │   ▲                     │
//!                 │   └──resume/promote── Paused (manual gate, pause, inconclusive, frozen)
//!                 └─failureLimit fails / abort─▶ RollingBack ─▶ Failed
//! ```
//!
//! - **canary**: the weight of each step in turn; a step advances once its
//!   `pause` has elapsed and (with analysis) at least one check passed on it.
//! - **blueGreen**: the canary gets no traffic while the steps' pauses and
//!   checks run; promotion switches everything at once.
//! - **abTest**: the A/B match reaches the canary ([`Position::Shadow`])
//!   for `abTest.iterations` passing checks, then promotion.
//! - **mirror**: a copy of traffic reaches the canary for
//!   `mirror.iterations` passing checks, then the steps as for canary.
//!
//! # Guarantees
//!
//! - Failures and inconclusive checks are counted *consecutively*: a pass
//!   resets both, a fail resets the inconclusive count.
//! - `failureLimit` consecutive failures roll back (weights to stable), or,
//!   with `freezeOnFailure`, hold the current weights (paused, frozen).
//! - An inconclusive check (too little traffic, no data, Prometheus
//!   unreachable) never advances; after `inconclusiveLimit` of them the
//!   intent's `onInconclusive` applies (pause by default).
//! - A new canary version (or a changed rollout) restarts the machine at
//!   the first stage; a lost state (a rebuilt cluster) starts there too —
//!   never at 100 %.
//! - Manual commands act only where they make sense: `promote` ends a
//!   manual gate (or promotes at once when forced), `resume` ends a pause,
//!   `abort` rolls back from any active phase; others are refused with a
//!   reason and change nothing.

pub mod analysis;
pub mod command;
pub mod simulate;
pub mod store;
pub mod webhook;

pub use command::{Command, CommandKind, CommandResult};

use serde::{Deserialize, Serialize};

use meshplan_compiler::Position;
use meshplan_policy_lang::intent::rollout::{Gate, OnInconclusive, Rollout, Strategy};

/// Where a rollout is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
pub enum Phase {
    /// Not started: stable takes everything.
    Idle,
    Progressing,
    Paused {
        reason: PauseReason,
    },
    /// Everything on the canary; post-rollout webhooks to run.
    Promoting,
    Succeeded,
    /// Back to stable; rollback webhooks to run.
    RollingBack {
        reason: String,
    },
    Failed {
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PauseReason {
    /// A `gate: manual` step: waits for `meshplan rollout promote`.
    ManualGate,
    /// `meshplan rollout pause`.
    Requested,
    /// Too many inconclusive checks (`onInconclusive: pause`).
    Inconclusive,
    /// Failed, holding the weights (`freezeOnFailure`).
    Frozen,
}

/// Where the traffic is, as the compiler understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "at", content = "step")]
pub enum At {
    Stable,
    Shadow,
    Step(usize),
    Canary,
}

impl From<At> for Position {
    fn from(a: At) -> Position {
        match a {
            At::Stable => Position::NotStarted,
            At::Shadow => Position::Shadow,
            At::Step(i) => Position::Step(i),
            At::Canary => Position::Promoted,
        }
    }
}

/// A rollout's persisted state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The canary version this rollout is for.
    pub canary: String,
    /// A fingerprint of the rollout's definition: a change restarts it.
    pub fingerprint: String,
    #[serde(flatten)]
    pub phase: Phase,
    pub at: At,
    /// Unix seconds when the current stage began.
    pub stage_started: u64,
    /// Consecutive failed checks.
    pub failures: u32,
    /// Consecutive inconclusive checks.
    pub inconclusive: u32,
    /// Passing checks in the current stage.
    pub passes: u32,
    /// Analysis skipped (`meshplan rollout skip-analysis`).
    pub skip_analysis: bool,
    /// The phase before a manual pause, restored by `resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_from: Option<Box<Phase>>,
    /// The last transitions, newest last (at most [`HISTORY`]).
    pub history: Vec<Transition>,
    /// The stable version (shown by `rollout status`).
    #[serde(default)]
    pub stable: String,
    /// The canary's share of traffic now, in percent (shown by `rollout
    /// status`; the compiler derives the weights from `at`).
    #[serde(default)]
    pub weight: u32,
    /// The last analysis, check by check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<analysis::Record>,
    /// A command waiting for the controller (`meshplan rollout promote`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// What became of the last command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_result: Option<CommandResult>,
    /// What happens next, in a sentence.
    #[serde(default)]
    pub next: String,
    /// "Not yet" answers in a row of the gate the rollout waits at (for
    /// the webhooks' `failureLimit`); reset by any transition.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hook_failures: u32,
    /// Held by the controller: a stage whose conditions hold does not
    /// advance (its step-confirmation webhooks said "not yet"). Never
    /// stored.
    #[serde(skip)]
    pub hold: bool,
}

/// How many transitions a state remembers.
pub const HISTORY: usize = 50;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub time: u64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// An analysis verdict for one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// Too little traffic, no data, Prometheus unreachable.
    Inconclusive(String),
}

/// What happens to a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Time passes (pauses elapse).
    Tick,
    Analysis(Verdict),
    /// `meshplan rollout promote`: ends a manual gate; `force` promotes
    /// from any active phase.
    Promote {
        force: bool,
    },
    Abort,
    Pause,
    Resume,
    SkipAnalysis,
}

/// What the controller must do after a step of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Render and apply the new position's weights.
    Apply(At),
    /// Record a transition (Event, metric, notification webhook).
    Transitioned {
        from: String,
        to: String,
        reason: String,
        /// The phase it moved to.
        phase: Phase,
    },
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "Idle",
            Phase::Progressing => "Progressing",
            Phase::Paused { .. } => "Paused",
            Phase::Promoting => "Promoting",
            Phase::Succeeded => "Succeeded",
            Phase::RollingBack { .. } => "RollingBack",
            Phase::Failed { .. } => "Failed",
        }
    }

    fn active(&self) -> bool {
        matches!(self, Phase::Progressing | Phase::Paused { .. })
    }

    /// The reason of the Event recorded when a rollout enters this phase.
    pub fn event_reason(&self) -> &'static str {
        match self {
            Phase::Idle => "Rollout",
            Phase::Progressing => "RolloutProgressing",
            Phase::Paused { .. } => "RolloutPaused",
            Phase::Promoting | Phase::Succeeded => "RolloutPromoted",
            Phase::RollingBack { .. } | Phase::Failed { .. } => "RolloutRolledBack",
        }
    }

    /// Whether entering this phase is bad news (a warning Event, a failed
    /// commit status): rolled back, failed, or frozen on failure.
    pub fn ends_badly(&self) -> bool {
        match self {
            Phase::RollingBack { .. } | Phase::Failed { .. } => true,
            Phase::Paused { reason } => *reason == PauseReason::Frozen,
            Phase::Idle | Phase::Progressing | Phase::Promoting | Phase::Succeeded => false,
        }
    }
}

impl State {
    /// A rollout of `canary` not started yet.
    pub fn new(canary: &str, fingerprint: &str, now: u64) -> State {
        State {
            canary: canary.into(),
            fingerprint: fingerprint.into(),
            phase: Phase::Idle,
            at: At::Stable,
            stage_started: now,
            failures: 0,
            inconclusive: 0,
            passes: 0,
            skip_analysis: false,
            paused_from: None,
            history: Vec::new(),
            stable: String::new(),
            weight: 0,
            last_analysis: None,
            command: None,
            command_result: None,
            next: String::new(),
            hook_failures: 0,
            hold: false,
        }
    }

    /// Whether the rollout is over (succeeded, or failed and rolled back).
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Succeeded | Phase::Failed { .. })
    }

    /// The state for `rollout` now: `previous` if it is still about the
    /// same canary and definition, else a fresh one (a new canary pushed
    /// mid-rollout restarts the analysis; a lost state starts at the
    /// beginning, never at 100 %).
    pub fn resume_or_restart(
        previous: Option<State>,
        rollout: &Rollout,
        fingerprint: &str,
        now: u64,
    ) -> State {
        match previous {
            Some(s) if s.canary == rollout.canary && s.fingerprint == fingerprint => s,
            _ => State::new(&rollout.canary, fingerprint, now),
        }
    }

    /// Starts an idle rollout at its first stage.
    pub fn start(&mut self, rollout: &Rollout, now: u64) -> Vec<Effect> {
        if self.phase != Phase::Idle {
            return Vec::new();
        }
        let first = match rollout.strategy {
            Strategy::AbTest | Strategy::Mirror => At::Shadow,
            Strategy::Canary | Strategy::BlueGreen if rollout.steps.is_empty() => {
                return self.go(
                    Phase::Promoting,
                    At::Canary,
                    now,
                    "no steps: promoted at once",
                );
            }
            Strategy::Canary | Strategy::BlueGreen => At::Step(0),
        };
        let mut fx = self.go(Phase::Progressing, first, now, "rollout started");
        fx.extend(self.enter_step_gate(rollout, now));
        fx
    }

    /// Feeds one event; returns what to do, or why the event was refused.
    pub fn handle(
        &mut self,
        rollout: &Rollout,
        event: Event,
        now: u64,
    ) -> Result<Vec<Effect>, Refused> {
        match event {
            Event::Tick => Ok(self.tick(rollout, now)),
            Event::Analysis(v) => Ok(self.analysis(rollout, v, now)),
            Event::Promote { force } => self.promote(rollout, force, now),
            Event::Abort => {
                if !self.phase.active() {
                    return Err(Refused(format!(
                        "nothing to abort: the rollout is {}",
                        self.phase.name()
                    )));
                }
                Ok(self.go(
                    Phase::RollingBack {
                        reason: "aborted".into(),
                    },
                    At::Stable,
                    now,
                    "aborted by a user",
                ))
            }
            Event::Pause => {
                if self.phase != Phase::Progressing {
                    return Err(Refused(format!(
                        "only a progressing rollout can be paused: it is {}",
                        self.phase.name()
                    )));
                }
                self.paused_from = Some(Box::new(self.phase.clone()));
                let at = self.at;
                Ok(self.go(
                    Phase::Paused {
                        reason: PauseReason::Requested,
                    },
                    at,
                    now,
                    "paused by a user",
                ))
            }
            Event::Resume => match self.phase {
                Phase::Paused {
                    reason: PauseReason::Requested | PauseReason::Inconclusive,
                } => {
                    self.inconclusive = 0;
                    self.paused_from = None;
                    let at = self.at;
                    Ok(self.go(Phase::Progressing, at, now, "resumed by a user"))
                }
                Phase::Paused {
                    reason: PauseReason::ManualGate,
                } => Err(Refused(
                    "the rollout waits at a manual gate: use `promote` to pass it".into(),
                )),
                _ => Err(Refused(format!(
                    "nothing to resume: the rollout is {}",
                    self.phase.name()
                ))),
            },
            Event::SkipAnalysis => {
                self.skip_analysis = true;
                Ok(Vec::new())
            }
        }
    }

    /// Finishes the transient phases (after their webhooks ran).
    /// A gating webhook said "not yet" `limit` times in a row (its
    /// `failureLimit`): the rollout fails — failed before it starts, rolled
    /// back from a stage or from promotion, and finished when it was
    /// already rolling back.
    pub fn webhook_failed(&mut self, hook: &str, limit: u32, now: u64) -> Vec<Effect> {
        let why = format!("webhook `{hook}` failed {limit} times in a row");
        match self.phase.clone() {
            Phase::Idle => self.go(
                Phase::Failed {
                    reason: why.clone(),
                },
                At::Stable,
                now,
                &why,
            ),
            Phase::Progressing | Phase::Paused { .. } | Phase::Promoting => self.go(
                Phase::RollingBack {
                    reason: why.clone(),
                },
                At::Stable,
                now,
                &why,
            ),
            Phase::RollingBack { reason } => {
                let reason = format!("{reason}; {why}");
                self.go(
                    Phase::Failed {
                        reason: reason.clone(),
                    },
                    At::Stable,
                    now,
                    &format!("rolled back: {reason}"),
                )
            }
            Phase::Succeeded | Phase::Failed { .. } => Vec::new(),
        }
    }

    pub fn settle(&mut self, now: u64) -> Vec<Effect> {
        match self.phase.clone() {
            Phase::Promoting => self.go(Phase::Succeeded, At::Canary, now, "promoted"),
            Phase::RollingBack { reason } => self.go(
                Phase::Failed {
                    reason: reason.clone(),
                },
                At::Stable,
                now,
                &format!("rolled back: {reason}"),
            ),
            _ => Vec::new(),
        }
    }

    fn tick(&mut self, rollout: &Rollout, now: u64) -> Vec<Effect> {
        if self.phase != Phase::Progressing {
            return Vec::new();
        }
        // Without analysis (or with it skipped), time alone advances.
        if rollout.analysis.is_none() || self.skip_analysis {
            return self.maybe_advance(rollout, now);
        }
        Vec::new()
    }

    fn analysis(&mut self, rollout: &Rollout, v: Verdict, now: u64) -> Vec<Effect> {
        if self.phase != Phase::Progressing {
            return Vec::new();
        }
        let analysis = rollout.analysis.as_ref();
        match v {
            Verdict::Pass => {
                self.failures = 0;
                self.inconclusive = 0;
                self.passes += 1;
                self.maybe_advance(rollout, now)
            }
            Verdict::Fail(why) => {
                self.inconclusive = 0;
                self.failures += 1;
                let limit = analysis.and_then(|a| a.failure_limit).unwrap_or(3);
                if self.failures < limit {
                    return Vec::new();
                }
                let reason = format!(
                    "{} failed checks in a row (limit {limit}): {why}",
                    self.failures
                );
                if rollout.freeze_on_failure {
                    let at = self.at;
                    return self.go(
                        Phase::Paused {
                            reason: PauseReason::Frozen,
                        },
                        at,
                        now,
                        &format!("frozen: {reason}"),
                    );
                }
                self.go(
                    Phase::RollingBack {
                        reason: reason.clone(),
                    },
                    At::Stable,
                    now,
                    &reason,
                )
            }
            Verdict::Inconclusive(why) => {
                self.inconclusive += 1;
                let limit = analysis.and_then(|a| a.inconclusive_limit).unwrap_or(5);
                if self.inconclusive < limit {
                    return Vec::new();
                }
                let reason = format!(
                    "{} inconclusive checks in a row (limit {limit}): {why}",
                    self.inconclusive
                );
                match analysis
                    .and_then(|a| a.on_inconclusive)
                    .unwrap_or(OnInconclusive::Pause)
                {
                    OnInconclusive::Pause => {
                        let at = self.at;
                        self.go(
                            Phase::Paused {
                                reason: PauseReason::Inconclusive,
                            },
                            at,
                            now,
                            &reason,
                        )
                    }
                    OnInconclusive::Rollback => self.go(
                        Phase::RollingBack {
                            reason: reason.clone(),
                        },
                        At::Stable,
                        now,
                        &reason,
                    ),
                }
            }
        }
    }

    /// Advances when the stage's condition holds: its pause elapsed, and a
    /// pass (or the shadow stage's iterations) when analysed.
    fn maybe_advance(&mut self, rollout: &Rollout, now: u64) -> Vec<Effect> {
        if self.hold {
            return Vec::new();
        }
        let analysed = rollout.analysis.is_some() && !self.skip_analysis;
        match self.at {
            At::Shadow => {
                let needed = match rollout.strategy {
                    Strategy::AbTest => rollout.ab_test.as_ref().map_or(1, |a| a.iterations),
                    _ => rollout.mirror.as_ref().map_or(1, |m| m.iterations),
                };
                if analysed && self.passes < needed {
                    return Vec::new();
                }
                if rollout.strategy == Strategy::AbTest || rollout.steps.is_empty() {
                    return self.go(
                        Phase::Promoting,
                        At::Canary,
                        now,
                        "A/B stage passed: promoting",
                    );
                }
                let mut fx = self.go(
                    Phase::Progressing,
                    At::Step(0),
                    now,
                    "shadow stage passed: shifting",
                );
                fx.extend(self.enter_step_gate(rollout, now));
                fx
            }
            At::Step(i) => {
                let pause = rollout
                    .steps
                    .get(i)
                    .and_then(|s| s.pause)
                    .map_or(0, |d| d.as_millis() / 1000);
                if now < self.stage_started + pause || (analysed && self.passes == 0) {
                    return Vec::new();
                }
                let next = i + 1;
                if next >= rollout.steps.len() {
                    return self.go(
                        Phase::Promoting,
                        At::Canary,
                        now,
                        "last step passed: promoting",
                    );
                }
                let mut fx = self.go(
                    Phase::Progressing,
                    At::Step(next),
                    now,
                    &format!("step {i} passed"),
                );
                fx.extend(self.enter_step_gate(rollout, now));
                fx
            }
            At::Stable | At::Canary => Vec::new(),
        }
    }

    /// A step with `gate: manual` pauses on arrival.
    fn enter_step_gate(&mut self, rollout: &Rollout, now: u64) -> Vec<Effect> {
        if let At::Step(i) = self.at {
            if rollout.steps.get(i).and_then(|s| s.gate) == Some(Gate::Manual) {
                return self.go(
                    Phase::Paused {
                        reason: PauseReason::ManualGate,
                    },
                    At::Step(i),
                    now,
                    &format!("step {i} waits for `meshplan rollout promote`"),
                );
            }
        }
        Vec::new()
    }

    fn promote(
        &mut self,
        rollout: &Rollout,
        force: bool,
        now: u64,
    ) -> Result<Vec<Effect>, Refused> {
        if force && (self.phase.active() || self.phase == Phase::Idle) {
            return Ok(self.go(
                Phase::Promoting,
                At::Canary,
                now,
                "promoted by a user (forced)",
            ));
        }
        match (&self.phase, self.at) {
            (Phase::Paused { reason: PauseReason::ManualGate }, At::Step(i)) => {
                let next = i + 1;
                if next >= rollout.steps.len() {
                    return Ok(self.go(Phase::Promoting, At::Canary, now, "manual gate passed: promoting"));
                }
                let mut fx = self.go(Phase::Progressing, At::Step(next), now, &format!("manual gate at step {i} passed"));
                fx.extend(self.enter_step_gate(rollout, now));
                Ok(fx)
            }
            _ => Err(Refused(format!(
                "the rollout is {} and waits at no manual gate: use `promote --force` to promote it now",
                self.phase.name()
            ))),
        }
    }

    fn go(&mut self, phase: Phase, at: At, now: u64, reason: &str) -> Vec<Effect> {
        let from = self.label();
        self.hook_failures = 0;
        let moved = at != self.at;
        self.phase = phase;
        self.at = at;
        if moved {
            self.stage_started = now;
            self.passes = 0;
            self.failures = 0;
            self.inconclusive = 0;
        }
        let to = self.label();
        self.history.push(Transition {
            time: now,
            from: from.clone(),
            to: to.clone(),
            reason: reason.to_owned(),
        });
        if self.history.len() > HISTORY {
            let extra = self.history.len() - HISTORY;
            self.history.drain(..extra);
        }
        let mut fx = Vec::new();
        if moved {
            fx.push(Effect::Apply(at));
        }
        fx.push(Effect::Transitioned {
            from,
            to,
            reason: reason.to_owned(),
            phase: self.phase.clone(),
        });
        fx
    }

    /// `Progressing@step 2`, for history and events.
    pub fn label(&self) -> String {
        let at = match self.at {
            At::Stable => "stable".to_owned(),
            At::Shadow => "shadow".to_owned(),
            At::Step(i) => format!("step {i}"),
            At::Canary => "canary".to_owned(),
        };
        format!("{}@{at}", self.phase.name())
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests;
