//! An emitted object's body, kept as compact JSON text.
//!
//! A compiled repository is held whole: by `render` until it is written,
//! by the reconciler for as long as it runs. As `serde_json::Value` trees
//! the objects took several times their JSON size (a map entry and an
//! allocation per key and per string), so an object is built as a tree,
//! serialised once by [`ObjectBuilder::build`](crate::object::ObjectBuilder::build)
//! and read back only where a tree is needed (schema validation, resource
//! rules, a diff). Output goes straight from the text: YAML through
//! [`crate::yaml`], pretty JSON by transcoding it ([`Body`]'s `Serialize`),
//! key order kept, without building a tree.
//!
//! What is held for a long time (the reconciler's desired objects and its
//! cache of live ones) can be [`packed`](Body::packed): deflated, with a
//! fingerprint of the text kept beside it. Mesh objects are repetitive
//! text (a PrometheusRule's PromQL names the same labels dozens of times),
//! so they deflate to a small fraction of their JSON (docs/benchmarks.md,
//! "Reconcile").

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use serde::{Serialize, Serializer};
use serde_json::Value;

/// Compact JSON text of one object (`apiVersion`, `kind`, `metadata`, …).
#[derive(Clone)]
pub struct Body(Repr);

#[derive(Clone)]
enum Repr {
    Text(Box<str>),
    Packed {
        /// [`Body::fingerprint`] of the text.
        fingerprint: u64,
        /// The text's length.
        len: u32,
        deflated: Box<[u8]>,
    },
}

impl Body {
    /// The body of `v`.
    pub fn new(v: &Value) -> Body {
        // Serialising a `Value` to a string cannot fail (its keys are
        // strings).
        Body::from_compact_json(serde_json::to_string(v).unwrap_or_default())
    }

    /// A body from compact JSON text the caller wrote (one JSON object, as
    /// serde_json writes it: no whitespace).
    pub(crate) fn from_compact_json(text: String) -> Body {
        Body(Repr::Text(text.into_boxed_str()))
    }

    /// The body as a tree.
    pub fn value(&self) -> Value {
        // The text was written by `new` from a `Value`: it parses.
        serde_json::from_str(&self.json()).unwrap_or(Value::Null)
    }

    /// The compact JSON text (inflated first when packed).
    pub fn json(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Text(t) => Cow::Borrowed(t),
            Repr::Packed { deflated, len, .. } => Cow::Owned(inflate(deflated, *len)),
        }
    }

    /// The body deflated, for keeping: what reads it later inflates it.
    /// Deterministic (the same text gives the same bytes). A body too
    /// large to pack (4 GiB) stays text.
    pub fn packed(self) -> Body {
        match self.0 {
            Repr::Text(t) => match (u32::try_from(t.len()), deflate(t.as_bytes())) {
                (Ok(len), Some(deflated)) => Body(Repr::Packed {
                    fingerprint: fingerprint(&t),
                    len,
                    deflated,
                }),
                _ => Body(Repr::Text(t)),
            },
            packed => Body(packed),
        }
    }

    /// [`packed`](Body::packed), in place.
    pub fn pack(&mut self) {
        let body = std::mem::replace(self, Body(Repr::Text(Box::default())));
        *self = body.packed();
    }

    /// A digest of the JSON text, the same packed or not: tells two bodies
    /// apart without reading a packed one (not a content hash for output:
    /// it may change between builds of meshplan).
    pub fn fingerprint(&self) -> u64 {
        match &self.0 {
            Repr::Text(t) => fingerprint(t),
            Repr::Packed { fingerprint, .. } => *fingerprint,
        }
    }

    /// Bytes held (the text's length, or the deflated length).
    pub fn held_len(&self) -> usize {
        match &self.0 {
            Repr::Text(t) => t.len(),
            Repr::Packed { deflated, .. } => deflated.len(),
        }
    }

    /// Changes the body through its tree (for the rare edit after
    /// building: a revision label, a Linkerd annotation, a merge).
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        let mut v = self.value();
        f(&mut v);
        *self = Body::new(&v);
    }
}

