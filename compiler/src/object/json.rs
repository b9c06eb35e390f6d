//! JSON text as serde_json writes it, written without serde_json where
//! that is faster: strings, and maps in their order or with keys sorted
//! (the canonical text the content hash is taken of).

use serde_json::Value;

/// `v` as compact JSON. Writing a string or a JSON value into a Vec cannot
/// fail.
fn write_json(out: &mut Vec<u8>, v: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, v);
}

/// The compact JSON of `v`.
pub(crate) fn json_text(v: &(impl serde::Serialize + ?Sized)) -> String {
    let mut out = Vec::new();
    write_json(&mut out, v);
    // serde_json writes UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The JSON string of `s` ([`write_str`]).
pub(crate) fn json_str(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_str(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

/// `s` as a JSON string, as serde_json writes it. Nearly every string of
/// an object needs no escaping: those are copied whole, found so eight
/// bytes at a time (serde_json looks at each byte, and strings are most of
/// an object's bytes); the others are left to serde_json.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escaping(s.as_bytes()) {
        return write_json(out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Whether `b` has a byte a JSON string escapes: a control character,
/// `"` or `\`. (A false alarm would only cost time: it has none.)
fn needs_escaping(b: &[u8]) -> bool {
    use crate::yaml::{below, zero_bytes, ONES};
    let flags = |x: u64| {
        below(x, 0x20)
            | zero_bytes(x ^ (ONES * u64::from(b'"')))
            | zero_bytes(x ^ (ONES * u64::from(b'\\')))
    };
    let mut words = b.chunks_exact(8);
    let any = words.by_ref().any(|w| {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        flags(u64::from_le_bytes(word)) != 0
    });
    any || words
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// `v` as compact JSON, as serde_json writes it; with `sorted`, every
/// map's keys sorted (the canonical text).
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value, sorted: bool) {
    match v {
        Value::Object(m) => {
            let entries = m.iter().map(|(k, v)| (k.as_str(), v));
            let value = |out: &mut Vec<u8>, v| write_value(out, v, sorted);
            match sorted {
                true => write_sorted_map(out, entries, value),
                false => write_map(out, entries, value),
            }
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, sorted);
            }
            out.push(b']');
        }
        Value::String(s) => write_str(out, s),
        other => write_json(out, other),
    }
}

/// A JSON map of `entries`, each value written by `value`.
pub(super) fn write_map<'k, V>(
    out: &mut Vec<u8>,
    entries: impl IntoIterator<Item = (&'k str, V)>,
    mut value: impl FnMut(&mut Vec<u8>, V),
) {
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

/// [`write_map`] with the keys sorted. Emitted maps have a handful of
/// keys: they are sorted on the stack, without allocating.
pub(super) fn write_sorted_map<'k, V: Copy>(
    out: &mut Vec<u8>,
    entries: impl ExactSizeIterator<Item = (&'k str, V)>,
    value: impl FnMut(&mut Vec<u8>, V),
) {
    const SMALL: usize = 16;
    let mut small: [Option<(&str, V)>; SMALL] = [None; SMALL];
    let mut large = Vec::new();
    let n = entries.len();
    let slots: &mut [Option<(&str, V)>] = if n <= SMALL {
        for (slot, e) in small.iter_mut().zip(entries) {
            *slot = Some(e);
        }
        &mut small[..n]
    } else {
        large.extend(entries.map(Some));
        &mut large
    };
    slots.sort_unstable_by(|a, b| a.map(|e| e.0).cmp(&b.map(|e| e.0)));
    write_map(out, slots.iter().flatten().copied(), value);
}
