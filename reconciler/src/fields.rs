//! Server-side apply field sets: comparing only what meshplan manages.
//!
//! The API server records, per field manager, which fields of an object it
//! set (`metadata.managedFields[].fieldsV1`). meshplan compares a live
//! object with its desired state *through meshplan's own field set*, so
//! what other controllers and API-server defaulting add never shows as a
//! difference, while an out-of-band edit of a field meshplan set does: the
//! edit moves the field's ownership away from meshplan, or changes its
//! value.
//!
//! A field set is a tree of JSON objects whose keys are `f:<field>` (a map
//! field), `k:<json>` (a list item by its key fields), `v:<json>` (a set
//! item by value), `i:<n>` (a list item by index) and `.` (the item
//! itself). An empty object means the whole value below that point is
//! owned as one (an atomic list, or a leaf); API-server defaults inside it
//! are tolerated.
//!
//! Everything here is pure; the desired object passed in is
//! [`comparable`]: without `apiVersion`, `kind`, and the name and namespace
//! (which no manager owns).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// The part of a desired object a field set can speak about.
pub fn comparable(desired: &Value) -> Value {
    let mut v = desired.clone();
    if let Some(map) = v.as_object_mut() {
        map.shift_remove("apiVersion");
        map.shift_remove("kind");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.shift_remove("name");
            meta.shift_remove("namespace");
            if meta.is_empty() {
                map.shift_remove("metadata");
            }
        }
    }
    v
}

/// [`in_sync`] for a whole desired object, without copying it: skips the
/// identity fields [`comparable`] drops, and the value (not the presence)
/// of the annotation `ignored`.
pub fn object_in_sync(desired: &Value, live: &Value, fields: &Value, ignored: &str) -> bool {
    let (Some(d), Some(l), Some(set)) = (desired.as_object(), live.as_object(), fields.as_object())
    else {
        return false;
    };
    let owned: BTreeSet<&str> = set.keys().filter_map(|k| k.strip_prefix("f:")).collect();
    let mut wanted = 0;
    for (k, dv) in d {
        match k.as_str() {
            "apiVersion" | "kind" => continue,
            "metadata" => {
                let Some(dm) = dv.as_object() else {
                    return false;
                };
                if dm.keys().all(|k| k == "name" || k == "namespace") {
                    continue;
                }
                wanted += 1;
                let (Some(lm), Some(sm)) = (
                    l.get("metadata").and_then(Value::as_object),
                    set.get("f:metadata").and_then(Value::as_object),
                ) else {
                    return false;
                };
                if !metadata_in_sync(dm, lm, sm, ignored) {
                    return false;
                }
            }
            _ => {
                wanted += 1;
                let ok = owned.contains(k.as_str())
                    && l.get(k)
                        .is_some_and(|lv| in_sync(dv, lv, &set[&format!("f:{k}")]));
                if !ok {
                    return false;
                }
            }
        }
    }
    wanted == owned.len()
}

fn metadata_in_sync(
    d: &Map<String, Value>,
    l: &Map<String, Value>,
    set: &Map<String, Value>,
    ignored: &str,
) -> bool {
    let owned: BTreeSet<&str> = set.keys().filter_map(|k| k.strip_prefix("f:")).collect();
    let mut wanted = 0;
    for (k, dv) in d {
        if k == "name" || k == "namespace" {
            continue;
        }
        wanted += 1;
        let Some(lv) = l.get(k) else {
            return false;
        };
        let Some(sub) = set.get(&format!("f:{k}")) else {
            return false;
        };
        let ok = if k == "annotations" {
            annotations_in_sync(dv, lv, sub, ignored)
        } else {
            in_sync(dv, lv, sub)
        };
        if !ok {
            return false;
        }
    }
    wanted == owned.len()
}

fn annotations_in_sync(d: &Value, l: &Value, set: &Value, ignored: &str) -> bool {
    let (Some(d), Some(l), Some(set)) = (d.as_object(), l.as_object(), set.as_object()) else {
        return false;
    };
    let owned: BTreeSet<&str> = set.keys().filter_map(|k| k.strip_prefix("f:")).collect();
    d.len() == owned.len()
        && d.iter().all(|(k, dv)| {
            owned.contains(k.as_str()) && l.get(k).is_some_and(|lv| k == ignored || same(dv, lv))
        })
}

