//! Emitted objects: ownership stamps, content hashes, a total order, and
//! YAML/JSON output.
//!
//! Every object meshplan emits carries its labels and annotations so the
//! reconciler can find what it owns and explain where an object came from:
//!
//! | key | kind | value |
//! |---|---|---|
//! | `app.kubernetes.io/managed-by` | label | `meshplan` |
//! | `meshplan.dev/intent` | label | the intent's name |
//! | `meshplan.dev/intent-namespace` | label | the intent's namespace |
//! | `meshplan.dev/source` | annotation | `file:line` of the intent |
//! | `meshplan.dev/content-hash` | annotation | SHA-256 (first 16 hex digits) of the object without its metadata |

use std::cmp::Ordering;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::body::Body;
use crate::ir::Origin;

mod json;
pub(crate) use json::{json_str, json_text, write_str, write_value};
use json::{write_map, write_sorted_map};

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "meshplan";
pub const INTENT: &str = "meshplan.dev/intent";
pub const INTENT_NAMESPACE: &str = "meshplan.dev/intent-namespace";
pub const SOURCE: &str = "meshplan.dev/source";
pub const CONTENT_HASH: &str = "meshplan.dev/content-hash";

/// One Kubernetes object, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshObject {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
    /// The whole object: `apiVersion`, `kind`, `metadata`, and the rest.
    pub body: Body,
    pub origin: Origin,
    /// The emitter that made it (`istio`, `gateway-api`, …).
    pub emitter: &'static str,
}

/// Builds a [`MeshObject`]; [`ObjectBuilder::build`] stamps ownership.
#[derive(Debug)]
pub struct ObjectBuilder {
    obj: MeshObject,
    /// Labels and annotations beside the stamped ones, in the order they
    /// were set (setting one again replaces its value in place).
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    /// The fields beside `metadata`, in the order they were set.
    fields: Vec<(String, Field)>,
}

/// A field's value: a tree, or a typed spec's text (its keys sorted, so
/// the body's text and the canonical text alike).
#[derive(Debug)]
enum Field {
    Tree(Value),
    Typed(String),
}

impl MeshObject {
    pub fn builder(
        emitter: &'static str,
        api_version: &'static str,
        kind: &'static str,
        namespace: &str,
        name: &str,
        origin: &Origin,
    ) -> ObjectBuilder {
        ObjectBuilder {
            obj: MeshObject {
                api_version,
                kind,
                namespace: Some(namespace.into()),
                name: name.into(),
                // Replaced by `build`.
                body: Body::from_compact_json(String::new()),
                origin: origin.clone(),
                emitter,
            },
            labels: Vec::new(),
            annotations: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version.split_once('/').map_or("", |(g, _)| g)
    }

    /// `Kind namespace/name`, for messages.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The file an object is written to by `render --out`:
    /// `<namespace>/<group>.<kind>-<name>.yaml` (`_cluster` for
    /// cluster-scoped objects; the group keeps same-named kinds of different
    /// groups apart).
    pub fn file_path(&self) -> String {
        let group = match self.group() {
            "" => "core",
            g => g,
        };
        format!(
            "{}/{}.{}-{}.yaml",
            self.namespace.as_deref().unwrap_or("_cluster"),
            group,
            self.kind.to_ascii_lowercase(),
            self.name
        )
    }

    fn sort_key(&self) -> (&str, &str, &str, &str) {
        (
            self.kind,
            self.group(),
            self.namespace.as_deref().unwrap_or(""),
            &self.name,
        )
    }
}

impl ObjectBuilder {
    pub fn label(mut self, k: &str, v: &str) -> Self {
        set_pair(&mut self.labels, k, v);
        self
    }

    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        set_pair(&mut self.annotations, k, v);
        self
    }

    pub fn annotations(self, kv: &[(&str, String)]) -> Self {
        kv.iter().fold(self, |b, (k, v)| b.annotation(k, v))
    }

    /// A top-level field beside `metadata` (`spec`, `data`, …); setting
    /// one again replaces its value in place.
    pub fn field(self, k: &str, v: Value) -> Self {
        self.set(k, Field::Tree(v))
    }

    pub fn spec(self, v: Value) -> Self {
        self.field("spec", v)
    }

    /// The `spec`, a typed struct of [`crate::api`]: serialised once, its
    /// keys sorted by the struct's declaration order, so the body's text
    /// is the canonical text.
    pub(crate) fn spec_typed(self, spec: &impl serde::Serialize) -> Self {
        let text = json_text(spec);
        debug_assert!(crate::api::sorted_keys(&text), "keys out of order: {text}");
        self.set("spec", Field::Typed(text))
    }

    fn set(mut self, k: &str, v: Field) -> Self {
        set_pair(&mut self.fields, k, v);
        self
    }

