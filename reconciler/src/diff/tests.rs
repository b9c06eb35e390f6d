use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::inventory::Inventory;
use crate::live::LiveObject;
use meshplan_compiler::Origin;

fn vs(name: &str, weight: u32) -> MeshObject {
    MeshObject::builder(
        "istio",
        "networking.istio.io/v1",
        "VirtualService",
        "shop",
        name,
        &Origin::new(&format!("shop/{name}"), &format!("shop/{name}.yaml"), 1),
    )
    .spec(json!({"hosts": [name], "http": [{"route": [{"weight": weight}]}]}))
    .build()
}

/// The field set server-side apply records for `desired` on a CRD whose
/// lists are atomic.
fn fields_of(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (format!("f:{k}"), fields_of(v)))
                .collect(),
        ),
        _ => json!({}),
    }
}

/// The object as the API server returns it after meshplan applied it.
fn applied(o: &MeshObject) -> LiveObject {
    let mut body = o.body.value();
    body["metadata"]["uid"] = json!(format!("uid-{}", o.name));
    body["metadata"]["resourceVersion"] = json!("7");
    let fields = fields_of(&fields::comparable(&o.body.value()));
    LiveObject::new(
        ObjectRef::of(o),
        true,
        Body::new(&body),
        Some(Body::new(&fields)),
    )
}

#[derive(Default)]
struct SnapshotBuilder(Snapshot);

impl SnapshotBuilder {
    fn live(mut self, o: LiveObject) -> Self {
        self.0
            .objects
            .insert(Key::of(&o.id), std::sync::Arc::new(o));
        self
    }
    fn listed(mut self, o: &MeshObject) -> Self {
        Arc::make_mut(&mut self.0.inventory)
            .objects
            .insert(ObjectRef::of(o));
        self
    }
    fn build(self) -> Snapshot {
        self.0
    }
}

fn actions(p: &Plan) -> Vec<(String, Action, bool)> {
    p.changes
        .iter()
        .map(|c| (c.name.clone(), c.action, c.drift))
        .collect()
}

#[test]
fn creates_what_the_cluster_lacks() {
    let p = plan(&[vs("a", 100)], &Revision::default(), &Snapshot::default());
    assert_eq!(actions(&p), [("a".into(), Action::Create, false)]);
    assert!(p.changes[0].diff.contains("+kind: VirtualService"));
    assert!(p.has_changes());
}

#[test]
fn an_applied_object_is_unchanged_and_makes_no_diff() {
    let a = vs("a", 100);
    let snap = SnapshotBuilder::default()
        .live(applied(&a))
        .listed(&a)
        .build();
    let p = plan(&[a], &Revision::default(), &snap);
    assert_eq!(actions(&p), [("a".into(), Action::Unchanged, false)]);
    assert!(!p.has_changes());
}

#[test]
fn a_new_revision_updates_and_is_not_drift() {
    let old = vs("a", 100);
    let snap = SnapshotBuilder::default()
        .live(applied(&old))
        .listed(&old)
        .build();
    let p = plan(&[vs("a", 50)], &Revision::default(), &snap);
    assert_eq!(actions(&p), [("a".into(), Action::Update, false)]);
    assert!(
        p.changes[0].diff.contains("-    - weight: 100"),
        "{}",
        p.changes[0].diff
    );
    assert!(p.changes[0].diff.contains("+    - weight: 50"));
}

#[test]
fn an_edit_in_the_cluster_is_drift() {
    let a = vs("a", 100);
    let mut live = applied(&a);
    live.body
        .edit(|b| b["spec"]["http"][0]["route"][0]["weight"] = json!(10));
    let snap = SnapshotBuilder::default().live(live).listed(&a).build();
    let p = plan(&[a], &Revision::default(), &snap);
    assert_eq!(actions(&p), [("a".into(), Action::Update, true)]);
}

#[test]
fn an_unowned_object_of_the_same_name_is_refused() {
    let a = vs("a", 100);
    let mut live = applied(&a);
    live.labelled = false;
    live.fields = None;
    let snap = SnapshotBuilder::default().live(live).build();
    let p = plan(&[a], &Revision::default(), &snap);
    assert_eq!(p.changes[0].action, Action::Refuse);
    assert!(p.changes[0]
        .reason
        .as_ref()
        .unwrap()
        .contains("not managed by meshplan"));
    assert!(p.changes[0].desired.is_none());
}