/// Whether `live`, seen through the field set `fields`, is exactly
/// `desired`: the manager owns every desired field and no other, and each
/// owned value equals the desired one (values owned whole may carry
/// defaults the desired value leaves out).
pub fn in_sync(desired: &Value, live: &Value, fields: &Value) -> bool {
    let Some(set) = fields.as_object() else {
        return false;
    };
    match node_kind(set) {
        Node::Leaf => subset(desired, live),
        Node::Map => {
            let (Some(d), Some(l)) = (desired.as_object(), live.as_object()) else {
                return false;
            };
            let owned: BTreeSet<&str> = set.keys().filter_map(|k| k.strip_prefix("f:")).collect();
            d.len() == owned.len()
                && d.iter().all(|(k, dv)| {
                    owned.contains(k.as_str())
                        && l.get(k)
                            .is_some_and(|lv| in_sync(dv, lv, &set[&format!("f:{k}")]))
                })
        }
        Node::List => {
            let (Some(d), Some(l)) = (desired.as_array(), live.as_array()) else {
                return false;
            };
            let items: Vec<(&String, &Value)> = set.iter().filter(|(k, _)| *k != ".").collect();
            if items.len() != d.len() {
                return false;
            }
            let mut used = vec![false; d.len()];
            items.iter().all(|(key, sub)| {
                let Some(lv) = find_live(key, l) else {
                    return false;
                };
                let Some(i) = find_desired(key, d, &used) else {
                    return false;
                };
                used[i] = true;
                in_sync(&d[i], lv, sub)
            })
        }
    }
}

/// The live object as far as the field set owns it, trimmed to the shape
/// of `desired` inside values owned whole (so defaults do not clutter a
/// diff). A desired field another manager took over shows its live value,
/// so a diff shows what the edit changed.
pub fn owned_view(desired: &Value, live: &Value, fields: &Value) -> Value {
    let Some(set) = fields.as_object() else {
        return Value::Null;
    };
    match node_kind(set) {
        Node::Leaf => trim_to(live, desired),
        Node::Map => {
            let Some(l) = live.as_object() else {
                return live.clone();
            };
            let mut out = Map::new();
            for (k, sub) in set {
                let Some(name) = k.strip_prefix("f:") else {
                    continue;
                };
                if let Some(lv) = l.get(name) {
                    let dv = desired.get(name).unwrap_or(&Value::Null);
                    out.insert(name.to_owned(), owned_view(dv, lv, sub));
                }
            }
            // A desired field someone else now owns: its live value, so the
            // diff shows the edit itself rather than a missing field.
            if let Some(d) = desired.as_object() {
                for (k, dv) in d {
                    if !out.contains_key(k) {
                        if let Some(lv) = l.get(k) {
                            out.insert(k.clone(), trim_to(lv, dv));
                        }
                    }
                }
            }
            // Desired order, then the rest, so a diff lines up.
            let mut ordered = Map::new();
            if let Some(d) = desired.as_object() {
                for k in d.keys() {
                    if let Some(v) = out.remove(k) {
                        ordered.insert(k.clone(), v);
                    }
                }
            }
            ordered.extend(out);
            Value::Object(ordered)
        }
        Node::List => {
            let (Some(l), d) = (live.as_array(), desired.as_array()) else {
                return live.clone();
            };
            let d = d.map(Vec::as_slice).unwrap_or_default();
            let mut used = vec![false; d.len()];
            let mut out = Vec::new();
            for (key, sub) in set.iter().filter(|(k, _)| *k != ".") {
                if let Some(lv) = find_live(key, l) {
                    let dv = match find_desired(key, d, &used) {
                        Some(i) => {
                            used[i] = true;
                            &d[i]
                        }
                        None => &Value::Null,
                    };
                    out.push(owned_view(dv, lv, sub));
                }
            }
            Value::Array(out)
        }
    }
}

enum Node {
    Leaf,
    Map,
    List,
}

fn node_kind(set: &Map<String, Value>) -> Node {
    if set.keys().any(|k| k.starts_with("f:")) {
        Node::Map
    } else if set
        .keys()
        .any(|k| k.starts_with("k:") || k.starts_with("v:") || k.starts_with("i:"))
    {
        Node::List
    } else {
        Node::Leaf
    }
}

fn find_live<'a>(key: &str, live: &'a [Value]) -> Option<&'a Value> {
    if let Some(k) = key.strip_prefix("k:") {
        let k: Map<String, Value> = serde_json::from_str(k).ok()?;
        live.iter().find(|item| {
            k.iter()
                .all(|(f, v)| item.get(f).is_some_and(|x| same(x, v)))
        })
    } else if let Some(v) = key.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        live.iter().find(|item| same(item, &v))
    } else if let Some(i) = key.strip_prefix("i:") {
        live.get(i.parse::<usize>().ok()?)
    } else {
        None
    }
}

/// The desired item a field-set item stands for. A desired item may leave
/// out a key field the server defaulted (a Service port's `protocol`), so
/// only the key fields it has are compared.
fn find_desired(key: &str, desired: &[Value], used: &[bool]) -> Option<usize> {
    let free = |i: &usize| !used[*i];
    if let Some(k) = key.strip_prefix("k:") {
        let k: Map<String, Value> = serde_json::from_str(k).ok()?;
        (0..desired.len()).filter(free).find(|&i| {
            let item = &desired[i];
            let mut present = k.iter().filter_map(|(f, v)| item.get(f).map(|x| (x, v)));
            let mut any = false;
            present.all(|(x, v)| {
                any = true;
                same(x, v)
            }) && any
        })
    } else if let Some(v) = key.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        (0..desired.len())
            .filter(free)
            .find(|&i| same(&desired[i], &v))
    } else if let Some(i) = key.strip_prefix("i:") {
        let i = i.parse::<usize>().ok()?;
        (i < desired.len() && !used[i]).then_some(i)
    } else {
        None
    }
}

