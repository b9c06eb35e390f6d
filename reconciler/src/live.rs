//! Reading what the cluster has: the inventory, and the live objects
//! meshplan owns or is about to create.
//!
//! One list call per kind (label `app.kubernetes.io/managed-by=meshplan`,
//! all namespaces) finds the owned objects; the objects a plan would
//! create are then looked up once more, so an existing object meshplan
//! does not own is refused rather than taken over. `managedFields` is
//! dropped from every object kept: only meshplan's own field set is
//! retained, which is all a comparison needs. Objects are kept as compact
//! JSON text, not trees (as trees, a watch-fed cache of thousands of
//! objects took several times the memory), packed in the controller's
//! cache (mesh objects are repetitive text), and each remembers its last
//! comparison, so a resync that finds nothing changed inflates and parses
//! nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams};
use meshplan_compiler::object::{Body, MANAGED_BY, MANAGER};
use meshplan_compiler::MeshObject;
use serde_json::Value;

use crate::cluster::{Cluster, Resolved};
use crate::inventory::{parts, Inventory, InventoryName, ObjectRef};
use crate::{Error, FIELD_MANAGER};

/// An object's identity regardless of API version: the same object read
/// through two versions of its kind is one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Key {
    pub fn of(id: &ObjectRef) -> Key {
        Key {
            group: id.group().to_owned(),
            kind: id.kind.clone(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
        }
    }
}

/// A live object, as far as a comparison needs it.
#[derive(Debug)]
pub struct LiveObject {
    pub id: ObjectRef,
    /// Carries `app.kubernetes.io/managed-by: meshplan`.
    pub labelled: bool,
    /// The object without `managedFields` ([packed](Body::packed) in the
    /// controller's cache: a comparison the memo below answers reads none
    /// of it).
    pub body: Body,
    /// meshplan's server-side-apply field set, if it ever applied it
    /// (packed in the cache too).
    pub fields: Option<Body>,
    /// The last comparison: a digest of the desired body it was made
    /// against, and whether the two were in sync. A watch event replaces
    /// the whole object, so the memo never outlives the live state.
    memo: Mutex<Option<(u64, bool)>>,
}

impl LiveObject {
    pub fn new(id: ObjectRef, labelled: bool, body: Body, fields: Option<Body>) -> LiveObject {
        LiveObject {
            id,
            labelled,
            body,
            fields,
            memo: Mutex::new(None),
        }
    }

    /// The object with its body and field set packed, for keeping (a
    /// one-off plan keeps them as text: it reads each once).
    pub fn packed(self) -> LiveObject {
        LiveObject::new(
            self.id,
            self.labelled,
            self.body.packed(),
            self.fields.map(Body::packed),
        )
    }

    /// Whether this object is in sync with `desired`, by `compare` the
    /// first time this desired body is asked about, remembered after.
    pub fn in_sync_with(&self, desired: &Body, compare: impl FnOnce() -> bool) -> bool {
        let digest = desired.fingerprint();
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        match *memo {
            Some((d, in_sync)) if d == digest => in_sync,
            _ => {
                let in_sync = compare();
                *memo = Some((digest, in_sync));
                in_sync
            }
        }
    }
}

impl Clone for LiveObject {
    fn clone(&self) -> LiveObject {
        LiveObject::new(
            self.id.clone(),
            self.labelled,
            self.body.clone(),
            self.fields.clone(),
        )
    }
}

impl PartialEq for LiveObject {
    fn eq(&self, other: &LiveObject) -> bool {
        self.id == other.id
            && self.labelled == other.labelled
            && self.body == other.body
            && self.fields == other.fields
    }
}

/// What the cluster has, for one plan.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Shared with the controller's cache: a snapshot copies no object.
    pub objects: BTreeMap<Key, Arc<LiveObject>>,
    /// Shared with the controller, which reads it again only when it
    /// changed.
    pub inventory: Arc<Inventory>,
    /// Whether the inventory ConfigMap exists (a first apply has none).
    pub inventory_exists: bool,
    /// Kinds listed in the inventory that the cluster no longer serves
    /// (their CRD was removed): nothing of them can be pruned.
    pub gone_kinds: Vec<(String, String)>,
}