#[test]
fn prunes_only_what_is_labelled_and_listed() {
    let (gone, listed_unlabelled, labelled_unlisted) =
        (vs("gone", 1), vs("hand", 1), vs("other", 1));
    let mut hand = applied(&listed_unlabelled);
    hand.labelled = false;
    let snap = SnapshotBuilder::default()
        .live(applied(&gone))
        .listed(&gone)
        .live(hand)
        .listed(&listed_unlabelled)
        .live(applied(&labelled_unlisted))
        .build();
    let p = plan(&[], &Revision::default(), &snap);
    assert_eq!(actions(&p), [("gone".into(), Action::Prune, false)]);
    assert_eq!(p.changes[0].uid.as_deref(), Some("uid-gone"));
    assert_eq!(
        p.unlisted,
        ["VirtualService shop/other (networking.istio.io)"]
    );
}

#[test]
fn an_object_read_through_another_api_version_is_the_same_object() {
    let a = vs("a", 100);
    let mut old = applied(&a);
    old.id.api_version = "networking.istio.io/v1beta1".into();
    let mut listed = ObjectRef::of(&a);
    listed.api_version = "networking.istio.io/v1beta1".into();
    let mut snap = SnapshotBuilder::default().live(old).build();
    snap.inventory = Arc::new(Inventory {
        objects: [listed].into_iter().collect(),
        ..Inventory::default()
    });
    let p = plan(&[a], &Revision::default(), &snap);
    assert_eq!(actions(&p), [("a".into(), Action::Unchanged, false)]);
}

#[test]
fn changes_come_in_apply_order() {
    let dr = MeshObject::builder(
        "istio",
        "networking.istio.io/v1",
        "DestinationRule",
        "shop",
        "z",
        &Origin::default(),
    )
    .build();
    let p = plan(
        &[vs("a", 1), dr],
        &Revision::default(),
        &Snapshot::default(),
    );
    let kinds: Vec<&str> = p.changes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["DestinationRule", "VirtualService"]);
}

#[test]
fn against_files_compares_whole_objects_regardless_of_key_order() {
    let a = vs("a", 100);
    let mut reordered = serde_json::Map::new();
    for (k, v) in a.body.value().as_object().unwrap().iter().rev() {
        reordered.insert(k.clone(), v.clone());
    }
    let old = vec![Value::Object(reordered), vs("b", 1).body.value()];
    let p = plan_against(&[a, vs("c", 1)], &Summary::default(), &old, None);
    assert_eq!(
        actions(&p),
        [
            ("a".into(), Action::Unchanged, false),
            ("b".into(), Action::Prune, false),
            ("c".into(), Action::Create, false),
        ]
    );
}

#[test]
fn every_format_names_the_change_and_the_counts() {
    let p = plan(&[vs("a", 100)], &Revision::default(), &Snapshot::default());
    let text = render(&p, Format::Text);
    assert!(
        text.contains("+ create VirtualService shop/a (networking.istio.io)"),
        "{text}"
    );
    assert!(text.ends_with("Plan: 1 to create, 0 to update, 0 to prune, 0 unchanged.\n"));
    let md = render(&p, Format::Markdown);
    assert!(
        md.contains("| create | VirtualService | shop | a |"),
        "{md}"
    );
    assert!(md.contains("```diff\n"));
    let json: Value = serde_json::from_str(&render(&p, Format::Json)).unwrap();
    assert_eq!(json["counts"]["create"], 1);
    assert_eq!(json["changes"][0]["action"], "create");
}

#[test]
fn an_intent_that_only_moved_lines_is_unchanged() {
    let a = vs("a", 100);
    let mut moved = a.clone();
    moved.body.edit(|b| {
        b["metadata"]["annotations"][meshplan_compiler::object::SOURCE] = json!("shop/a.yaml:9")
    });
    let snap = SnapshotBuilder::default()
        .live(applied(&a))
        .listed(&a)
        .build();
    let p = plan(&[moved.clone()], &Revision::default(), &snap);
    assert_eq!(actions(&p), [("a".into(), Action::Unchanged, false)]);
    let p = plan_against(&[moved], &Summary::default(), &[a.body.value()], None);
    assert_eq!(actions(&p), [("a".into(), Action::Unchanged, false)]);
}