    /// Stamps ownership labels, the source and the content hash.
    pub fn build(self) -> MeshObject {
        let ObjectBuilder {
            mut obj,
            labels,
            annotations,
            fields,
        } = self;
        let (intent_ns, intent) = obj.origin.intent.split_once('/').unwrap_or_default();
        let hash = content_hash(&fields);
        let metadata = Metadata {
            labels: (
                [
                    (MANAGED_BY, MANAGER),
                    (INTENT, intent),
                    (INTENT_NAMESPACE, intent_ns),
                ],
                &labels,
            ),
            annotations: (
                [(SOURCE, &obj.origin.source), (CONTENT_HASH, &hash)],
                &annotations,
            ),
        };
        // The JSON serde_json would write for the whole tree, without
        // building it, in one pass, into a buffer kept between objects; the
        // body is then allocated at its exact size. (A string grown while
        // writing is up to twice its length, and the allocator shrinks a
        // block in place when it loses less than half: spare room in every
        // body, held as long as the objects are.) Serialising maps of
        // strings and JSON values
        // cannot fail, and serde_json writes UTF-8.
        let body = SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            write_body(buf, &obj, &metadata, &fields);
            Body::from_compact_json(std::str::from_utf8(buf).unwrap_or_default().into())
        });
        obj.body = body;
        obj
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Labels or annotations: the stamped ones first, then the builder's
/// (which replace a stamped one of the same key in place, as inserting
/// into a map would).
type Stamped<'a, const N: usize> = ([(&'a str, &'a str); N], &'a [(String, String)]);

struct Metadata<'a> {
    labels: Stamped<'a, 3>,
    annotations: Stamped<'a, 2>,
}

/// Sets `k` to `v`: in place when `k` is there, else last (a handful of
/// entries: a scan, not a map).
fn set_pair<V>(pairs: &mut Vec<(String, V)>, k: &str, v: impl Into<V>) {
    match pairs.iter_mut().find(|(key, _)| key == k) {
        Some((_, slot)) => *slot = v.into(),
        None => pairs.push((k.into(), v.into())),
    }
}