/// Reads the inventory; `None` when there is none yet.
pub async fn read_inventory(
    cluster: &Cluster,
    at: &InventoryName,
) -> Result<Option<Inventory>, Error> {
    Ok(read_inventory_version(cluster, at)
        .await?
        .map(|(_, inventory)| inventory))
}

/// The inventory with the `resourceVersion`s of its ConfigMaps: its
/// parts and head, by one list of its label; else (layout 1, or none yet)
/// the head alone.
async fn read_inventory_version(
    cluster: &Cluster,
    at: &InventoryName,
) -> Result<Option<(String, Inventory)>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), &at.namespace);
    let failed = |e: &kube::Error| Error::api(format!("reading the inventory ConfigMap {at}"), e);
    let list = api
        .list(&ListParams::default().labels(&parts::selector(at)))
        .await
        .map_err(|e| failed(&e))?;
    // A head without the label: layout 1, or one an older meshplan
    // rewrote (its parts are still labelled).
    let mut items = list.items;
    if !items
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some(&at.name))
    {
        match api.get_opt(&at.name).await.map_err(|e| failed(&e))? {
            Some(head) => items.push(head),
            None => return Ok(None),
        }
    }
    let version = versions(items.iter().map(|c| &c.metadata));
    let maps = items
        .into_iter()
        .map(|c| {
            (
                c.metadata.name.unwrap_or_default(),
                c.data.unwrap_or_default(),
            )
        })
        .collect();
    Ok(Inventory::from_configmaps(at, &maps).map(|i| (version, i)))
}

/// One version for a set of ConfigMaps: each one's name and
/// `resourceVersion`, in name order.
fn versions<'a>(metadata: impl Iterator<Item = &'a ObjectMeta>) -> String {
    let mut v: Vec<String> = metadata
        .map(|m| {
            let (name, rv) = (m.name.as_deref(), m.resource_version.as_deref());
            format!("{}={}", name.unwrap_or_default(), rv.unwrap_or_default())
        })
        .collect();
    v.sort();
    v.join(",")
}

/// The inventory as last read, with its ConfigMaps' `resourceVersion`s,
/// for a caller that reads it again and again (`meshplan run`).
#[derive(Debug, Default)]
pub struct InventoryCache(Option<(String, Arc<Inventory>)>);

impl InventoryCache {
    /// The inventory (`None` when there is none yet), read again only when
    /// one of its ConfigMaps changed, which their metadata alone tells: the
    /// inventory lists every object, so a large repository's is a lot to
    /// read and parse.
    pub async fn read(
        &mut self,
        cluster: &Cluster,
        at: &InventoryName,
    ) -> Result<Option<Arc<Inventory>>, Error> {
        let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), &at.namespace);
        let failed =
            |e: &kube::Error| Error::api(format!("reading the inventory ConfigMap {at}"), e);
        let listed = api
            .list_metadata(&ListParams::default().labels(&parts::selector(at)))
            .await
            .map_err(|e| failed(&e))?;
        let mut items = listed.items;
        if !items
            .iter()
            .any(|m| m.metadata.name.as_deref() == Some(&at.name))
        {
            match api
                .get_metadata_opt(&at.name)
                .await
                .map_err(|e| failed(&e))?
            {
                Some(head) => items.push(head),
                None => {
                    self.0 = None;
                    return Ok(None);
                }
            }
        }
        let version = versions(items.iter().map(|m| &m.metadata));
        if let Some((_, inventory)) = self.0.as_ref().filter(|(v, _)| *v == version) {
            return Ok(Some(inventory.clone()));
        }
        self.0 = read_inventory_version(cluster, at)
            .await?
            .map(|(v, inventory)| (v, Arc::new(inventory)));
        Ok(self.0.as_ref().map(|(_, i)| i.clone()))
    }
}

