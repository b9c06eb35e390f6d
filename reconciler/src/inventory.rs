//! The inventory: which objects meshplan applied, kept in the cluster.
//!
//! Pruning deletes an object only when it carries meshplan's ownership
//! label *and* is listed here, so neither a hand-made object that happens
//! to wear the label nor another meshplan instance's objects are ever
//! deleted. The inventory also keeps the applied revision and its
//! [`Summary`], which `diff` compares a new revision with.
//!
//! It is kept in ConfigMaps in meshplan's namespace: a head
//! (`meshplan-system/meshplan` unless configured) and parts per namespace,
//! none near the API server's size limit ([`parts`] says how). Before
//! layout 2 it was the head alone, with three keys: `objects` (one
//! `apiVersion kind namespace name` line per object, sorted; `-` for
//! cluster-scoped), `revision` and `summary.json`; such an inventory is
//! still read, and rewritten as layout 2 at the next write.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use meshplan_compiler::{MeshObject, Summary};
use serde_json::{json, Value};

pub mod parts;
pub use parts::{Piece, Stored};

/// One object's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn of(o: &MeshObject) -> ObjectRef {
        ObjectRef {
            api_version: o.api_version.to_owned(),
            kind: o.kind.to_owned(),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
        }
    }

    /// Reads `apiVersion`, `kind` and the metadata of a Kubernetes object.
    pub fn from_value(v: &Value) -> Option<ObjectRef> {
        Some(ObjectRef {
            api_version: v.get("apiVersion")?.as_str()?.to_owned(),
            kind: v.get("kind")?.as_str()?.to_owned(),
            namespace: v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: v.pointer("/metadata/name")?.as_str()?.to_owned(),
        })
    }

    pub fn group(&self) -> &str {
        self.api_version.split_once('/').map_or("", |(g, _)| g)
    }

    /// `apiVersion/Kind`: what discovery resolves.
    pub fn type_key(&self) -> (String, String) {
        (self.api_version.clone(), self.kind.clone())
    }
}

/// `Kind namespace/name (group)`, as messages show an object.
impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        write!(f, "{}", self.name)?;
        match self.group() {
            "" => Ok(()),
            g => write!(f, " ({g})"),
        }
    }
}

/// Where the inventory lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryName {
    pub namespace: String,
    pub name: String,
}

impl Default for InventoryName {
    fn default() -> Self {
        InventoryName {
            namespace: "meshplan-system".into(),
            name: "meshplan".into(),
        }
    }
}

/// An inventory name that is not `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not NAMESPACE/NAME")]
pub struct NotAName(pub String);

impl FromStr for InventoryName {
    type Err = NotAName;
    fn from_str(s: &str) -> Result<Self, NotAName> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(InventoryName {
                    namespace: ns.into(),
                    name: name.into(),
                })
            }
            _ => Err(NotAName(s.to_owned())),
        }
    }
}

impl fmt::Display for InventoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the inventory records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    pub objects: BTreeSet<ObjectRef>,
    pub revision: Option<String>,
    pub summary: Option<Summary>,
}

impl Inventory {
    /// Reads the ConfigMap's `data`; lines it cannot read are skipped
    /// (an object missing from the inventory is never pruned, the safe
    /// side).
    pub fn from_data(data: &BTreeMap<String, String>) -> Inventory {
        let objects = data
            .get("objects")
            .map(|text| text.lines().filter_map(parse_line).collect())
            .unwrap_or_default();
        Inventory {
            objects,
            revision: data.get("revision").filter(|r| !r.is_empty()).cloned(),
            summary: data
                .get("summary.json")
                .and_then(|s| serde_json::from_str(s).ok()),
        }
    }

    /// This inventory in layout 1, one ConfigMap, as meshplan wrote it
    /// before layout 2 (deterministic): what the tests of taking such an
    /// inventory over start from.
    #[doc(hidden)]
    pub fn to_layout_1_configmap(&self, at: &InventoryName) -> Value {
        let mut objects = String::new();
        for o in &self.objects {
            objects.push_str(&format!(
                "{} {} {} {}\n",
                o.api_version,
                o.kind,
                o.namespace.as_deref().unwrap_or("-"),
                o.name
            ));
        }
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": at.name,
                "namespace": at.namespace,
                "labels": {"app.kubernetes.io/name": "meshplan", "app.kubernetes.io/component": "inventory"},
            },
            "data": {
                "objects": objects,
                "revision": self.revision.clone().unwrap_or_default(),
                "summary.json": self.summary.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default()).unwrap_or_default(),
            }
        })
    }
}

fn parse_line(line: &str) -> Option<ObjectRef> {
    let mut parts = line.split_whitespace();
    let (api_version, kind, ns, name) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: (ns != "-").then(|| ns.into()),
        name: name.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: &str, ns: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "networking.istio.io/v1".into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
        }
    }

    #[test]
    fn an_inventory_survives_its_configmap() {
        let inv = Inventory {
            objects: [
                obj("VirtualService", Some("a"), "x"),
                obj("Thing", None, "y"),
            ]
            .into_iter()
            .collect(),
            revision: Some("abc".into()),
            summary: Some(Summary::default()),
        };
        let cm = inv.to_layout_1_configmap(&InventoryName::default());
        let data: BTreeMap<String, String> = serde_json::from_value(cm["data"].clone()).unwrap();
        assert_eq!(Inventory::from_data(&data), inv);
    }

    #[test]
    fn unreadable_lines_are_skipped_not_guessed() {
        let data = BTreeMap::from([(
            "objects".to_owned(),
            "v1 Service\nv1 Service a b\n".to_owned(),
        )]);
        assert_eq!(Inventory::from_data(&data).objects.len(), 1);
    }

    #[test]
    fn inventory_names_are_namespace_slash_name() {
        assert!("a/b".parse::<InventoryName>().is_ok());
        assert!("ab".parse::<InventoryName>().is_err());
        assert!("a/b/c".parse::<InventoryName>().is_err());
    }
}