fn write_stamped<const N: usize>(out: &mut Vec<u8>, (stamped, set): &Stamped<'_, N>) {
    let entries = stamped
        .iter()
        .map(|&(k, v)| {
            let v = set.iter().find(|(key, _)| key == k).map_or(v, |(_, v)| v);
            (k, v)
        })
        .chain(
            set.iter()
                .filter(|(k, _)| !stamped.iter().any(|(s, _)| s == k))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
    write_map(out, entries, write_str);
}

/// An object's body: `apiVersion`, `kind`, `metadata` (`name`,
/// `namespace`, `labels`, `annotations`), then the content's fields in
/// their order, as serde_json would write the tree.
fn write_body(
    out: &mut Vec<u8>,
    obj: &MeshObject,
    metadata: &Metadata,
    fields: &[(String, Field)],
) {
    out.extend_from_slice(b"{\"apiVersion\":");
    write_str(out, obj.api_version);
    out.extend_from_slice(b",\"kind\":");
    write_str(out, obj.kind);
    out.extend_from_slice(b",\"metadata\":{\"name\":");
    write_str(out, &obj.name);
    if let Some(ns) = &obj.namespace {
        out.extend_from_slice(b",\"namespace\":");
        write_str(out, ns);
    }
    out.extend_from_slice(b",\"labels\":");
    write_stamped(out, &metadata.labels);
    out.extend_from_slice(b",\"annotations\":");
    write_stamped(out, &metadata.annotations);
    out.push(b'}');
    // The fields continue the body's map: written as a map of their own,
    // its `{` becomes the `,` after `metadata` (or is dropped).
    let start = out.len();
    write_map(
        out,
        fields.iter().map(|(k, v)| (k.as_str(), v)),
        |out, v| match v {
            Field::Tree(v) => write_value(out, v, false),
            Field::Typed(t) => out.extend_from_slice(t.as_bytes()),
        },
    );
    match fields.is_empty() {
        true => {
            out.truncate(start);
            out.push(b'}');
        }
        false => out[start] = b',',
    }
}

/// SHA-256 of the canonical JSON of an object's content (keys sorted), first
/// 16 hex digits: changes exactly when the content does.
fn content_hash(fields: &[(String, Field)]) -> String {
    CANONICAL.with_borrow_mut(|text| {
        text.clear();
        canonical_fields(fields, text);
        hex16(&Sha256::digest(&text[..]))
    })
}

thread_local! {
    /// The canonical text of the object being built, kept between objects.
    static CANONICAL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The first 8 bytes of `digest` as 16 lowercase hex digits.
fn hex16(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    digest
        .iter()
        .take(8)
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// `fields` as one map, keys sorted, each value as [`canonical`] writes it.
fn canonical_fields(fields: &[(String, Field)], text: &mut Vec<u8>) {
    let entries = fields.iter().map(|(k, v)| (k.as_str(), v));
    write_sorted_map(text, entries, |text, v| match v {
        Field::Tree(v) => write_value(text, v, true),
        Field::Typed(t) => text.extend_from_slice(t.as_bytes()),
    });
}

/// Sorts objects by kind, group, namespace and name, then API version and
/// emitter: a total order, so the result does not depend on the order
/// objects came in (same-identity objects of several targets are merged
/// next, in emitter order).
pub fn sort(objects: &mut [MeshObject]) {
    // Kind, group and namespace are compared as ranks worked out once (a
    // handful of kinds, a namespace per few hundred objects): comparing
    // their strings was most of sorting a large render's objects. Names
    // break ties. An order of (rank, name prefix, index) keys is sorted,
    // then applied in place: a stable sort or a sorted copy would hold the
    // objects twice at the heap's peak; the keys are 24 bytes an object.
    let mut kinds: Vec<(&str, &str)> = Vec::new();
    let mut namespaces: Vec<&str> = Vec::new();
    for o in objects.iter() {
        // Objects come a namespace and a kind at a time: look back first.
        let kind = (o.kind, o.group());
        if kinds.last() != Some(&kind) && !kinds.contains(&kind) {
            kinds.push(kind);
        }
        if namespaces.last() != Some(&namespace_key(o)) {
            namespaces.push(namespace_key(o));
        }
    }
    kinds.sort_unstable();
    namespaces.sort_unstable();
    namespaces.dedup();
    let (k_bits, n_bits) = (bits(kinds.len()), bits(namespaces.len()));
    let Ok(len) = u32::try_from(objects.len()) else {
        return sort_by_keys(objects);
    };
    if k_bits + n_bits > 32 {
        return sort_by_keys(objects);
    }
    // Runs of objects share a kind and a namespace: their ranks are
    // looked up again only when they change (a search compares strings).
    let mut kind_rank = (("", ""), 0);
    let mut namespace_rank = ("", 0);
    let mut order: Vec<SortKey> = Vec::with_capacity(objects.len());
    for (o, index) in objects.iter().zip(0..len) {
        let kind = (o.kind, o.group());
        if kind_rank.0 != kind {
            kind_rank = (kind, kinds.binary_search(&kind).unwrap_or(0) as u32);
        }
        let ns = namespace_key(o);
        if namespace_rank.0 != ns {
            namespace_rank = (ns, namespaces.binary_search(&ns).unwrap_or(0) as u32);
        }
        order.push(SortKey {
            rank: (kind_rank.1 << n_bits) | namespace_rank.1,
            name: name_prefix(&o.name),
            index,
        });
    }
    // The names' first 16 bytes are in the keys: the objects themselves
    // (scattered over the heap) are read only for names sharing them.
    order.sort_unstable_by(|a, b| {
        (a.rank, a.name).cmp(&(b.rank, b.name)).then_with(|| {
            let (oa, ob) = (&objects[a.index as usize], &objects[b.index as usize]);
            oa.name.cmp(&ob.name).then_with(|| cmp_fallback(oa, ob))
        })
    });
    permute(objects, &mut order);
}

/// An object's place in the order, as far as numbers tell it.
struct SortKey {
    rank: u32,
    index: u32,
    name: [u64; 2],
}

/// The first 16 bytes of `name`, zero-padded, as numbers: where two
/// prefixes differ, the names compare as they do.
fn name_prefix(name: &str) -> [u64; 2] {
    let mut bytes = [0u8; 16];
    let n = name.len().min(16);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    let half = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
    [half(0), half(8)]
}

/// Bits to number `n` things (0 for one).
fn bits(n: usize) -> u32 {
    usize::BITS - n.saturating_sub(1).leading_zeros()
}

/// The same order, comparing the whole keys (more kinds and namespaces
/// than the ranks' 32 bits hold).
fn sort_by_keys(objects: &mut [MeshObject]) {
    objects.sort_unstable_by(|a, b| {
        a.sort_key()
            .cmp(&b.sort_key())
            .then_with(|| cmp_fallback(a, b))
    });
}

fn namespace_key(o: &MeshObject) -> &str {
    o.namespace.as_deref().unwrap_or("")
}

/// Puts the item at index `order[k].index` at position `k`, for every
/// `k`, following each cycle of the permutation with swaps (`order`'s
/// indices are used up).
fn permute<T>(items: &mut [T], order: &mut [SortKey]) {
    let from = |order: &[SortKey], at: usize| order[at].index as usize;
    for start in 0..items.len() {
        let mut at = start;
        while from(order, at) != start {
            let next = from(order, at);
            items.swap(at, next);
            order[at].index = at as u32;
            at = next;
        }
        order[at].index = at as u32;
    }
}

fn cmp_fallback(a: &MeshObject, b: &MeshObject) -> Ordering {
    a.api_version
        .cmp(b.api_version)
        .then_with(|| emitter_rank(a.emitter).cmp(&emitter_rank(b.emitter)))
}

/// An emitter's place in the order targets are emitted in (`Target`'s,
/// which `Target::ALL` lists).
fn emitter_rank(emitter: &str) -> usize {
    use meshplan_policy_lang::intent::Target;
    Target::ALL
        .iter()
        .position(|t| crate::target_name(*t) == emitter)
        .unwrap_or(Target::ALL.len())
}

/// Two objects of one identity and different content.
#[derive(Debug)]
pub struct Collision {
    /// `Kind namespace/name`.
    pub object: String,
    pub emitters: [&'static str; 2],
    pub origins: [Origin; 2],
}

/// Merges objects several targets emit alike (the per-version backend
/// Services Gateway API and Linkerd share): same identity and same content
/// make one object, its labels and annotations united. `objects` must be
/// sorted. Same identity with different content is a [`Collision`].
pub fn merge_duplicates(mut objects: Vec<MeshObject>) -> Result<Vec<MeshObject>, Box<Collision>> {
    // In place: a second vector of every object would be the peak of a
    // large render. `kept` is the last object kept; later ones either merge
    // into it or move up next to it.
    let mut kept = 0;
    for next in 1..objects.len() {
        let (head, tail) = objects.split_at_mut(next);
        let (prev, o) = (&mut head[kept], &tail[0]);
        // Names first: neighbours nearly always differ there.
        if prev.name != o.name
            || prev.sort_key() != o.sort_key()
            || prev.api_version != o.api_version
        {
            kept += 1;
            objects.swap(kept, next);
            continue;
        }
        let (mut merged, other) = (prev.body.value(), o.body.value());
        let content = |b: &Value| {
            let mut b = b.clone();
            if let Some(m) = b.as_object_mut() {
                m.remove("metadata");
            }
            b
        };
        if content(&merged) != content(&other) {
            return Err(Box::new(Collision {
                object: o.display_name(),
                emitters: [prev.emitter, o.emitter],
                origins: [prev.origin.clone(), o.origin.clone()],
            }));
        }
        for key in ["labels", "annotations"] {
            let ptr = format!("/metadata/{key}");
            let from = other
                .pointer(&ptr)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(into) = merged.pointer_mut(&ptr).and_then(Value::as_object_mut) {
                for (k, v) in from {
                    into.entry(k).or_insert(v);
                }
            }
        }
        prev.body = Body::new(&merged);
    }
    objects.truncate(kept + 1);
    Ok(objects)
}

/// One object as YAML (a document without the `---` separator).
pub fn to_yaml(obj: &MeshObject) -> String {
    crate::yaml::to_string(&obj.body.json())
}

/// Any JSON value as YAML, formatted as meshplan writes objects.
pub fn value_to_yaml(v: &Value) -> String {
    // Serialising a JSON value cannot fail (its keys are strings).
    crate::yaml::to_string(&serde_json::to_string(v).unwrap_or_default())
}

/// A YAML stream of every object, `---` between documents.
pub fn to_yaml_stream(objects: &[MeshObject]) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; the YAML is UTF-8.
    let _ = write_yaml_stream(objects, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the YAML stream of every object to `w`, a few hundred KB at a
/// time (the stream grows with the repository: it is never held whole).
/// Each write ends with a whole document, so `w` needs no buffer of its
/// own: stdout's line buffering then writes it straight through, and the
/// stream is not copied once more into a `BufWriter`.
pub fn write_yaml_stream(
    objects: &[MeshObject],
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 18;
    let mut text = String::with_capacity(CHUNK + (CHUNK >> 2));
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        crate::yaml::write(&o.body.json(), &mut text);
        if text.len() >= CHUNK {
            w.write_all(text.as_bytes())?;
            text.clear();
        }
    }
    w.write_all(text.as_bytes())?;
    w.flush()
}

/// A Kubernetes `List` of every object, as JSON.
pub fn to_json_list(objects: &[MeshObject]) -> String {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct List<'a> {
        api_version: &'static str,
        kind: &'static str,
        items: Vec<&'a Body>,
    }
    let list = List {
        api_version: "v1",
        kind: "List",
        items: objects.iter().map(|o| &o.body).collect(),
    };
    let mut s = serde_json::to_string_pretty(&list).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests;
