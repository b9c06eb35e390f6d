//! The `apply` stage: make the cluster match a [`Plan`].
//!
//! # Expected flow
//!
//! 1. Unless this is a dry run, the inventory is first *widened* to the
//!    objects it listed plus every desired object, so an apply interrupted
//!    at any point leaves everything it may have created listed, and
//!    prunable by a later run.
//! 2. The phases run in order — namespaces, policies, backends, routes,
//!    other (see [`crate::order`]). In a phase, every create and update is
//!    one server-side apply under the field manager `meshplan`, at most
//!    `concurrency` at once, on the one shared client. A phase starts when
//!    the previous one has finished without failure.
//! 3. With `prune`, the planned prunes run, phases in reverse.
//! 4. The inventory is *narrowed* to the desired objects plus any prune
//!    that did not happen, and records the revision and its summary.
//!
//! # Guarantees
//!
//! - **Only meshplan's objects are changed.** An update is forced (it takes
//!   back fields someone else edited) only on an object carrying
//!   meshplan's label; a create is not forced, so an object someone
//!   created meanwhile conflicts instead of being taken over. A prune
//!   deletes only an object that is labelled *and* listed in the
//!   inventory, with its UID as a precondition, so an object deleted and
//!   re-created by someone else since the plan is left alone.
//! - **Idempotent.** Unchanged objects make no call at all; applying the
//!   same plan again changes nothing further.
//! - **Transient failures are retried** — conflicts (409, at most three
//!   times), throttling (429), server errors (5xx), lost connections, and
//!   401/403 within 30 s of a lost connection (a restarted API server
//!   refuses everyone until its RBAC caches are filled) —
//!   with exponential backoff from 100 ms to 5 s, until `timeout`. Every
//!   retry is counted in the [`Outcome`].
//! - **A failed phase stops the apply.** Later phases (the routes, when a
//!   DestinationRule was rejected) and pruning do not run; what was
//!   applied stays, and the error is reported per object.
//! - **A dry run** sends every call with `dryRun=All` and writes no
//!   inventory.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PatchParams, Preconditions};
use kube::core::Resource as _;

use crate::cluster::Cluster;
use crate::diff::{Action, Change, Plan};
use crate::inventory::{parts, Inventory, InventoryName, ObjectRef, Piece};
use crate::live::Key;
use crate::order::PHASES;
use crate::{Error, FIELD_MANAGER};

/// How to apply.
#[derive(Clone, Debug)]
pub struct Options {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Delete what the revision no longer has (labelled and listed only).
    pub prune: bool,
    /// Server-side dry run: validate everything, change nothing.
    pub dry_run: bool,
    /// Give up retrying after this long.
    pub timeout: Duration,
    pub inventory: InventoryName,
}

/// Requests in flight at once unless told otherwise. A first sync is
/// bound by the API server's CPU, and the server does less work per write
/// the more writes it is given at once — etcd commits them in larger
/// batches and the server's watch decodes them in larger batches — so
/// more in flight shortens it (docs/benchmarks.md, "Reconcile", records
/// the measurement that chose 128).
/// 128 is under an API server's default of 200 mutating requests in
/// flight; API Priority and Fairness (on by default since Kubernetes 1.20)
/// queues a client's excess in its own flow rather than starving others,
/// and a 429 is retried with backoff. Each request in flight holds a
/// connection, so `run`'s memory grows a little with the setting.
pub const DEFAULT_CONCURRENCY: usize = 128;

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: DEFAULT_CONCURRENCY,
            prune: false,
            dry_run: false,
            timeout: Duration::from_secs(300),
            inventory: InventoryName::default(),
        }
    }
}

/// Reports progress (a terminal progress bar, CI log lines).
pub trait Progress: Sync {
    fn phase_started(&self, _phase: &str, _total: usize) {}
    fn object_done(&self, _change: &Change, _result: &Result<(), Error>) {}
    fn phase_finished(&self, _phase: &str, _report: &PhaseReport) {}
}

