//! The `diff` stage: what applying a revision would do.
//!
//! A [`Plan`] says, per object, create / update / prune / unchanged (or
//! refuse: an object of the same name exists and meshplan does not own
//! it), with a unified YAML diff, and above the objects a semantic summary
//! of what the change means (access gained and lost, traffic moved, SLOs
//! and rollouts changed). Pure: the live side comes in as a
//! [`Snapshot`](crate::live::Snapshot) or as the objects of a directory.

mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use meshplan_compiler::object::{to_yaml, value_to_yaml, Body, CONTENT_HASH, SOURCE};
use meshplan_compiler::summary::{self, Summary};
use meshplan_compiler::MeshObject;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::fields;
use crate::inventory::ObjectRef;
use crate::live::{Key, Snapshot};
use crate::order;

pub use render::{render, Format};

/// What happens to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Prune,
    /// The object exists and meshplan does not own it: left alone.
    Refuse,
    Unchanged,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Prune => "prune",
            Action::Refuse => "refuse",
            Action::Unchanged => "unchanged",
        }
    }

    fn sigil(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Prune => '-',
            Action::Refuse => '!',
            Action::Unchanged => '=',
        }
    }
}

/// One object's change.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub action: Action,
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// The object was edited in the cluster: its desired state is the one
    /// meshplan last applied, yet the live object differs.
    pub drift: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unified diff, live → desired (empty when unchanged).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
    /// What to apply (create, update).
    #[serde(skip)]
    pub desired: Option<Body>,
    /// The live object's UID (prune: deleted only if it is still this one).
    #[serde(skip)]
    pub uid: Option<String>,
}

impl Change {
    pub fn id(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The apply phase of the object's kind.
    pub fn phase(&self) -> usize {
        let group = self.api_version.split_once('/').map_or("", |(g, _)| g);
        order::phase(group, &self.kind)
    }

    fn new(action: Action, id: &ObjectRef) -> Change {
        Change {
            action,
            api_version: id.api_version.clone(),
            kind: id.kind.clone(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            drift: false,
            reason: None,
            diff: String::new(),
            desired: None,
            uid: None,
        }
    }
}

/// The revision a plan applies: what names it (a commit, when known) and
/// what it means, recorded in the inventory once it is applied. Carried by
/// the [`Plan`] from diff into apply, once; serialised as its name.
#[derive(Clone, Debug, Default)]
pub struct Revision {
    pub id: Option<String>,
    /// Shared: a resync copies no summary.
    pub summary: Arc<Summary>,
}

impl Revision {
    pub fn new(id: Option<String>, summary: Arc<Summary>) -> Revision {
        Revision { id, summary }
    }

    fn unnamed(&self) -> bool {
        self.id.is_none()
    }
}

impl Serialize for Revision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.id.serialize(s)
    }
}

/// Everything applying a revision would do.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The revision the plan applies.
    #[serde(skip_serializing_if = "Revision::unnamed")]
    pub revision: Revision,
    /// The revision the cluster has (from the inventory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<String>,
    /// Every desired or prunable object, in apply order.
    pub changes: Vec<Change>,
    /// What the change means, by service.
    pub summary: Vec<summary::Change>,
    /// Objects wearing meshplan's label that its inventory does not list:
    /// never pruned (another instance's, or hand-labelled).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unlisted: Vec<String>,
    /// Inventory kinds the cluster no longer serves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gone_kinds: Vec<String>,
}

/// How many objects get each action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub drift: usize,
    pub prune: usize,
    pub refuse: usize,
    pub unchanged: usize,
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for ch in &self.changes {
            match ch.action {
                Action::Create => c.create += 1,
                Action::Update => c.update += 1,
                Action::Prune => c.prune += 1,
                Action::Refuse => c.refuse += 1,
                Action::Unchanged => c.unchanged += 1,
            }
            c.drift += usize::from(ch.drift);
        }
        c
    }

    /// Whether applying would change the cluster (or is refused somewhere).
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::Unchanged)
    }

    fn sort(&mut self) {
        // Compared in place: cached keys would copy three strings of every
        // object on every resync.
        self.changes.sort_by(|a, b| {
            (a.phase(), &a.kind, &a.namespace, &a.name).cmp(&(
                b.phase(),
                &b.kind,
                &b.namespace,
                &b.name,
            ))
        });
    }
}

