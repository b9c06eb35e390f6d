//! One tracked rollout's tick: adopting a state someone else wrote,
//! commands, webhooks, due analyses, time, settling and saving. Apart from
//! the set of rollouts (`super`) because it is the state machine's driver
//! for a single service, with its own guarantees (write, then apply).

use std::sync::Arc;

use meshplan_compiler::rollout::canary_weight;
use meshplan_policy_lang::intent::rollout::{Rollout, WebhookType};

use super::{transitioned, unix_now, verdict_name, TickOne, Tracked, Transitioned, ROLLOUT_TICK};
use crate::cluster::Cluster;
use crate::rollout::analysis;
use crate::rollout::store::{self, StoreError};
use crate::rollout::webhook::{self, NotYet};
use crate::rollout::{At, CommandResult, Effect, Event, Phase, State, Verdict};
use crate::Error;

impl Tracked {
    /// `namespace/name`.
    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// One tick of this rollout: adopt a state written by someone else,
    /// carry out a queued command, analyse when due, let time pass, settle,
    /// save.
    pub(super) async fn tick(
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
    pub(super) async fn try_start(&mut self, key: &str, now: u64) -> Vec<Effect> {
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
    pub(super) async fn step(&mut self, key: &str, events: Vec<Event>, now: u64) -> Vec<Effect> {
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
    pub(super) async fn settle(&mut self, key: &str, now: u64) -> Vec<Effect> {
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
    pub(super) fn not_yet(&mut self, why: &NotYet, now: u64) -> Vec<Effect> {
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
    pub(super) async fn hooks(
        &mut self,
        kind: WebhookType,
        key: &str,
        reason: &str,
    ) -> Result<(), NotYet> {
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
    pub(super) fn notify(&self, key: &str, moves: &[Transitioned]) {
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
    pub(super) async fn save(&mut self, cluster: &Cluster, home: &str) -> Result<(), StoreError> {
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
    pub(super) async fn analyse_if_due(&mut self, now: u64) -> Option<Verdict> {
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
    pub(super) fn describe(&mut self, now: u64) {
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