/// Reports nothing.
#[derive(Debug)]
pub struct Quiet;
impl Progress for Quiet {}

/// One phase's result.
#[derive(Clone, Debug, Default)]
pub struct PhaseReport {
    pub applied: usize,
    pub deleted: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

/// What an apply did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub applied: usize,
    pub pruned: usize,
    /// Prunes planned but not run (no `prune`).
    pub not_pruned: usize,
    pub failed: Vec<(ObjectRef, Error)>,
    /// Calls retried after a transient failure.
    pub retries: usize,
    /// Phases not run because an earlier one failed.
    pub skipped_phases: Vec<&'static str>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Applies a plan: see the module documentation for the flow and the
/// guarantees.
pub async fn apply(
    cluster: &Cluster,
    plan: &Plan,
    previous: Option<&Inventory>,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let empty = Inventory::default();
    let existing = previous;
    let previous = previous.unwrap_or(&empty);
    let deadline = started + opts.timeout;
    let retries = Retries::default();
    let desired: Vec<ObjectRef> = plan
        .changes
        .iter()
        .filter(|c| !matches!(c.action, Action::Prune | Action::Refuse))
        .map(Change::id)
        .collect();

    if !opts.dry_run {
        // Unchanged, it is not written: a no-op resync makes no write call
        // (nor copies the inventory).
        let listed = existing.is_some() && desired.iter().all(|d| previous.objects.contains(d));
        if !listed {
            let mut widened = previous.clone();
            widened.objects.extend(desired.iter().cloned());
            write_inventory(cluster, &opts.inventory, &widened, deadline, &retries).await?;
        }
    }

    let mut out = Outcome::default();
    let failed = Mutex::new(Vec::new());
    let mut stopped = false;
    for (i, phase) in PHASES.iter().enumerate() {
        let todo: Vec<&Change> = plan
            .changes
            .iter()
            .filter(|c| c.phase() == i && matches!(c.action, Action::Create | Action::Update))
            .collect();
        if todo.is_empty() {
            continue;
        }
        if stopped {
            out.skipped_phases.push(phase);
            continue;
        }
        let report = run_phase(
            phase,
            &todo,
            progress,
            opts,
            |c| apply_one(cluster, c, opts, deadline, &retries),
            &failed,
        )
        .await;
        out.applied += report.applied;
        stopped |= report.failed > 0;
    }

    let prunes: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Prune)
        .collect();
    let mut pruned: Vec<ObjectRef> = Vec::new();
    if !opts.prune || stopped {
        out.not_pruned = prunes.len();
    } else {
        for (i, phase) in PHASES.iter().enumerate().rev() {
            let todo: Vec<&Change> = prunes.iter().copied().filter(|c| c.phase() == i).collect();
            if todo.is_empty() {
                continue;
            }
            let name = format!("prune {phase}");
            let before = failed.lock().unwrap_or_else(|p| p.into_inner()).len();
            let report = run_phase(
                &name,
                &todo,
                progress,
                opts,
                |c| delete_one(cluster, c, opts, deadline, &retries),
                &failed,
            )
            .await;
            out.pruned += report.deleted;
            let failed_now: Vec<Key> = failed.lock().unwrap_or_else(|p| p.into_inner())[before..]
                .iter()
                .map(|(id, _)| Key::of(id))
                .collect();
            pruned.extend(
                todo.iter()
                    .map(|c| c.id())
                    .filter(|id| !failed_now.contains(&Key::of(id))),
            );
        }
    }

