//! A watch-fed cache of the objects meshplan owns, so a resync reads no
//! list from the API server and an out-of-band edit is seen at once.
//!
//! One watcher per kind (label `app.kubernetes.io/managed-by=meshplan`, all
//! namespaces), started when a revision first needs the kind. Each object
//! is kept as a [`LiveObject`]: without `managedFields`, with meshplan's
//! own field set, packed ([`LiveObject::packed`]). Every change after a
//! kind's initial list is sent on the `changed` channel, which the
//! controller turns into a drift check.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use meshplan_compiler::object::{MANAGED_BY, MANAGER};
use meshplan_compiler::MeshObject;
use tokio::sync::{mpsc, watch};

use crate::cluster::Cluster;
use crate::inventory::{Inventory, ObjectRef};
use crate::live::{self, Key, LiveObject, Snapshot};
use crate::Error;

type Objects = Arc<RwLock<BTreeMap<Key, Arc<LiveObject>>>>;
/// Kinds watched, by `(group, kind)`, each with a flag that turns true once
/// listed.
type Watched = BTreeMap<(String, String), watch::Receiver<bool>>;

/// The cache. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    cluster: Cluster,
    objects: Objects,
    /// `(group, kind)` watched, with a flag that turns true once listed.
    watched: Arc<Mutex<Watched>>,
    changed: mpsc::UnboundedSender<Key>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache; changes seen after the initial lists arrive on the returned
    /// receiver.
    pub fn new(cluster: Cluster) -> (Cache, mpsc::UnboundedReceiver<Key>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let cache = Cache {
            cluster,
            objects: Arc::default(),
            watched: Arc::default(),
            changed: tx,
        };
        (cache, rx)
    }

    /// Starts watching the kinds of `desired` and `inventory` not watched
    /// yet, and waits until each has been listed once.
    pub async fn ensure(
        &self,
        desired: &[MeshObject],
        inventory: &Inventory,
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, Error> {
        let mut gone = Vec::new();
        let mut waits = Vec::new();
        for ((group, kind), (api_version, wanted)) in live::kinds(desired, inventory) {
            if let Some(rx) = self.lock_watched().get(&(group.clone(), kind.clone())) {
                waits.push((format!("{api_version} {kind}"), rx.clone()));
                continue;
            }
            let r = match self.cluster.resolve(&api_version, &kind).await {
                Ok(r) => r,
                Err(Error::UnknownKind { .. }) if !wanted => {
                    gone.push((api_version, kind));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (ready_tx, ready_rx) = watch::channel(false);
            self.lock_watched()
                .insert((group, kind.clone()), ready_rx.clone());
            waits.push((format!("{api_version} {kind}"), ready_rx));
            tokio::spawn(watch_kind(
                self.cluster.clone(),
                r,
                self.objects.clone(),
                self.changed.clone(),
                ready_tx,
            ));
        }
        for (what, mut rx) in waits {
            let listed = tokio::time::timeout(timeout, rx.wait_for(|ready| *ready)).await;
            if !matches!(listed, Ok(Ok(_))) {
                return Err(Error::Api {
                    what: format!("watching {what}"),
                    detail: format!("not listed within {timeout:?} (is the API server reachable, and may meshplan list it?)"),
                    code: None,
                });
            }
        }
        Ok(gone)
    }

    /// A snapshot for a plan: the cached objects, plus a lookup of each
    /// desired object the cache lacks (it may exist, unowned).
    pub async fn snapshot(
        &self,
        desired: &[MeshObject],
        inventory: Option<Arc<Inventory>>,
        gone_kinds: Vec<(String, String)>,
        concurrency: usize,
    ) -> Result<Snapshot, Error> {
        let objects = self
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let absent: Vec<ObjectRef> = desired
            .iter()
            .map(ObjectRef::of)
            .filter(|id| !objects.contains_key(&Key::of(id)))
            .collect();
        let mut snapshot = Snapshot {
            objects,
            inventory_exists: inventory.is_some(),
            inventory: inventory.unwrap_or_default(),
            gone_kinds,
        };
        for o in live::lookup(&self.cluster, absent, concurrency).await? {
            snapshot.objects.insert(Key::of(&o.id), Arc::new(o));
        }
        Ok(snapshot)
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.objects.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_watched(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn watch_kind(
    cluster: Cluster,
    r: Arc<crate::cluster::Resolved>,
    objects: Objects,
    changed: mpsc::UnboundedSender<Key>,
    ready: watch::Sender<bool>,
) {
    let api = cluster.api_all(&r);
    // Pages of 100, not kube's 500: a page is held as whole objects while
    // it is read, once per kind at start and concurrently for every kind.
    let config = watcher::Config::default()
        .labels(&format!("{MANAGED_BY}={MANAGER}"))
        .page_size(100);
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    // Objects of the kind listed so far in a (re)list.
    let mut relist: HashSet<Key> = HashSet::new();
    let mut listed = false;
    while let Some(event) = stream.next().await {
        let Ok(event) = event else {
            // The backoff retries; a failed watch shows as drift unnoticed
            // until it recovers, and as a reconcile error if it never does.
            continue;
        };
        match event {
            Event::Init => relist.clear(),
            Event::InitApply(o) => {
                let o = live::to_live(o, &r).packed();
                let key = Key::of(&o.id);
                relist.insert(key.clone());
                let mut map = objects.write().unwrap_or_else(|p| p.into_inner());
                let differs = map.get(&key).map(|x| x.as_ref()) != Some(&o);
                map.insert(key.clone(), Arc::new(o));
                drop(map);
                if listed && differs {
                    let _ = changed.send(key);
                }
            }
            Event::InitDone => {
                // Objects deleted while the watch was down. The set goes
                // with this list: a copy of every key, kept for nothing
                // until the next relist.
                let relist = std::mem::take(&mut relist);
                let mut map = objects.write().unwrap_or_else(|p| p.into_inner());
                let stale: Vec<Key> = map
                    .keys()
                    .filter(|k| k.group == r.resource.group && k.kind == r.resource.kind)
                    .filter(|k| !relist.contains(*k))
                    .cloned()
                    .collect();
                for k in &stale {
                    map.remove(k);
                }
                drop(map);
                if listed {
                    for k in stale {
                        let _ = changed.send(k);
                    }
                }
                listed = true;
                let _ = ready.send(true);
            }
            Event::Apply(o) => {
                let o = live::to_live(o, &r).packed();
                let key = Key::of(&o.id);
                objects
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), Arc::new(o));
                let _ = changed.send(key);
            }
            Event::Delete(o) => {
                let o = live::to_live(o, &r);
                let key = Key::of(&o.id);
                objects
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                let _ = changed.send(key);
            }
        }
    }
}