/// The kinds a plan reads, once each by `(group, kind)`, with the API
/// version to read them at (the desired objects' wins) and whether a
/// desired object needs it (a kind only the inventory names may be gone
/// with its CRD).
pub fn kinds(
    desired: &[MeshObject],
    inventory: &Inventory,
) -> BTreeMap<(String, String), (String, bool)> {
    let mut kinds = BTreeMap::new();
    for o in desired {
        kinds.insert(
            (o.group().to_owned(), o.kind.to_owned()),
            (o.api_version.to_owned(), true),
        );
    }
    for o in &inventory.objects {
        kinds
            .entry((o.group().to_owned(), o.kind.to_owned()))
            .or_insert((o.api_version.to_owned(), false));
    }
    kinds
}

/// Reads the inventory and every live object the plan for `desired` needs.
pub async fn read(
    cluster: &Cluster,
    desired: &[MeshObject],
    at: &InventoryName,
    concurrency: usize,
) -> Result<Snapshot, Error> {
    let inventory = read_inventory(cluster, at).await?;
    let inventory_exists = inventory.is_some();
    let inventory = inventory.unwrap_or_default();

    // Each kind once, by group and kind; the desired objects' version wins.
    let kinds = kinds(desired, &inventory);
    let selector = format!("{MANAGED_BY}={MANAGER}");
    let lists =
        futures::stream::iter(kinds.into_iter().map(|((_, kind), (api_version, wanted))| {
            let selector = selector.clone();
            async move {
                let r = match cluster.resolve(&api_version, &kind).await {
                    Ok(r) => r,
                    // A kind only the inventory names may be gone with its CRD.
                    Err(Error::UnknownKind { .. }) if !wanted => {
                        return Ok((Vec::new(), Some((api_version, kind))))
                    }
                    Err(e) => return Err(e),
                };
                let list = cluster
                    .api_all(&r)
                    // resourceVersion=0: served from the API server's watch
                    // cache, in memory, not a quorum read of etcd (at most a
                    // moment stale).
                    .list(&ListParams::default().labels(&selector).match_any())
                    .await
                    .map_err(|e| Error::api(format!("listing {api_version} {kind}"), &e))?;
                Ok((
                    list.items.into_iter().map(|o| to_live(o, &r)).collect(),
                    None,
                ))
            }
        }))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<(Vec<LiveObject>, Option<(String, String)>)>>()
        .await?;

    let mut objects: BTreeMap<Key, Arc<LiveObject>> = BTreeMap::new();
    let mut gone_kinds = Vec::new();
    for (items, gone) in lists {
        for o in items {
            objects.insert(Key::of(&o.id), Arc::new(o));
        }
        gone_kinds.extend(gone);
    }
    gone_kinds.sort();

    // The objects a plan would create: do they exist, unowned?
    let absent: Vec<ObjectRef> = desired
        .iter()
        .map(ObjectRef::of)
        .filter(|id| !objects.contains_key(&Key::of(id)))
        .collect();
    for o in lookup(cluster, absent, concurrency).await? {
        objects.insert(Key::of(&o.id), Arc::new(o));
    }

    Ok(Snapshot {
        objects,
        inventory: Arc::new(inventory),
        inventory_exists,
        gone_kinds,
    })
}

/// Above this many objects of one kind in one namespace, [`lookup`] lists
/// that namespace's objects of the kind that are not meshplan's, instead of
/// reading each object (a first sync of thousands of objects makes a
/// handful of calls, not thousands).
const LIST_INSTEAD_OF_GETS: usize = 20;

