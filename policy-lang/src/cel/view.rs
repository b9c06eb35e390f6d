//! Values converted once for evaluation: maps and lists shared, not copied.
//!
//! The interpreter copies a value whenever it must own one it only borrows:
//! each element a comprehension binds (`steps.filter(s, …)`), each element
//! of a `filter` result. For the interpreter's own maps and lists a copy is
//! deep (a new hash map per step of a canary). Here every map and list of
//! a converted value is held behind an `Arc`, so a copy is a reference
//! count, while functions and operators still see the interpreter's
//! built-in `map` and `list` (through [`Val::as_builtin`]): a rule cannot
//! tell the difference.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use cel::common::traits::{Adder, Container, Indexer, Iterable, Sizer, Zeroer};
use cel::common::types::{self, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, Type};
use cel::common::value::{Builtin, BuiltinRef, CowVal, StaticVal, Val};
use cel::{ExecutionError, Value};

/// A `map` shared by every copy of it.
///
/// Entries are kept in a list: intent maps are small (a handful of fields),
/// and finding a field by comparing a few short strings is several times
/// cheaper than hashing it, which is what rules do most. The interpreter's
/// own hash map, needed by what works on whole maps (equality, iteration,
/// functions taking a map), is built from the entries the first time it is
/// asked for, and kept.
#[derive(Clone, Debug)]
pub struct SharedMap(Arc<MapData>);

/// Up to this many entries, a key is found by scanning.
const SCAN_LIMIT: usize = 24;

#[derive(Debug)]
struct MapData {
    entries: Vec<(CelMapKey<'static>, Box<dyn Val>)>,
    builtin: OnceLock<CelMap<'static>>,
    measure: Measure,
}

impl MapData {
    fn builtin(&self) -> &CelMap<'static> {
        self.builtin.get_or_init(|| {
            let map: HashMap<CelMapKey<'static>, Box<dyn Val>> = self
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            CelMap::from(map)
        })
    }

    /// The value at a string key; `None` when the key is not a string, or
    /// the map too large for a scan to beat hashing.
    fn find(&self, key: &dyn Val) -> Option<Option<&(dyn Val + 'static)>> {
        if self.entries.len() > SCAN_LIMIT {
            return None;
        }
        let key = key.downcast_ref::<CelString>()?.inner();
        Some(self.field(key))
    }

    /// The value of the string key `name`, found by scanning.
    fn field(&self, name: &str) -> Option<&(dyn Val + 'static)> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(k, CelMapKey::String(s) if s.inner() == name))
            .map(|(_, v)| &**v)
    }
}

impl SharedMap {
    /// A map of distinct keys.
    pub fn new(entries: Vec<(CelMapKey<'static>, Box<dyn Val>)>) -> Self {
        let measure = Measure::of_items(entries.iter().map(|(k, v)| {
            let key = match k {
                CelMapKey::String(s) => s.inner().len() as u64,
                _ => 0,
            };
            let v = measure(&**v);
            Measure {
                string: v.string.max(key),
                total: v.total.saturating_add(key),
                ..v
            }
        }));
        Self(Arc::new(MapData {
            entries,
            builtin: OnceLock::new(),
            measure,
        }))
    }

    pub fn measure(&self) -> Measure {
        self.0.measure
    }

    /// The value of the string key `name`, as `map.name` selects it.
    pub fn field(&self, name: &str) -> Option<&(dyn Val + 'static)> {
        self.0.field(name)
    }

    /// [`SharedMap::field`], trying the entry at `hint` first; `hint` is
    /// set to where the field was found. (Atomic so that a compiled rule
    /// stays shareable between threads; relaxed: a stale hint only costs
    /// the scan.)
    pub fn field_at(&self, name: &str, hint: &AtomicUsize) -> Option<&(dyn Val + 'static)> {
        let entries = &self.0.entries;
        let at = hint.load(Ordering::Relaxed);
        if let Some((CelMapKey::String(k), v)) = entries.get(at) {
            if k.inner() == name {
                return Some(&**v);
            }
        }
        let (i, (_, v)) = entries
            .iter()
            .enumerate()
            .find(|(_, (k, _))| matches!(k, CelMapKey::String(s) if s.inner() == name))?;
        hint.store(i, Ordering::Relaxed);
        Some(&**v)
    }

    /// How many entries the map has.
    pub fn len(&self) -> usize {
        self.0.entries.len()
    }
}

/// `field` finds a value by downcasting to this type.
impl StaticVal for SharedMap {}

impl Container for SharedMap {
    fn contains(&self, key: &dyn Val) -> Result<bool, ExecutionError> {
        match self.0.find(key) {
            Some(found) => Ok(found.is_some()),
            None => self.0.builtin().contains(key),
        }
    }
}

impl Sizer for SharedMap {
    fn size(&self) -> CelInt {
        i64::try_from(self.0.entries.len())
            .unwrap_or(i64::MAX)
            .into()
    }
}

impl Zeroer for SharedMap {
    fn is_zero_value(&self) -> bool {
        self.0.entries.is_empty()
    }
}

impl Indexer for SharedMap {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        match self.0.find(idx) {
            Some(Some(v)) => Ok(CowVal::Borrowed(v)),
            // What `has()` turns into `false`.
            Some(None) => Err(ExecutionError::NoSuchKey(Arc::new(
                idx.downcast_ref::<CelString>()
                    .map_or_else(String::new, |s| s.inner().to_owned()),
            ))),
            None => self.0.builtin().get(idx),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

impl Val for SharedMap {
    fn get_type(&self) -> &Type {
        <Self as Val>::cel_type()
    }