/// Plans `desired`, the objects of `revision`, against the cluster as
/// `snapshot` saw it.
pub fn plan(desired: &[MeshObject], revision: &Revision, snapshot: &Snapshot) -> Plan {
    let summary = &*revision.summary;
    let mut changes = Vec::new();
    let mut wanted: BTreeSet<Key> = BTreeSet::new();
    for d in desired {
        let id = ObjectRef::of(d);
        wanted.insert(Key::of(&id));
        let mut ch = Change::new(Action::Create, &id);
        match snapshot.objects.get(&Key::of(&id)) {
            None => {
                ch.diff = unified("", &to_yaml(d));
                ch.desired = Some(d.body.clone());
            }
            Some(live) if !live.labelled => {
                ch.action = Action::Refuse;
                ch.reason = Some(format!(
                    "{id} exists and is not managed by meshplan (no {}={} label): left alone; delete it or label it to let meshplan take it over",
                    meshplan_compiler::object::MANAGED_BY,
                    meshplan_compiler::object::MANAGER
                ));
            }
            Some(live) => {
                // Labelled, but never applied by meshplan's field manager
                // (created by `kubectl apply` of rendered output, say):
                // apply once to own its fields.
                let in_sync = live.fields.as_ref().is_some_and(|f| {
                    live.in_sync_with(&d.body, || {
                        let (want, body) = (d.body.value(), live.body.value());
                        fields::object_in_sync(&want, &body, &f.value(), SOURCE)
                    })
                });
                if in_sync {
                    ch.action = Action::Unchanged;
                } else {
                    let (desired, body) = (d.body.value(), live.body.value());
                    let mut want = fields::comparable(&desired);
                    take_live_source(&mut want, &body);
                    let view = match &live.fields {
                        Some(f) => fields::owned_view(&want, &body, &f.value()),
                        None => fields::trim_to(&body, &want),
                    };
                    ch.action = Action::Update;
                    ch.drift = hash(&body).is_some() && hash(&body) == hash(&desired);
                    let before = with_identity(view, &desired);
                    ch.diff = unified(&value_to_yaml(&before), &value_to_yaml(&desired));
                    ch.desired = Some(d.body.clone());
                }
            }
        }
        changes.push(ch);
    }
    for id in &snapshot.inventory.objects {
        let key = Key::of(id);
        if wanted.contains(&key) {
            continue;
        }
        // Pruned only when listed *and* labelled; an object already gone
        // needs nothing.
        if let Some(live) = snapshot.objects.get(&key).filter(|l| l.labelled) {
            let mut ch = Change::new(Action::Prune, &live.id);
            let body = live.body.value();
            ch.uid = body
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_owned);
            ch.diff = unified(&value_to_yaml(&for_display(&body)), "");
            changes.push(ch);
        }
    }
    let listed: BTreeSet<Key> = snapshot.inventory.objects.iter().map(Key::of).collect();
    let unlisted = snapshot
        .objects
        .iter()
        .filter(|(k, l)| l.labelled && !wanted.contains(k) && !listed.contains(k))
        .map(|(_, l)| l.id.to_string())
        .collect();
    // Borrowed: the summary grows with the repository, and a copy would
    // serve nothing.
    let summary = match &snapshot.inventory.summary {
        Some(before) => before.changes(summary),
        None => Summary::default().changes(summary),
    };
    let mut p = Plan {
        revision: revision.clone(),
        previous_revision: snapshot.inventory.revision.clone(),
        changes,
        summary,
        unlisted,
        gone_kinds: snapshot
            .gone_kinds
            .iter()
            .map(|(v, k)| format!("{v} {k}"))
            .collect(),
    };
    p.sort();
    p
}