    if !opts.dry_run {
        // Desired objects, and whatever was to be pruned but was not.
        // Entries of an object now desired under another API version are
        // replaced by the desired one.
        let gone: HashSet<Key> = pruned.iter().map(Key::of).collect();
        let wanted: HashSet<Key> = desired.iter().map(Key::of).collect();
        let mut narrowed = Inventory {
            objects: previous
                .objects
                .iter()
                .filter(|o| {
                    let k = Key::of(o);
                    !gone.contains(&k) && !wanted.contains(&k)
                })
                .cloned()
                .collect(),
            revision: previous.revision.clone(),
            summary: None,
        };
        narrowed.objects.extend(desired.iter().cloned());
        // The revision counts as applied only when everything was.
        let all_ok = failed.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
        let summary = if all_ok {
            narrowed.revision = plan.revision.id.clone().or(narrowed.revision);
            Some(plan.revision.summary.as_ref())
        } else {
            previous.summary.as_ref()
        };
        // Compared field by field: the summary is copied only to be written.
        let same = existing.is_some_and(|e| {
            e.objects == narrowed.objects
                && e.revision == narrowed.revision
                && e.summary.as_ref() == summary
        });
        if !same {
            narrowed.summary = summary.cloned();
            write_inventory(cluster, &opts.inventory, &narrowed, deadline, &retries).await?;
        }
    }

    out.failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    out.retries = retries.count.load(Ordering::Relaxed);
    out.elapsed = started.elapsed();
    Ok(out)
}

async fn run_phase<'a, F, Fut>(
    name: &str,
    todo: &[&'a Change],
    progress: &dyn Progress,
    opts: &Options,
    call: F,
    failed: &Mutex<Vec<(ObjectRef, Error)>>,
) -> PhaseReport
where
    F: Fn(&'a Change) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let started = Instant::now();
    progress.phase_started(name, todo.len());
    let mut report = PhaseReport::default();
    let mut results = futures::stream::iter(todo.iter().map(|c| {
        let fut = call(c);
        async move { (*c, fut.await) }
    }))
    .buffer_unordered(opts.concurrency.max(1));
    while let Some((c, result)) = results.next().await {
        progress.object_done(c, &result);
        match result {
            Ok(()) if c.action == Action::Prune => report.deleted += 1,
            Ok(()) => report.applied += 1,
            Err(e) => {
                report.failed += 1;
                failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((c.id(), e));
            }
        }
    }
    report.elapsed = started.elapsed();
    progress.phase_finished(name, &report);
    report
}

async fn apply_one(
    cluster: &Cluster,
    c: &Change,
    opts: &Options,
    deadline: Instant,
    retries: &Retries,
) -> Result<(), Error> {
    let id = c.id();
    let body = c.desired.as_ref().ok_or_else(|| Error::Api {
        what: format!("applying {id}"),
        detail: "the plan has no desired state for it (a bug: please report it)".into(),
        code: None,
    })?;
    let r = cluster.resolve(&id.api_version, &id.kind).await?;
    let mut params = PatchParams::apply(FIELD_MANAGER);
    // Forced only where meshplan already owns the object (see Guarantees).
    params.force = c.action == Action::Update;
    params.dry_run = opts.dry_run;
    retry(deadline, retries, || {
        cluster.apply_body(&r, &id, &params, body)
    })
    .await
    .map_err(|e| Error::api(format!("applying {id}"), &e))
}