    fn cel_type() -> &'static Type {
        &types::MAP_TYPE
    }

    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }

    fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn Indexer + 'w)>
    where
        Self: 'w,
    {
        Some(self)
    }

    // The interpreter moves elements out of containers it owns (a
    // function's result); ours are shared, so that is a (cheap) copy.
    fn into_indexer<'w>(self: Box<Self>) -> Option<Box<dyn Indexer + 'w>>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn as_iterable<'b, 'w>(&'b self) -> Option<&'b (dyn Iterable + 'w)>
    where
        Self: 'w,
    {
        Some(self.0.builtin())
    }

    fn as_sizer(&self) -> Option<&dyn Sizer> {
        Some(self)
    }

    fn as_zeroer(&self) -> Option<&dyn Zeroer> {
        Some(self)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn equals(&self, other: &dyn Val) -> bool {
        self.0.builtin().equals(other)
    }

    fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
    where
        Self: 'w,
    {
        Box::new(self.clone())
    }

    fn as_builtin<'b, 'w>(&'b self) -> BuiltinRef<'b, 'w>
    where
        Self: 'w,
    {
        BuiltinRef::Map(self.0.builtin())
    }

    fn into_builtin<'w>(self: Box<Self>) -> Option<Builtin<'w>>
    where
        Self: 'w,
    {
        Some(Builtin::Map(self.0.builtin().clone()))
    }
}

/// A `list` shared by every copy of it.
#[derive(Clone, Debug)]
pub struct SharedList(Arc<CelList<'static>>, Measure);

impl SharedList {
    pub fn new(items: Vec<Box<dyn Val>>) -> Self {
        let measure = Measure::of_items(items.iter().map(|v| measure(&**v)));
        Self(Arc::new(CelList::from(items)), measure)
    }

    pub fn measure(&self) -> Measure {
        self.1
    }

    pub fn items(&self) -> &[Box<dyn Val>] {
        self.0.inner()
    }
}

/// `items` is reached by downcasting to this type.
impl StaticVal for SharedList {}

impl Val for SharedList {
    fn get_type(&self) -> &Type {
        <Self as Val>::cel_type()
    }

    fn cel_type() -> &'static Type {
        &types::LIST_TYPE
    }

    fn as_adder<'b, 'w>(&'b self) -> Option<&'b (dyn Adder + 'w)>
    where
        Self: 'w,
    {
        Some(&*self.0)
    }

    fn as_container(&self) -> Option<&dyn Container> {
        Some(&*self.0)
    }

    fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn Indexer + 'w)>
    where
        Self: 'w,
    {
        Some(&*self.0)
    }

    // The interpreter moves elements out of containers it owns (a
    // function's result); ours are shared, so that is a (cheap) copy.
    fn into_indexer<'w>(self: Box<Self>) -> Option<Box<dyn Indexer + 'w>>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn as_iterable<'b, 'w>(&'b self) -> Option<&'b (dyn Iterable + 'w)>
    where
        Self: 'w,
    {
        Some(&*self.0)
    }

    fn as_sizer(&self) -> Option<&dyn Sizer> {
        Some(&*self.0)
    }

    fn as_zeroer(&self) -> Option<&dyn Zeroer> {
        Some(&*self.0)
    }

    fn equals(&self, other: &dyn Val) -> bool {
        self.0.equals(other)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
    where
        Self: 'w,
    {
        Box::new(self.clone())
    }

    fn as_builtin<'b, 'w>(&'b self) -> BuiltinRef<'b, 'w>
    where
        Self: 'w,
    {
        BuiltinRef::List(&self.0)
    }

    fn into_builtin<'w>(self: Box<Self>) -> Option<Builtin<'w>>
    where
        Self: 'w,
    {
        Some(Builtin::List(Arc::unwrap_or_clone(self.0)))
    }
}

impl Indexer for SharedList {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.0.get(idx)
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.0.get(idx).map(CowVal::into_owned)
    }
}

/// How large a value is, as the cost bound ([`super::cost`]) reads it:
/// measured once, when a map or list is built, so that bounding an
/// evaluation never walks the value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measure {
    /// The longest list or map, at any depth.
    pub list: u64,
    /// The longest string (or map key), at any depth.
    pub string: u64,
    /// Items and bytes in all: the steps to read the whole value.
    pub total: u64,
    /// The largest `total` of one item.
    pub item: u64,
}

impl Measure {
    fn of_items(items: impl Iterator<Item = Measure>) -> Self {
        let mut m = Measure::default();
        let mut count = 0u64;
        for item in items {
            count += 1;
            m.list = m.list.max(item.list);
            m.string = m.string.max(item.string);
            m.total = m.total.saturating_add(item.total);
            m.item = m.item.max(item.total);
        }
        m.list = m.list.max(count);
        m.total = m.total.saturating_add(count).max(1);
        m
    }
}

/// The measure of any value: ours are measured already; a string by its
/// length; the interpreter's own lists and maps (small values bound on the
/// spot) are walked.
pub fn measure(v: &dyn Val) -> Measure {
    // Ours first, by type: asking a value whether it is a string goes
    // through `as_builtin`, which would build a shared map's hash map.
    if let Some(m) = v.downcast_ref::<SharedMap>() {
        return m.measure();
    }
    if let Some(l) = v.downcast_ref::<SharedList>() {
        return l.measure();
    }
    if v.downcast_ref::<CelInt>().is_some() {
        return Measure {
            total: 1,
            ..Measure::default()
        };
    }
    if let Some(s) = v.downcast_ref::<CelString>() {
        let len = s.inner().len() as u64;
        return Measure {
            string: len,
            total: len.max(1),
            ..Measure::default()
        };
    }
    if let Some(l) = v.downcast_ref::<CelList>() {
        return Measure::of_items(l.inner().iter().map(|i| measure(&**i)));
    }
    Measure {
        total: 1,
        ..Measure::default()
    }
}

/// Converts `v` in one pass, moving what it can: map entries that are null
/// are dropped, so `has()` tells whether the user wrote a field; unsigned
/// integers become ints (rules compare with int literals, `weight <= 50`,
/// and CEL has no mixed int/uint arithmetic); maps and lists are shared.
pub fn convert(v: Value) -> Box<dyn Val> {
    match v {
        Value::Map(m) => {
            let map = Arc::unwrap_or_clone(m.map);
            let entries = map
                .into_iter()
                .filter(|(_, v)| !matches!(v, Value::Null))
                .map(|(k, v)| (k.into(), convert(v)))
                .collect();
            Box::new(SharedMap::new(entries))
        }
        Value::List(l) => {
            let items = Arc::unwrap_or_clone(l);
            let items = items.into_iter().map(|i| convert(i)).collect();
            Box::new(SharedList::new(items))
        }
        Value::UInt(u) => match i64::try_from(u) {
            Ok(i) => Box::new(CelInt::from(i)),
            Err(_) => Box::new(types::CelUInt::from(u)),
        },
        Value::String(s) => Box::new(CelString::from(Arc::unwrap_or_clone(s))),
        other => other
            .try_into()
            .unwrap_or_else(|_| Box::new(CelNull) as Box<dyn Val>),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::{Bindings, Bound, Engine};

    /// A hint left by one map does not mislead the lookup in another whose
    /// fields stand elsewhere, or lack the field.
    #[test]
    fn finds_a_field_wherever_the_last_map_had_it() {
        let map = |keys: &[&'static str]| {
            SharedMap::new(
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| {
                        let v: Box<dyn Val> = Box::new(CelInt::from(i as i64));
                        (CelMapKey::from(*k), v)
                    })
                    .collect(),
            )
        };
        let (a, b, c) = (map(&["x", "y", "z"]), map(&["z", "y"]), map(&["w"]));
        let hint = AtomicUsize::new(0);
        let at = |m: &SharedMap, name: &str| {
            m.field_at(name, &hint)
                .and_then(|v| v.downcast_ref::<CelInt>().map(|i| *i.inner()))
        };
        for _ in 0..2 {
            assert_eq!(at(&a, "z"), Some(2));
            assert_eq!(at(&b, "z"), Some(0));
            assert_eq!(at(&c, "z"), None);
            assert_eq!(at(&a, "y"), Some(1));
            assert_eq!(at(&b, "y"), Some(1));
        }
    }

    fn eval(src: &str, data: serde_json::Value) -> Value {
        let engine = Engine::new();
        let bound = Bound::new(&data).expect("converts");
        let c = engine.compile(src, &["x"]).expect("compiles");
        engine
            .eval(&c, &Bindings::new().with("x", &bound))
            .expect("evaluates")
    }

    #[test]
    fn shared_maps_and_lists_behave_as_the_builtin_ones() {
        let data = serde_json::json!({
            "steps": [{"weight": 10}, {"pause": "1m"}, {"weight": 60}],
            "labels": {"team": "a"},
            "names": ["a", "b"],
        });
        for (src, want) in [
            ("x.steps.filter(s, has(s.weight))[1].weight", Value::Int(60)),
            ("x.steps.filter(s, has(s.weight)).size()", Value::Int(2)),
            ("x.steps.map(s, s).size() == 3", Value::Bool(true)),
            (
                "'team' in x.labels && !('owner' in x.labels)",
                Value::Bool(true),
            ),
            ("x.labels == {'team': 'a'}", Value::Bool(true)),
            ("{'team': 'a'} == x.labels", Value::Bool(true)),
            (
                "x.names == ['a', 'b'] && ['a', 'b'] == x.names",
                Value::Bool(true),
            ),
            ("(x.names + ['c']).size()", Value::Int(3)),
            ("'b' in x.names", Value::Bool(true)),
            ("x.names.join(',')", Value::String(Arc::new("a,b".into()))),
            ("size(x.labels) + size(x.names)", Value::Int(3)),
            (
                "type(x.labels) == map && type(x.names) == list",
                Value::Bool(true),
            ),
            ("x.labels.all(k, k == 'team')", Value::Bool(true)),
            (
                "math.greatest(x.steps.filter(s, has(s.weight)).map(s, s.weight))",
                Value::Int(60),
            ),
        ] {
            assert_eq!(eval(src, data.clone()), want, "{src}");
        }
    }

    #[test]
    fn large_maps_and_non_string_keys_are_found_too() {
        let big: serde_json::Map<String, serde_json::Value> = (0..40)
            .map(|i| (format!("k{i}"), serde_json::json!(i)))
            .collect();
        assert_eq!(
            eval(
                "x.k39 == 39 && !has(x.k40) && 'k3' in x && size(x) == 40",
                serde_json::Value::Object(big)
            ),
            Value::Bool(true)
        );
        let engine = Engine::new();
        let m: std::collections::HashMap<cel::objects::Key, Value> =
            [(1i64.into(), Value::String(Arc::new("one".into())))].into();
        let bound = Bound::from_value(Value::Map(cel::objects::Map { map: Arc::new(m) }));
        let c = engine
            .compile("x[1] == 'one' && !(2 in x) && 1 in x", &["x"])
            .unwrap();
        let got = engine.eval(&c, &Bindings::new().with("x", &bound));
        assert_eq!(got, Ok(Value::Bool(true)));
    }

    #[test]
    fn drops_nulls_and_presents_unsigned_integers_as_ints() {
        let data = serde_json::json!({"absent": null, "n": 5u64, "items": [null]});
        assert_eq!(
            eval("!has(x.absent) && x.n == 5 && x.items.size() == 1", data),
            Value::Bool(true)
        );
    }
}