fn fingerprint(text: &str) -> u64 {
    // SipHash with fixed keys: the same in every process of one build.
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// A 4 KiB window: as small as deflate goes without losing ratio on
/// these objects (they deflate as well as with a 32 KiB window: what
/// repeats in them repeats close by); the compressor's state is a third
/// the size.
const WINDOW_BITS: u8 = 12;

// One compressor and one decompressor per thread, reset between bodies
// (a fresh state is ~150 KB to allocate and clear, for a body that packs
// into a few hundred bytes), and a reused output buffer, copied out at
// exact size.
thread_local! {
    static DEFLATE: RefCell<(Compress, Vec<u8>)> = RefCell::new((
        Compress::new_with_window_bits(Compression::fast(), false, WINDOW_BITS),
        Vec::new(),
    ));
    static INFLATE: RefCell<Decompress> =
        RefCell::new(Decompress::new_with_window_bits(false, WINDOW_BITS));
}

fn deflate(text: &[u8]) -> Option<Box<[u8]>> {
    DEFLATE.with_borrow_mut(|(c, out)| {
        c.reset();
        out.clear();
        out.reserve(text.len() / 4 + 64);
        loop {
            let read = usize::try_from(c.total_in()).ok()?;
            match c.compress_vec(text.get(read..)?, out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return Some(Box::from(out.as_slice())),
                // Out of room: more, and go on.
                Ok(_) => out.reserve(out.capacity()),
                Err(_) => return None,
            }
        }
    })
}

fn inflate(deflated: &[u8], len: u32) -> String {
    // The bytes were deflated from a str of `len` bytes by `packed`: they
    // inflate to it.
    INFLATE.with_borrow_mut(|d| {
        d.reset(false);
        let mut out = Vec::with_capacity(len as usize);
        let _ = d.decompress_vec(deflated, &mut out, FlushDecompress::Finish);
        String::from_utf8(out).unwrap_or_default()
    })
}

/// Equal when the texts are equal, packed or not.
impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        match (&self.0, &other.0) {
            (Repr::Text(a), Repr::Text(b)) => a == b,
            (
                Repr::Packed {
                    fingerprint: fa,
                    deflated: a,
                    ..
                },
                Repr::Packed {
                    fingerprint: fb,
                    deflated: b,
                    ..
                },
            ) => fa == fb && a == b,
            _ => self.fingerprint() == other.fingerprint() && self.json() == other.json(),
        }
    }
}

impl Eq for Body {}

impl Hash for Body {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fingerprint().hash(state);
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json())
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.json();
        let mut de = serde_json::Deserializer::from_str(&text);
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
    fn a_packed_body_reads_and_compares_as_its_text() {
        let text = Body::new(&sample());
        let packed = text.clone().packed();
        assert!(packed.held_len() < text.held_len());
        assert_eq!(packed.json(), text.json());
        assert_eq!(packed.value(), sample());
        assert_eq!(packed.fingerprint(), text.fingerprint());
        assert_eq!(packed, text);
        assert_eq!(packed, text.clone().packed());
        assert_eq!(
            serde_json::to_string_pretty(&packed).unwrap(),
            serde_json::to_string_pretty(&sample()).unwrap()
        );
        let other = Body::new(&json!({"kind": "Other"})).packed();
        assert_ne!(other, packed);
        assert_ne!(other.fingerprint(), packed.fingerprint());
        assert_ne!(Body::new(&json!({"kind": "Other"})), packed);
    }

    #[test]
    fn a_body_that_barely_compresses_packs_and_reads_back() {
        // Pseudo-random text deflates to more than the room first given.
        let mut x: u64 = 7;
        let noise: String = (0..20_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from(b'!' + ((x >> 33) % 90) as u8)
            })
            .collect();
        let v = json!({"kind": "Noise", "data": {"n": noise}});
        let packed = Body::new(&v).packed();
        assert!(matches!(packed.0, Repr::Packed { .. }));
        assert_eq!(packed.value(), v);
        // Several bodies through the same thread's compressor.
        assert_eq!(Body::new(&sample()).packed().value(), sample());
    }

    #[test]
    fn edits_go_through_a_tree() {
        let mut b = Body::new(&sample());
        b.edit(|v| v["metadata"]["labels"]["x"] = json!("3"));
        assert_eq!(b.value()["metadata"]["labels"]["x"], "3");
        assert_eq!(b.value()["metadata"]["labels"]["z"], "1");
    }
}
