//! `meshplan run`: the long-running reconciler.
//!
//! # Expected flow
//!
//! A reconcile is triggered by the poll interval, a verified webhook, a
//! change in a local source folder, leadership being won, or — through
//! the [`cache`] of owned objects — an out-of-band edit. It then:
//!
//! 1. fetches the source (Git: [`GitSource::sync`]; a folder: as is);
//! 2. checks and compiles the revision, unless it is the one compiled
//!    already;
//! 3. plans against the cache (no list calls) and applies what differs —
//!    drift on a report-only kind is recorded, not undone;
//! 4. records the result in the status ConfigMap, the metrics, and, on
//!    failure, a Kubernetes Event.
//!
//! # Guarantees
//!
//! - **A revision that does not check or compile applies nothing.** The
//!   cluster keeps the last good revision; the status lists the
//!   diagnostics.
//! - **Only the leader writes** (with `--leader-election`): a standby
//!   replica keeps its endpoints up and waits.
//! - **A no-op resync makes no write call**: the plan comes from the
//!   cache, and the inventory and status are written only when they
//!   change.
//! - **SIGTERM stops cleanly**: the current reconcile finishes (a rollout
//!   tick does not: it may wait on Prometheus, and stopping mid-tick is
//!   stopping as after a crash, which rollouts survive), the lease is
//!   released, the process exits 0.

pub mod cache;
mod fetch;
pub mod http;
pub mod lease;
pub mod metrics;
mod notices;
pub mod outcome;
pub mod rollouts;
pub mod status;
pub mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshplan_compiler::check_dir;
use meshplan_compiler::{compile, MeshObject, Options, Summary};
use meshplan_policy_lang::diagnostic::human;
use tokio::sync::{mpsc, watch};

use crate::apply::{self, Quiet};
use crate::cluster::Cluster;
use crate::diff::{self, Action, Plan, Revision};
use crate::inventory::{Inventory, InventoryName};
use crate::live;
use crate::source::git::{GitSource, Secret};
use crate::Error;
use outcome::{Outcome, Stage};

use self::cache::Cache;
use self::lease::LeaseConfig;
use self::metrics::Metrics;
use self::rollouts::ROLLOUT_TICK;
use self::status::Status;

/// Where revisions come from.
#[derive(Clone, Debug)]
pub enum Source {
    Git(GitSource),
    /// A local folder, watched for changes (development).
    Dir(PathBuf),
}

/// Whether drift is undone, per kind.
#[derive(Clone, Debug)]
pub struct SelfHeal {
    pub default: bool,
    /// By kind (`VirtualService`), overriding the default.
    pub kinds: BTreeMap<String, bool>,
}

impl SelfHeal {
    pub fn heals(&self, kind: &str) -> bool {
        self.kinds.get(kind).copied().unwrap_or(self.default)
    }
}

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: Source,
    pub interval: Duration,
    pub compile: Options,
    pub strict: bool,
    pub inventory: InventoryName,
    pub concurrency: usize,
    pub prune: bool,
    pub self_heal: SelfHeal,
    /// Serve `/metrics`, `/healthz`, `/readyz`, `/hooks/git` here.
    pub listen: Option<SocketAddr>,
    pub webhook_secret: Option<Secret>,
    pub lease: Option<LeaseConfig>,
    /// Per apply, retries included.
    pub timeout: Duration,
    /// The client of Prometheus and the rollout webhooks (TLS settings and
    /// credentials per URL: `--http-credentials`).
    pub http: Arc<crate::outgoing::Http>,
    /// Where rollout transitions and reconcile results are announced
    /// (`--notifications`).
    pub notifier: Option<Arc<crate::outgoing::notify::Notifier>>,
}

/// Why a reconcile runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Interval,
    Webhook,
    LocalChange,
    Leadership,
}

/// Where the controller's log lines go.
pub trait Log: Send + Sync {
    fn info(&self, message: &str);
    fn warn(&self, message: &str);
    /// Details an info line summarises (`meshplan run --log-level debug`).
    fn debug(&self, _message: &str) {}
}

