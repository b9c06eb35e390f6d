//! [`Labels`]: a small string map (pod labels, alert labels), sorted by
//! key like the `BTreeMap` it replaces, stored as one boxed slice.
//!
//! Label maps hold one to three entries; a `BTreeMap` allocates a whole
//! leaf node (~550 bytes with `String` keys and values) for any of them.
//! A repository keeps a label map per version of every service, in its
//! intents and again in the IR, so those leaf nodes were a large share of a
//! big repository's memory; a slice holds just its entries.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string-to-string map, sorted by key, keys unique.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<[(String, String)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `key` to `value`, replacing any value it had.
    pub fn insert(&mut self, key: String, value: String) {
        match self.find(&key) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => {
                let mut v = std::mem::take(&mut self.0).into_vec();
                v.insert(i, (key, value));
                self.0 = v.into_boxed_slice();
            }
        }
    }

    /// Keeps the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &String) -> bool) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        v.retain(|(k, val)| keep(k, val));
        self.0 = v.into_boxed_slice();
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    /// Sorted by key; of duplicate keys the last wins (as in a `BTreeMap`).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut v: Vec<(String, String)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // Stable: equal keys keep their order, and the last is kept below.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for e in v {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        Labels(out.into_boxed_slice())
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a BTreeMap, so errors and duplicate handling stay those
        // of the map it replaces; the tree is short-lived.
        Ok(BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

impl JsonSchema for Labels {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        BTreeMap::<String, String>::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        BTreeMap::<String, String>::json_schema(generator)
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_sorted_map_with_the_last_duplicate_kept() {
        let mut l: Labels = [("b", "2"), ("a", "1"), ("b", "3")].into();
        assert_eq!(
            l.iter().collect::<Vec<_>>(),
            [
                (&"a".to_owned(), &"1".to_owned()),
                (&"b".to_owned(), &"3".to_owned())
            ]
        );
        assert_eq!(l.get("b").map(String::as_str), Some("3"));
        assert!(l.contains_key("a") && !l.contains_key("c"));
        l.insert("c".into(), "4".into());
        l.insert("a".into(), "0".into());
        l.retain(|k, _| k != "b");
        assert_eq!(format!("{l:?}"), r#"{"a": "0", "c": "4"}"#);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn reads_and_writes_as_the_btreemap_did() {
        let text = r#"{"z":"1","a":"2"}"#;
        let l: Labels = serde_json::from_str(text).unwrap();
        let m: BTreeMap<String, String> = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        assert!(serde_json::from_str::<Labels>(r#"{"a":1}"#).is_err());
        let gen = || schemars::SchemaGenerator::default();
        assert_eq!(
            Labels::json_schema(&mut gen()),
            BTreeMap::<String, String>::json_schema(&mut gen())
        );
    }
}