/// Reads the objects `ids` name; returns those that exist.
pub async fn lookup(
    cluster: &Cluster,
    ids: Vec<ObjectRef>,
    concurrency: usize,
) -> Result<Vec<LiveObject>, Error> {
    // By kind and namespace.
    type Group = (String, String, Option<String>);
    let mut groups: BTreeMap<Group, Vec<ObjectRef>> = BTreeMap::new();
    for id in ids {
        groups
            .entry((
                id.api_version.clone(),
                id.kind.clone(),
                id.namespace.clone(),
            ))
            .or_default()
            .push(id);
    }
    let mut gets = Vec::new();
    let mut lists = Vec::new();
    for ((api_version, kind, ns), ids) in groups {
        if ids.len() > LIST_INSTEAD_OF_GETS {
            lists.push((api_version, kind, ns, ids));
        } else {
            gets.extend(ids);
        }
    }
    let lists = futures::stream::iter(lists.into_iter().map(
        |(api_version, kind, ns, ids)| async move {
            let r = cluster.resolve(&api_version, &kind).await?;
            let wanted: std::collections::HashSet<Key> = ids.iter().map(Key::of).collect();
            let api = cluster.api_in(&r, ns.as_deref());
            // Only objects that are not meshplan's: ours were listed already.
            let unowned = format!("{MANAGED_BY}!={MANAGER}");
            let list = api
                .list(&ListParams::default().labels(&unowned).match_any())
                .await
                .map_err(|e| Error::api(format!("listing {api_version} {kind}"), &e))?;
            Ok::<_, Error>(
                list.items
                    .into_iter()
                    .map(|o| to_live(o, &r))
                    .filter(|o| wanted.contains(&Key::of(&o.id)))
                    .collect::<Vec<_>>(),
            )
        },
    ))
    .buffer_unordered(concurrency.max(1))
    .try_collect::<Vec<Vec<LiveObject>>>()
    .await?;
    let mut found: Vec<LiveObject> = lists.into_iter().flatten().collect();
    let got = futures::stream::iter(gets.into_iter().map(|id| async move {
        let r = cluster.resolve(&id.api_version, &id.kind).await?;
        match cluster.api_for(&r, &id).get_opt(&id.name).await {
            Ok(o) => Ok(o.map(|o| to_live(o, &r))),
            Err(e) => Err(Error::api(format!("reading {id}"), &e)),
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .try_collect::<Vec<Option<LiveObject>>>()
    .await?;
    found.extend(got.into_iter().flatten());
    Ok(found)
}

/// Keeps what a comparison needs: the body without `managedFields`, and
/// meshplan's own field set.
pub fn to_live(obj: DynamicObject, r: &Resolved) -> LiveObject {
    let mut body = serde_json::to_value(&obj).unwrap_or(Value::Null);
    // List items of built-in kinds come without apiVersion and kind.
    body["apiVersion"] = Value::String(r.resource.api_version.clone());
    body["kind"] = Value::String(r.resource.kind.clone());
    let managed = body
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.shift_remove("managedFields"));
    let fields = managed.and_then(|m| {
        m.as_array()?
            .iter()
            .find(|e| {
                e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
                    && e.get("operation").and_then(Value::as_str) == Some("Apply")
            })
            .and_then(|e| e.get("fieldsV1").map(Body::new))
    });
    let labelled = body
        .pointer("/metadata/labels")
        .and_then(|l| l.get(MANAGED_BY))
        .and_then(Value::as_str)
        == Some(MANAGER);
    let id = ObjectRef {
        api_version: r.resource.api_version.clone(),
        kind: r.resource.kind.clone(),
        namespace: obj.metadata.namespace.clone(),
        name: obj.metadata.name.clone().unwrap_or_default(),
    };
    LiveObject::new(id, labelled, Body::new(&body), fields)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde_json::json;

    use super::*;

    fn object() -> LiveObject {
        let id = ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("ns".into()),
            name: "a".into(),
        };
        LiveObject::new(id, true, Body::new(&json!({"data": {"a": "1"}})), None)
    }

    #[test]
    fn compares_a_desired_body_once_and_again_when_it_changes() {
        let live = object();
        let calls = Cell::new(0);
        let compare = |answer: bool| {
            calls.set(calls.get() + 1);
            answer
        };
        let one = Body::new(&json!({"data": {"a": "1"}}));
        let two = Body::new(&json!({"data": {"a": "2"}}));
        assert!(live.in_sync_with(&one, || compare(true)));
        assert!(live.in_sync_with(&one, || compare(false)));
        assert_eq!(calls.get(), 1);
        assert!(!live.in_sync_with(&two, || compare(false)));
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn a_copy_forgets_the_comparison() {
        let live = object();
        let one = Body::new(&json!({}));
        assert!(live.in_sync_with(&one, || true));
        let copy = live.clone();
        assert_eq!(copy, live);
        assert!(!copy.in_sync_with(&one, || false));
    }
}