/// What was compiled last.
struct Desired {
    /// Its name (never `None` here) and meaning.
    revision: Revision,
    /// Its files (compiled again when a rollout moves).
    dir: PathBuf,
    objects: Vec<MeshObject>,
}

impl Desired {
    fn name(&self) -> &str {
        self.revision.id.as_deref().unwrap_or_default()
    }
}

/// Runs until `shutdown` turns true. Returns the bound HTTP address on
/// `bound` as soon as it listens.
pub async fn run(
    cluster: Cluster,
    cfg: Config,
    log: Arc<dyn Log>,
    mut shutdown: watch::Receiver<bool>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::default());
    let shared = Arc::new(http::Shared {
        metrics: metrics.clone(),
        ready: Default::default(),
        heartbeat: Default::default(),
        stall_after: (cfg.interval.as_secs() * 3).max(300),
    });
    shared.beat();
    let (trigger_tx, mut triggers) = mpsc::unbounded_channel::<Trigger>();
    if let Some(addr) = cfg.listen {
        let at = http::serve(
            addr,
            shared.clone(),
            cfg.webhook_secret.clone(),
            trigger_tx.clone(),
        )
        .map_err(|e| Error::System {
            what: format!("cannot listen on {addr}"),
            source: e,
        })?;
        log.info(&format!(
            "serving /metrics, /healthz, /readyz and /hooks/git on {at}"
        ));
        if let Some(b) = bound {
            let _ = b.send(at);
        }
    }
    // Kept alive for the whole run: dropping it stops the folder watch.
    let _watcher = match &cfg.source {
        Source::Dir(dir) => Some(fetch::watch_dir(dir, trigger_tx.clone())?),
        Source::Git(_) => None,
    };

    let (leader_tx, mut leader) = watch::channel(cfg.lease.is_none());
    let mut elector = None;
    if let Some(lease) = cfg.lease.clone() {
        log.info(&format!(
            "leader election on Lease {}/{} as {}",
            lease.namespace, lease.name, lease.identity
        ));
        elector = Some(tokio::spawn(lease::elect(
            cluster.client().clone(),
            lease,
            leader_tx,
            shutdown.clone(),
        )));
        // A standby is ready: it serves its endpoints and waits.
        shared.ready.store(true, Ordering::Relaxed);
    }

    let (cache, mut changed) = Cache::new(cluster.clone());
    let cfg_home = cfg.inventory.namespace.clone();
    let http = Arc::clone(&cfg.http);
    let mut ctl = Controller {
        // Before `cfg` and `log` move in.
        announcer: notices::Announcer::of(cfg.notifier.as_ref(), &log),
        cluster,
        cfg,
        log,
        metrics,
        cache,
        desired: None,
        status: None,
        failing_revision: None,
        fetch_failing: false,
        rollouts: rollouts::Rollouts::new(&cfg_home, http),
        idle_ticks: 0,
        waiting: Default::default(),
        inventory: live::InventoryCache::default(),
    };
    ctl.status = status::read(&ctl.cluster, &ctl.cfg.inventory)
        .await
        .ok()
        .flatten();

    let mut ticker = tokio::time::interval(ctl.cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rollout_ticker = tokio::time::interval(ROLLOUT_TICK);
    rollout_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_leader = false;
    let mut stop = shutdown.clone();
    loop {
        shared.beat();
        let is_leader = *leader.borrow();
        if is_leader != was_leader {
            ctl.metrics.leader(is_leader);
            ctl.log.info(if is_leader {
                "leading: reconciling"
            } else {
                "standing by: another replica leads"
            });
            was_leader = is_leader;
        }
        let trigger: Option<Trigger> = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            r = leader.changed() => {
                if r.is_err() { break }
                Some(Trigger::Leadership)
            }
            _ = ticker.tick() => Some(Trigger::Interval),
            _ = rollout_ticker.tick() => {
                if *leader.borrow() && ctl.desired.is_some() {
                    // A tick waits on Prometheus for every due analysis (up
                    // to its timeout when Prometheus does not answer): a
                    // SIGTERM does not wait for it. Stopping mid-tick is
                    // stopping as after a crash, which a rollout survives
                    // (its state is stored per step; see `rollout`).
                    tokio::select! {
                        _ = ctl.rollout_tick() => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
                None
            }
            t = triggers.recv() => t,
            k = changed.recv() => {
                // Coalesce a burst of watch events (our own apply makes one
                // per object) into one drift check.
                let mut n = usize::from(k.is_some());
                let until = Instant::now() + Duration::from_millis(50);
                while let Ok(Some(_)) = tokio::time::timeout_at(until.into(), changed.recv()).await {
                    n += 1;
                }
                if n > 0 && *leader.borrow() && ctl.desired.is_some() {
                    ctl.heal().await;
                }
                None
            }
        };
        let Some(trigger) = trigger else { continue };
        if !*leader.borrow() {
            continue;
        }
        if trigger == Trigger::LocalChange {
            // An editor writes a file in several steps: settle first.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while triggers.try_recv().is_ok() {}
        }
        ctl.reconcile(trigger).await;
        shared.ready.store(true, Ordering::Relaxed);
    }
    // The elector releases the lease on shutdown: wait for it, so a
    // standby takes over at once rather than after the lease expires.
    if let Some(e) = elector {
        let _ = tokio::time::timeout(Duration::from_secs(5), e).await;
    }
    ctl.log.info("stopped");
    Ok(())
}

struct Controller {
    cluster: Cluster,
    cfg: Config,
    log: Arc<dyn Log>,
    metrics: Arc<Metrics>,
    cache: Cache,
    desired: Option<Desired>,
    status: Option<Status>,
    /// A revision that failed to check or compile (not retried until the
    /// source moves).
    failing_revision: Option<String>,
    /// Sends notices to the operator's sinks (`--notifications`).
    announcer: Option<notices::Announcer>,
    /// The last fetch failed (unreachable, refused signature).
    fetch_failing: bool,
    rollouts: rollouts::Rollouts,
    /// Ticks since the last one that looked at finished rollouts.
    idle_ticks: u32,
    /// What rollouts wait for (webhooks), as last logged.
    waiting: std::collections::BTreeSet<String>,
    inventory: live::InventoryCache,
}

impl Controller {
    /// Fetch, compile if new, plan, apply.
    async fn reconcile(&mut self, trigger: Trigger) {
        let started = Instant::now();
        let fetched = match self.fetch().await {
            Ok(f) => {
                self.fetch_failing = false;
                f
            }
            Err(e) => {
                self.fetch_failing = true;
                let message = crate::error_chain(&e);
                self.failed(Stage::Fetch, None, message, Vec::new(), started)
                    .await;
                return;
            }
        };
        let (revision, dir) = fetched;
        let known = self.desired.as_ref().is_some_and(|d| d.name() == revision)
            || self.failing_revision.as_deref() == Some(revision.as_str());
        if !known {
            let checked = match self.check(&dir) {
                Ok(c) => c,
                Err((message, diagnostics)) => {
                    self.failing_revision = Some(revision.clone());
                    self.failed(Stage::Check, Some(revision), message, diagnostics, started)
                        .await;
                    return;
                }
            };
            if !self
                .adopt(revision.clone(), dir, checked, trigger, started)
                .await
            {
                return;
            }
        } else if self.failing_revision.as_deref() == Some(revision.as_str()) {
            // Still the broken revision: the last good one stays applied,
            // and drift against it is still healed.
            self.heal().await;
            return;
        }
        self.sync(started).await;
    }

    /// Takes a checked revision as the desired one: the rollouts' positions
    /// first (guessing one would move a running canary's traffic), then
    /// compiled at them, then the states the rollouts start from saved —
    /// only once it compiled, so a revision that does not leaves them as
    /// they were. `false` when it failed (recorded).
    async fn adopt(
        &mut self,
        revision: String,
        dir: PathBuf,
        checked: (
            meshplan_policy_lang::parse::Repository,
            meshplan_policy_lang::check::Report,
        ),
        trigger: Trigger,
        started: Instant,
    ) -> bool {
        let save_point = self.rollouts.save_point();
        let transitions = match self.rollouts.refresh(&self.cluster, &checked.0).await {
            Ok(t) => t,
            Err(e) => {
                let message = format!("cannot read the rollout states: {e}: nothing applied, retried on the next reconcile");
                self.failed(Stage::Rollout, Some(revision), message, Vec::new(), started)
                    .await;
                return false;
            }
        };
        let (objects, summary) = match self.build(&checked.0, &checked.1) {
            Ok(built) => built,
            Err((message, diagnostics)) => {
                // The last good revision's rollouts go on.
                self.rollouts.restore(save_point);
                self.failing_revision = Some(revision.clone());
                self.failed(
                    Stage::Compile,
                    Some(revision),
                    message,
                    diagnostics,
                    started,
                )
                .await;
                return false;
            }
        };
        if let Err(e) = self.rollouts.save_started(&self.cluster).await {
            self.rollouts.restore(save_point);
            let message = format!("cannot save the rollout states: {e}: nothing applied, retried on the next reconcile");
            self.failed(Stage::Rollout, Some(revision), message, Vec::new(), started)
                .await;
            return false;
        }
        self.transitioned(transitions, Some(&revision)).await;
        self.log.info(&format!(
            "revision {} compiled: {} objects ({trigger:?})",
            short(&revision),
            objects.len()
        ));
        self.failing_revision = None;
        self.desired = Some(Desired {
            revision: Revision::new(Some(revision), Arc::new(summary)),
            dir,
            objects,
        });
        true
    }

    /// Plans against the cache and applies; for a drift event too.
    async fn heal(&mut self) {
        self.sync(Instant::now()).await;
    }

    async fn sync(&mut self, started: Instant) {
        let Some(desired) = &self.desired else { return };
        let revision = desired.name().to_owned();
        match self.plan_and_apply().await {
            Ok(outcome) => self.synced(revision, outcome, started).await,
            Err(e) => {
                let message = e.to_string();
                self.metrics.error(e.metric_label());
                self.failed(Stage::Apply, Some(revision), message, Vec::new(), started)
                    .await;
            }
        }
    }

    /// Logs, counts and records a sync that reached the cluster.
    async fn synced(&mut self, revision: String, outcome: SyncOutcome, started: Instant) {
        let result = outcome.result;
        if outcome.changed > 0 || outcome.pruned > 0 {
            self.log.info(&format!(
                "revision {}: applied {}, pruned {}, {} drifted object(s) restored{} in {:.1?}",
                short(&revision),
                outcome.changed,
                outcome.pruned,
                outcome.healed,
                if outcome.report_only.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} drifted object(s) reported only",
                        outcome.report_only.len()
                    )
                },
                started.elapsed()
            ));
        }
        if !outcome.report_only.is_empty() && outcome.changed == 0 {
            self.log.warn(&format!(
                "drift (report-only): {}",
                outcome.report_only.join(", ")
            ));
        }
        self.metrics
            .drift(outcome.report_only.len(), outcome.healed);
        if result.synced() {
            self.metrics
                .applied(&revision, http::unix_now() as f64, outcome.managed);
        }
        self.metrics.reconciled(started.elapsed(), result);
        let message = outcome.message.clone();
        if let Some((label, reason)) = result.error() {
            self.metrics.error(label);
            self.log.warn(&message);
            status::event(&self.cluster, &self.cfg.inventory, true, reason, &message).await;
        }
        let last_applied = match result.synced() {
            true => Some(revision.clone()),
            false => self
                .status
                .as_ref()
                .and_then(|s| s.last_applied_revision.clone()),
        };
        // While the head revision is broken, the status keeps saying so:
        // healing drift against the last good revision does not make the
        // source good.
        if result.synced() && (self.failing_revision.is_some() || self.fetch_failing) {
            return;
        }
        self.set_status(Status {
            result: result.status(),
            revision: Some(revision),
            last_applied_revision: last_applied,
            message,
            diagnostics: Vec::new(),
            drift: outcome.report_only,
            failures: outcome.failures,
            objects: outcome.managed,
            since: String::new(),
        })
        .await;
    }

    async fn plan_and_apply(&mut self) -> Result<SyncOutcome, Error> {
        let Some(desired) = &self.desired else {
            return Err(Error::Api {
                what: "reconciling".into(),
                detail: "nothing compiled yet".into(),
                code: None,
            });
        };
        let inventory = self
            .inventory
            .read(&self.cluster, &self.cfg.inventory)
            .await?;
        let none = Inventory::default();
        let gone = self
            .cache
            .ensure(
                &desired.objects,
                inventory.as_deref().unwrap_or(&none),
                self.cfg.timeout,
            )
            .await?;
        let snapshot = self
            .cache
            .snapshot(&desired.objects, inventory, gone, self.cfg.concurrency)
            .await?;
        let mut plan = diff::plan(&desired.objects, &desired.revision, &snapshot);
        let report_only = hold_report_only(&mut plan, &self.cfg);
        let counts = plan.counts();
        let healed = counts.drift;
        let opts = apply::Options {
            concurrency: self.cfg.concurrency,
            prune: self.cfg.prune,
            dry_run: false,
            timeout: self.cfg.timeout,
            inventory: self.cfg.inventory.clone(),
        };
        let outcome = apply::apply(
            &self.cluster,
            &plan,
            snapshot.inventory_exists.then_some(&*snapshot.inventory),
            &opts,
            &Quiet,
        )
        .await?;
        let failures: Vec<String> = outcome
            .failed
            .iter()
            .map(|(id, e)| apply::failure_line(id, e))
            .collect();
        let refused: Vec<String> = plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Refuse)
            .map(|c| c.reason.clone().unwrap_or_default())
            .collect();
        let (result, message) = if !failures.is_empty() {
            (
                Outcome::Failed,
                format!("apply failed: {}", failures.join("; ")),
            )
        } else if !refused.is_empty() {
            (Outcome::Refused, refused.join("; "))
        } else if outcome.applied + outcome.pruned > 0 {
            (Outcome::Applied, String::new())
        } else {
            (Outcome::Unchanged, String::new())
        };
        Ok(SyncOutcome {
            result,
            message,
            changed: outcome.applied,
            pruned: outcome.pruned,
            healed: if outcome.ok() { healed } else { 0 },
            report_only,
            failures,
            managed: counts.create + counts.update + counts.unchanged,
        })
    }

    /// Checks a revision; errors as a message and the diagnostics.
    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        dir: &Path,
    ) -> Result<
        (
            meshplan_policy_lang::parse::Repository,
            meshplan_policy_lang::check::Report,
        ),
        (String, Vec<String>),
    > {
        let (repo, report) =
            check_dir(dir).map_err(|e| (format!("cannot read the revision: {e}"), Vec::new()))?;
        if !report.passes(self.cfg.strict) {
            return Err((
                format!(
                    "the revision does not pass check ({}): nothing applied, the cluster keeps the last good revision",
                    human::summary_line(report.summary())
                ),
                self.lines(&report.diagnostics),
            ));
        }
        Ok((repo, report))
    }

    fn lines(&self, ds: &[meshplan_policy_lang::diagnostic::Diagnostic]) -> Vec<String> {
        ds.iter()
            .filter(|d| d.is_error() || self.cfg.strict)
            .map(human::one_line)
            .collect()
    }

    /// Compiles a checked revision at the rollouts' positions, and hands
    /// the rollouts what their analyses measure in it.
    #[allow(clippy::type_complexity)]
    fn build(
        &mut self,
        repo: &meshplan_policy_lang::parse::Repository,
        report: &meshplan_policy_lang::check::Report,
    ) -> Result<(Vec<MeshObject>, Summary), (String, Vec<String>)> {
        let opts = Options {
            positions: self.rollouts.positions(),
            on_emitted: Some(pack),
            ..self.cfg.compile.clone()
        };
        let compiled = compile(repo, report, &opts).map_err(|e| {
            let diags = match &e {
                meshplan_compiler::Error::Emit(errs) => errs.iter().map(|e| e.to_string()).collect(),
                _ => Vec::new(),
            };
            (
                format!("the revision does not compile: {e}: nothing applied, the cluster keeps the last good revision"),
                diags,
            )
        })?;
        if compiled.diagnostics.iter().any(|d| d.is_error()) {
            return Err((
                "resource rules failed on the compiled objects: nothing applied, the cluster keeps the last good revision".into(),
                self.lines(&compiled.diagnostics),
            ));
        }
        self.rollouts.attach(&compiled.rollouts);
        // Held until the next revision (and beside it while that one
        // compiles): packed (`pack` above), a small fraction of the
        // text's size.
        let mut objects = compiled.objects;
        // The compiler reserved room for more objects than most revisions
        // make; this vector lives until the next revision.
        objects.shrink_to_fit();
        Ok((objects, compiled.summary))
    }

    async fn failed(
        &mut self,
        stage: Stage,
        revision: Option<String>,
        message: String,
        diagnostics: Vec<String>,
        started: Instant,
    ) {
        self.log
            .warn(&format!("{} failed: {message}", stage.metric_label()));
        for d in &diagnostics {
            self.log.warn(&format!("  {d}"));
        }
        self.metrics.error(stage.metric_label());
        self.metrics.reconciled(started.elapsed(), Outcome::Failed);
        let reason = stage.event_reason();
        status::event(&self.cluster, &self.cfg.inventory, true, reason, &message).await;
        let last_applied = self
            .status
            .as_ref()
            .and_then(|s| s.last_applied_revision.clone());
        let objects = self.status.as_ref().map_or(0, |s| s.objects);
        self.set_status(Status {
            result: Outcome::Failed.status(),
            revision,
            last_applied_revision: last_applied,
            message,
            diagnostics,
            drift: Vec::new(),
            failures: Vec::new(),
            objects,
            since: String::new(),
        })
        .await;
    }

    async fn set_status(&mut self, s: Status) {
        self.announce(notices::reconcile(self.status.as_ref(), &s));
        match status::write(&self.cluster, &self.cfg.inventory, self.status.as_ref(), s).await {
            Ok(s) => self.status = Some(s),
            Err(e) => self.log.warn(&format!("cannot record the status: {e}")),
        }
    }
}

struct SyncOutcome {
    result: Outcome,
    message: String,
    changed: usize,
    pruned: usize,
    healed: usize,
    report_only: Vec<String>,
    failures: Vec<String>,
    managed: usize,
}

/// Deflates each body as soon as it is emitted: the controller holds a
/// revision's objects until the next one (and beside it while that one
/// compiles), so the text of every object is never held at once.
fn pack(objects: &mut [MeshObject]) {
    for o in objects {
        o.body.pack();
    }
}

/// Turns drift on report-only kinds into "unchanged" (not applied), and
/// returns those objects.
fn hold_report_only(plan: &mut Plan, cfg: &Config) -> Vec<String> {
    let mut held = Vec::new();
    for c in &mut plan.changes {
        if c.action == Action::Update && c.drift && !cfg.self_heal.heals(&c.kind) {
            held.push(c.id().to_string());
            c.action = Action::Unchanged;
            c.drift = false;
        }
    }
    held
}

/// A short commit id for logs.
fn short(rev: &str) -> &str {
    rev.get(..12)
        .filter(|_| rev.len() > 12 && rev.is_char_boundary(12))
        .unwrap_or(rev)
}