async fn delete_one(
    cluster: &Cluster,
    c: &Change,
    opts: &Options,
    deadline: Instant,
    retries: &Retries,
) -> Result<(), Error> {
    let id = c.id();
    let r = cluster.resolve(&id.api_version, &id.kind).await?;
    let api = cluster.api_for(&r, &id);
    let params = DeleteParams {
        dry_run: opts.dry_run,
        preconditions: c.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match retry(deadline, retries, || api.delete(&id.name, &params)).await {
        Ok(_) => Ok(()),
        // Already gone: what a prune wants.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::api(format!("pruning {id}"), &e)),
    }
}

/// Writes the inventory's ConfigMaps whose content changed (by the hash
/// each records), the head last, then deletes the parts it no longer
/// names: see [`crate::inventory::parts`].
async fn write_inventory(
    cluster: &Cluster,
    at: &InventoryName,
    inv: &Inventory,
    deadline: Instant,
    retries: &Retries,
) -> Result<(), Error> {
    let failed = |what: &str, e: &kube::Error| {
        let mut err = Error::api(format!("{what} the inventory ConfigMap {at}"), e);
        if let Error::Api {
            code: Some(404),
            detail,
            ..
        } = &mut err
        {
            detail.push_str(&format!(
                " (create the namespace {}: deploy/rbac.yaml does)",
                at.namespace
            ));
        }
        err
    };
    let stored = inv.to_configmaps(at);
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), &at.namespace);
    let labelled = ListParams::default().labels(&parts::selector(at));
    let listed = retry(deadline, retries, || api.list_metadata(&labelled))
        .await
        .map_err(|e| failed("listing", &e))?;
    let live: BTreeMap<String, Option<String>> = listed
        .items
        .iter()
        .map(|m| {
            let hash = parts::recorded_hash(m.metadata.annotations.as_ref());
            (
                m.metadata.name.clone().unwrap_or_default(),
                hash.map(str::to_owned),
            )
        })
        .collect();
    let stale = |p: &&Piece| live.get(&p.name).and_then(Option::as_deref) != Some(p.hash.as_str());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // The answer would be the whole part again: not read back.
    let url = ConfigMap::url_path(&(), Some(&at.namespace));
    let write = |p: &Piece| {
        let (url, params) = (url.clone(), &params);
        let (name, body) = (p.name.clone(), p.body.clone());
        async move {
            retry(deadline, retries, || {
                cluster.apply_at(url.clone(), &name, params, &body)
            })
            .await
            .map_err(|e| failed("writing", &e))
        }
    };
    futures::stream::iter(stored.parts.iter().filter(stale).map(write))
        .buffer_unordered(INVENTORY_WRITES)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, Error>>()?;
    if stale(&&stored.head) {
        write(&stored.head).await?;
    }
    // Parts the head no longer names are read by nobody: one that cannot
    // be deleted now (a role without `delete`, from before layout 2) is
    // left for the next write, not a failed apply.
    let named: HashSet<&str> = stored.parts.iter().map(|p| p.name.as_str()).collect();
    let params = DeleteParams::default();
    for name in live
        .keys()
        .filter(|n| **n != at.name && !named.contains(n.as_str()))
    {
        let _ = retry(deadline, retries, || api.delete(name, &params)).await;
    }
    Ok(())
}

/// Inventory parts written at once: a first sync of a large repository
/// writes a few dozen.
const INVENTORY_WRITES: usize = 8;

/// Retries made during one apply, and when the API server was last seen
/// unreachable.
#[derive(Debug, Default)]
struct Retries {
    count: AtomicUsize,
    last_outage: Mutex<Option<Instant>>,
}

/// How long after an outage a 401/403 still counts as transient: an API
/// server that has just restarted answers "forbidden" until its RBAC
/// caches have filled (seen with kube-apiserver 1.20 in the tests).
const AFTER_OUTAGE: Duration = Duration::from_secs(30);

impl Retries {
    fn outage(&self) {
        *self.last_outage.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn recently_down(&self) -> bool {
        self.last_outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < AFTER_OUTAGE)
    }
}

/// Calls `f` until it succeeds, fails for good, or the deadline passes.
async fn retry<T, F, Fut>(deadline: Instant, retries: &Retries, mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(100);
    let mut conflicts = 0;
    loop {
        let e = match f().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let again = match &e {
            kube::Error::Api(s) if s.code == 409 => {
                conflicts += 1;
                conflicts <= 3
            }
            kube::Error::Api(s) if s.code == 401 || s.code == 403 => retries.recently_down(),
            kube::Error::Api(s) => s.code == 429 || s.code >= 500,
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                retries.outage();
                true
            }
            _ => false,
        };
        if !again || Instant::now() + delay > deadline {
            return Err(e);
        }
        retries.count.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One line for a failure: the object and the server's answer.
pub fn failure_line(id: &ObjectRef, e: &Error) -> String {
    match e {
        Error::Api { detail, .. } => format!("{id}: {detail}"),
        other => format!("{id}: {other}"),
    }
}
