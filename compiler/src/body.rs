//! An emitted object's body, kept as compact JSON text.
//!
//! A compiled repository is held whole: by `render` until it is written,
//! by the reconciler for as long as it runs. As `serde_json::Value` trees
//! the objects took four to five times their JSON size (a map entry and an
//! allocation per key and per string), so an object is built as a tree,
//! serialised once by [`ObjectBuilder::build`](crate::object::ObjectBuilder::build)
//! and read back only where a tree is needed (schema validation, resource
//! rules, a diff). Output goes straight from the text: YAML through
//! [`crate::yaml`], pretty JSON by transcoding it ([`Body`]'s `Serialize`),
//! key order kept, without building a tree.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// Compact JSON text of one object (`apiVersion`, `kind`, `metadata`, …).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Body(Box<str>);

impl Body {
    /// The body of `v`.
    pub fn new(v: &Value) -> Body {
        // Serialising a `Value` to a string cannot fail (its keys are
        // strings).
        Body(
            serde_json::to_string(v)
                .unwrap_or_default()
                .into_boxed_str(),
        )
    }

    /// A body from compact JSON text the caller wrote (one JSON object, as
    /// serde_json writes it: no whitespace).
    pub(crate) fn from_compact_json(text: String) -> Body {
        Body(text.into_boxed_str())
    }

    /// The body as a tree.
    pub fn value(&self) -> Value {
        // The text was written by `new` from a `Value`: it parses.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The compact JSON text.
    pub fn json(&self) -> &str {
        &self.0
    }

    /// Changes the body through its tree (for the rare edit after
    /// building: a revision label, a Linkerd annotation, a merge).
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        let mut v = self.value();
        f(&mut v);
        *self = Body::new(&v);
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut de = serde_json::Deserializer::from_str(&self.0);
        serde_transcode::Transcoder::new(&mut de).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": {"z": "1", "a": "2"}},
            "data": {"n": 1, "f": 1.5, "neg": -3, "big": u64::MAX, "t": true, "nil": null,
                     "list": [], "map": {}, "text": "line\n\"quoted\" ✓"}
        })
    }

    #[test]
    fn round_trips_a_tree_with_key_order_kept() {
        let v = sample();
        let b = Body::new(&v);
        assert_eq!(b.value(), v);
        let back = b.value();
        let keys: Vec<&String> = back["metadata"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["z", "a"]);
    }

    #[test]
    fn serialises_as_the_tree_would_to_yaml_and_json() {
        let v = sample();
        let b = Body::new(&v);
        assert_eq!(
            serde_saphyr::to_string(&b).unwrap(),
            serde_saphyr::to_string(&v).unwrap()
        );
        assert_eq!(
            serde_json::to_string_pretty(&b).unwrap(),
            serde_json::to_string_pretty(&v).unwrap()
        );
    }

    #[test]
    fn edits_go_through_a_tree() {
        let mut b = Body::new(&sample());
        b.edit(|v| v["metadata"]["labels"]["x"] = json!("3"));
        assert_eq!(b.value()["metadata"]["labels"]["x"], "3");
        assert_eq!(b.value()["metadata"]["labels"]["z"], "1");
    }
}