/// `desired` is contained in `live`: every desired field is there with the
/// same value; lists have the same length.
pub fn subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| subset(dv, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| subset(a, b))
        }
        _ => same(desired, live),
    }
}

/// Equality with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// `live` restricted to the fields `shape` has (all of it where `shape`
/// says nothing).
pub fn trim_to(live: &Value, shape: &Value) -> Value {
    match (live, shape) {
        (Value::Object(l), Value::Object(s)) => Value::Object(
            s.iter()
                .filter_map(|(k, sv)| l.get(k).map(|lv| (k.clone(), trim_to(lv, sv))))
                .collect(),
        ),
        (Value::Array(l), Value::Array(s)) => Value::Array(
            l.iter()
                .enumerate()
                .map(|(i, lv)| s.get(i).map_or_else(|| lv.clone(), |sv| trim_to(lv, sv)))
                .collect(),
        ),
        // `5` and `5.0` are one value: shown as desired, no diff line.
        (Value::Number(_), Value::Number(_)) if same(live, shape) => shape.clone(),
        _ => live.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service_fields() -> Value {
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}}},
                "f:selector": {}
            }
        })
    }

    fn live_service() -> Value {
        json!({
            "metadata": {"name": "a", "labels": {"app": "a", "other": "x"}, "uid": "1"},
            "spec": {
                "clusterIP": "10.0.0.1",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}],
                "selector": {"app": "a"}
            }
        })
    }

    fn desired_service() -> Value {
        json!({
            "metadata": {"labels": {"app": "a"}},
            "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "a"}}
        })
    }

    #[test]
    fn defaults_and_other_managers_fields_are_not_drift() {
        assert!(in_sync(
            &desired_service(),
            &live_service(),
            &service_fields()
        ));
    }

    #[test]
    fn a_changed_owned_value_is_drift() {
        let mut live = live_service();
        live["spec"]["selector"]["app"] = json!("b");
        assert!(!in_sync(&desired_service(), &live, &service_fields()));
    }

    #[test]
    fn a_field_no_longer_owned_is_drift() {
        let mut fields = service_fields();
        fields["f:spec"]
            .as_object_mut()
            .unwrap()
            .remove("f:selector");
        assert!(!in_sync(&desired_service(), &live_service(), &fields));
    }

    #[test]
    fn an_owned_field_no_longer_desired_needs_an_update() {
        let mut desired = desired_service();
        desired["spec"].as_object_mut().unwrap().remove("selector");
        assert!(!in_sync(&desired, &live_service(), &service_fields()));
    }

    #[test]
    fn an_extra_list_item_is_a_change() {
        let mut desired = desired_service();
        desired["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "grpc", "port": 81}));
        assert!(!in_sync(&desired, &live_service(), &service_fields()));
    }

    #[test]
    fn defaults_inside_an_atomic_value_are_tolerated_but_changes_are_not() {
        let fields = json!({"f:spec": {"f:rules": {}}});
        let desired = json!({"spec": {"rules": [{"backendRefs": [{"name": "a"}]}]}});
        let live = json!({"spec": {"rules": [{"backendRefs": [{"name": "a", "weight": 1}],
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]}});
        assert!(in_sync(&desired, &live, &fields));
        let moved = json!({"spec": {"rules": [{"backendRefs": [{"name": "b", "weight": 1}]}]}});
        assert!(!in_sync(&desired, &moved, &fields));
    }

    #[test]
    fn the_owned_view_hides_defaults_and_foreign_fields() {
        let view = owned_view(&desired_service(), &live_service(), &service_fields());
        assert_eq!(
            view,
            json!({"metadata": {"labels": {"app": "a"}},
                   "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "a"}}})
        );
    }

    #[test]
    fn a_whole_object_compares_like_its_comparable_part() {
        let mut desired = desired_service();
        desired["apiVersion"] = json!("v1");
        desired["kind"] = json!("Service");
        desired["metadata"]["name"] = json!("a");
        desired["metadata"]["annotations"] = json!({"src": "a.yaml:1", "x": "1"});
        let mut live = live_service();
        live["metadata"]["annotations"] = json!({"src": "a.yaml:9", "x": "1"});
        let mut fields = service_fields();
        fields["f:metadata"]["f:annotations"] = json!({"f:src": {}, "f:x": {}});
        assert!(object_in_sync(&desired, &live, &fields, "src"));
        assert!(!object_in_sync(&desired, &live, &fields, "other"));
        live["metadata"]["annotations"]["x"] = json!("2");
        assert!(!object_in_sync(&desired, &live, &fields, "src"));
    }

    #[test]
    fn comparable_drops_identity_fields() {
        let d = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "a", "namespace": "b", "labels": {"x": "y"}}, "spec": {}});
        assert_eq!(
            comparable(&d),
            json!({"metadata": {"labels": {"x": "y"}}, "spec": {}})
        );
    }
}