/// Plans `desired` against objects read from files (a `render --out`
/// tree of the base revision, say): every object there counts as
/// meshplan's, compared whole.
pub fn plan_against(
    desired: &[MeshObject],
    summary: &Summary,
    old: &[Value],
    old_summary: Option<&Summary>,
) -> Plan {
    let old: BTreeMap<Key, (ObjectRef, &Value)> = old
        .iter()
        .filter_map(|v| ObjectRef::from_value(v).map(|id| (Key::of(&id), (id, v))))
        .collect();
    let mut changes = Vec::new();
    let mut wanted = BTreeSet::new();
    for d in desired {
        let id = ObjectRef::of(d);
        let key = Key::of(&id);
        let mut ch = Change::new(Action::Create, &id);
        let desired = d.body.value();
        match old.get(&key) {
            None => ch.diff = unified("", &value_to_yaml(&desired)),
            Some((_, o)) if normalized(o) == normalized(&with_live_source(&desired, o)) => {
                ch.action = Action::Unchanged
            }
            Some((_, o)) => {
                ch.action = Action::Update;
                ch.diff = unified(&value_to_yaml(o), &value_to_yaml(&desired));
            }
        }
        if ch.action != Action::Unchanged {
            ch.desired = Some(d.body.clone());
        }
        wanted.insert(key);
        changes.push(ch);
    }
    for (key, (id, o)) in &old {
        if !wanted.contains(key) {
            let mut ch = Change::new(Action::Prune, id);
            ch.diff = unified(&value_to_yaml(o), "");
            changes.push(ch);
        }
    }
    let mut p = Plan {
        changes,
        // Rendered YAML carries no summary: say nothing rather than call
        // every service new.
        summary: old_summary.map(|s| s.changes(summary)).unwrap_or_default(),
        ..Plan::default()
    };
    p.sort();
    p
}

/// Gives `desired` the live object's `meshplan.dev/source` annotation.
///
/// The annotation names the intent's `file:line`; an edit above an intent
/// moves its line without changing what it means. Comparing with the live
/// line keeps such an edit from rewriting every object below it; the line
/// is refreshed whenever the object changes for a real reason.
fn take_live_source(desired: &mut Value, live: &Value) {
    let live_source = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SOURCE));
    let annotations = desired
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut);
    if let (Some(src), Some(ann)) = (live_source, annotations) {
        if let Some(v) = ann.get_mut(SOURCE) {
            *v = src.clone();
        }
    }
}

/// `desired` with the live object's `meshplan.dev/source` annotation.
fn with_live_source(desired: &Value, live: &Value) -> Value {
    let mut d = desired.clone();
    take_live_source(&mut d, live);
    d
}

fn hash(v: &Value) -> Option<&str> {
    v.pointer("/metadata/annotations")?
        .get(CONTENT_HASH)?
        .as_str()
}

/// Key order does not matter when comparing files.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, normalized(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// A field-set view with the identity fields put back, in the desired
/// object's key order, so the diff lines up.
fn with_identity(view: Value, desired: &Value) -> Value {
    let mut view = match view {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut out = Map::new();
    for k in ["apiVersion", "kind"] {
        if let Some(v) = desired.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let mut meta = Map::new();
    for k in ["name", "namespace"] {
        if let Some(v) = desired.pointer(&format!("/metadata/{k}")) {
            meta.insert(k.into(), v.clone());
        }
    }
    if let Some(Value::Object(m)) = view.remove("metadata") {
        meta.extend(m);
    }
    out.insert("metadata".into(), Value::Object(meta));
    if let Some(d) = desired.as_object() {
        for k in d.keys() {
            if let Some(v) = view.remove(k) {
                out.insert(k.clone(), v);
            }
        }
    }
    out.extend(view);
    Value::Object(out)
}

/// A live object as a prune shows it: no status, no server metadata.
fn for_display(live: &Value) -> Value {
    let mut v = live.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| {
                matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations")
            });
        }
    }
    v
}

fn unified(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header("live", "desired")
        .to_string()
}

#[cfg(test)]
mod tests;
