//! A serde [`Deserializer`] over a [`Node`] tree, or over the fast
//! reader's [`Tape`](super::tape::Tape) (any [`Tree`](super::tree::Tree)).
//!
//! Why not deserialize from the text directly: we want *every* error at the
//! node it concerns (`weight: ten` at `ten`), unknown fields reported all at
//! once with a "did you mean" hint at the key, and the tree at hand (kept,
//! or read again) for semantic errors found later. Plain scalars are
//! resolved by the YAML 1.2 core schema only when the target type asks for
//! a number or boolean, so `version: 1.10` stays the string `"1.10"`.

use std::cell::RefCell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};

use super::node::{Node, Style};
use super::tree::{Shape, Tree};
use crate::source::Span;

/// What kind of mistake a [`DeError`] is; each maps to a diagnostic code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeErrorKind {
    UnknownField,
    WrongType,
    MissingField,
    InvalidValue,
    UnknownVariant,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeError {
    pub kind: DeErrorKind,
    pub span: Option<Span>,
    pub message: String,
    pub hint: Option<String>,
}

impl DeError {
    fn new(kind: DeErrorKind, message: String) -> Self {
        Self {
            kind,
            span: None,
            message,
            hint: None,
        }
    }

    /// Sets the span unless an inner node already did.
    fn at(mut self, span: Span) -> Self {
        self.span.get_or_insert(span);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(DeErrorKind::InvalidValue, msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(
            DeErrorKind::WrongType,
            format!(
                "wrong type: expected {}, found {}",
                expected(&exp.to_string()),
                unexpected(&unexp)
            ),
        )
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(
            DeErrorKind::InvalidValue,
            format!(
                "invalid value {}: expected {}",
                unexpected(&unexp),
                expected(&exp.to_string())
            ),
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Self::new(
            DeErrorKind::UnknownVariant,
            format!("unknown value `{variant}`: expected {}", one_of(expected)),
        );
        e.hint = did_you_mean(variant, expected);
        e
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Self::new(
            DeErrorKind::UnknownField,
            format!("unknown field `{field}`: expected {}", one_of(expected)),
        );
        e.hint = did_you_mean(field, expected);
        e
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(
            DeErrorKind::MissingField,
            format!("missing required field `{field}`"),
        )
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => "no fields here".to_string(),
        [one] => format!("`{one}`"),
        _ => format!(
            "one of {}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Turns serde's Rust-flavoured expectations into YAML words.
fn expected(exp: &str) -> String {
    match exp {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "an integer".into()
        }
        "f32" | "f64" => "a number".into(),
        "a boolean" => "a boolean (true or false)".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        "a string" => "a string".into(),
        s if s.starts_with("struct ") => "a mapping".into(),
        s if s.starts_with("enum ") => "one of the documented values".into(),
        s => s.to_string(),
    }
}

fn unexpected(u: &Unexpected<'_>) -> String {
    match u {
        Unexpected::Bool(b) => format!("the boolean `{b}`"),
        Unexpected::Unsigned(n) => format!("the integer `{n}`"),
        Unexpected::Signed(n) => format!("the integer `{n}`"),
        Unexpected::Float(n) => format!("the number `{n}`"),
        Unexpected::Str(s) => format!("the string \"{s}\""),
        Unexpected::Unit => "nothing (null)".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "a mapping".into(),
        other => other.to_string(),
    }
}

/// A "did you mean" hint: tolerant of case, `_`/`-` and small typos.
pub fn did_you_mean(got: &str, candidates: &[&str]) -> Option<String> {
    fn norm(s: &str) -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    }
    let g = norm(got);
    let best = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&g, &norm(c)), *c))
        .min_by_key(|(d, c)| (*d, *c))?;
    let limit = (got.chars().count() / 3).clamp(1, 3);
    (best.0 <= limit).then(|| format!("did you mean `{}`?", best.1))
}

/// Deserializes `T` from `node` (of a tree or of the fast reader's tape);
/// unknown fields go to `sink` (the rest of the value is still read so
/// that all of them are reported at once).
pub fn from_node<'a, N: Tree<'a>, T: de::Deserialize<'a>>(
    node: N,
    sink: &'a RefCell<Vec<DeError>>,
) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, sink })
}

#[derive(Clone, Copy, Debug)]
pub struct NodeDe<'a, N = &'a Node> {
    node: N,
    sink: &'a RefCell<Vec<DeError>>,
}

impl<'a, N: Tree<'a>> NodeDe<'a, N> {
    fn scalar(&self) -> Option<(&'a str, Style)> {
        match self.node.shape() {
            Shape::Scalar(s, st) => Some((s, st)),
            _ => None,
        }
    }

    /// A plain scalar's text, the only kind the core schema reads as a
    /// number or a boolean.
    fn plain(&self) -> Option<&'a str> {
        match self.scalar() {
            Some((s, Style::Plain)) => Some(s),
            _ => None,
        }
    }

    fn unexpected(&self) -> Unexpected<'a> {
        match self.node.shape() {
            Shape::Null => Unexpected::Unit,
            Shape::Scalar(s, _) => Unexpected::Str(s),
            Shape::Seq(_) => Unexpected::Seq,
            Shape::Map(_) => Unexpected::Map,
        }
    }

    /// A mapping key's text ("" for a key that is not a scalar).
    fn key_name(&self, key: N) -> &'a str {
        self.child(key).scalar().map_or("", |(s, _)| s)
    }

    fn child(&self, node: N) -> Self {
        Self {
            node,
            sink: self.sink,
        }
    }
}

fn parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = body.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = body.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()?
    } else if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        body.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => {
            let ok = s
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
            if ok && s.bytes().any(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

macro_rules! int_method {
    ($method:ident) => {
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
            let span = self.node.span();
            let r = match self.plain().and_then(parse_int) {
                Some(n) if n >= 0 => match u64::try_from(n) {
                    Ok(u) => visitor.visit_u64(u),
                    Err(_) => Err(de::Error::invalid_value(
                        Unexpected::Str(self.plain().unwrap_or("")),
                        &visitor,
                    )),
                },
                Some(n) => match i64::try_from(n) {
                    Ok(i) => visitor.visit_i64(i),
                    Err(_) => Err(de::Error::invalid_value(
                        Unexpected::Str(self.plain().unwrap_or("")),
                        &visitor,
                    )),
                },
                None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
            };
            r.map_err(|e: DeError| e.at(span))
        }
    };
}

impl<'a, N: Tree<'a>> Deserializer<'a> for NodeDe<'a, N> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span();
        let r = match self.node.shape() {
            Shape::Null => visitor.visit_unit(),
            Shape::Scalar(s, Style::Plain) => {
                if let Some(b) = parse_bool(s) {
                    visitor.visit_bool(b)
                } else if let Some(n) = parse_int(s) {
                    if let Ok(u) = u64::try_from(n) {
                        visitor.visit_u64(u)
                    } else if let Ok(i) = i64::try_from(n) {
                        visitor.visit_i64(i)
                    } else {
                        visitor.visit_str(s)
                    }
                } else if let Some(f) = parse_float(s) {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(s)
                }
            }
            Shape::Scalar(s, _) => visitor.visit_str(s),
            Shape::Seq(items) => visitor.visit_seq(Seq { de: self, items }),
            Shape::Map(entries) => visitor.visit_map(Map {
                de: self,
                entries,
                value: None,
            }),
        };
        r.map_err(|e| e.at(span))
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span();
        match self.plain().and_then(parse_bool) {
            Some(b) => visitor.visit_bool(b),
            None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e: DeError| e.at(span))
    }

    int_method!(deserialize_i8);
    int_method!(deserialize_i16);
    int_method!(deserialize_i32);
    int_method!(deserialize_i64);
    int_method!(deserialize_u8);
    int_method!(deserialize_u16);
    int_method!(deserialize_u32);
    int_method!(deserialize_u64);

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span();
        match self.plain().and_then(parse_float) {
            Some(f) => visitor.visit_f64(f),
            None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e: DeError| e.at(span))
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span();
        match self.scalar() {
            Some((s, _)) => visitor.visit_borrowed_str(s),
            None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e: DeError| e.at(span))
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.shape() {
            Shape::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span();
        match self.node.shape() {
            Shape::Null => visitor.visit_unit(),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e: DeError| e.at(span))
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span();
        match self.node.shape() {
            Shape::Seq(items) => visitor.visit_seq(Seq { de: self, items }),
            // `allow:` with nothing under it is an empty list.
            Shape::Null => visitor.visit_seq(Seq {
                de: self,
                items: std::iter::empty(),
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e| e.at(span))
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span();
        match self.node.shape() {
            Shape::Map(entries) => visitor.visit_map(Map {
                de: self,
                entries,
                value: None,
            }),
            Shape::Null => visitor.visit_map(Map {
                de: self,
                entries: std::iter::empty(),
                value: None,
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e| e.at(span))
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let span = self.node.span();
        let Shape::Map(entries) = self.node.shape() else {
            return self.deserialize_map(visitor);
        };
        let known = |k: &N| fields.contains(&self.key_name(*k));
        // Nearly always every key is a field: read as they are.
        if entries.clone().all(|(k, _)| known(&k)) {
            return visitor
                .visit_map(Map {
                    de: self,
                    entries,
                    value: None,
                })
                .map_err(|e| e.at(span));
        }
        // Report every unknown key at the key itself, then read the rest.
        let known: Vec<(N, N)> = entries
            .filter(|(k, _)| {
                if known(k) {
                    return true;
                }
                let name = self.key_name(*k);
                let e: DeError = de::Error::unknown_field(name, fields);
                self.sink.borrow_mut().push(e.at(k.span()));
                false
            })
            .collect();
        visitor
            .visit_map(Map {
                de: self,
                entries: known.into_iter(),
                value: None,
            })
            .map_err(|e| e.at(span))
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let span = self.node.span();
        let r = match self.node.shape() {
            Shape::Scalar(s, _) => {
                if variants.contains(&s) {
                    visitor.visit_enum(Enum {
                        variant: self,
                        value: None,
                    })
                } else {
                    Err(de::Error::unknown_variant(s, variants))
                }
            }
            Shape::Map(mut entries) => match (entries.next(), entries.next()) {
                (Some((k, v)), None) => {
                    let name = self.key_name(k);
                    if variants.contains(&name) {
                        visitor.visit_enum(Enum {
                            variant: self.child(k),
                            value: Some(self.child(v)),
                        })
                    } else {
                        Err(DeError::unknown_variant_at(name, variants, k.span()))
                    }
                }
                _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
            },
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        r.map_err(|e| e.at(span))
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

impl DeError {
    fn unknown_variant_at(name: &str, variants: &'static [&'static str], span: Span) -> Self {
        let e: DeError = de::Error::unknown_variant(name, variants);
        e.at(span)
    }
}

struct Seq<'a, N, I> {
    de: NodeDe<'a, N>,
    items: I,
}

impl<'a, N: Tree<'a>, I: Iterator<Item = N>> SeqAccess<'a> for Seq<'a, N, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(n) => seed.deserialize(self.de.child(n)).map(Some),
            None => Ok(None),
        }
    }

    // An exact length lets a `Vec` be allocated once, with no spare
    // capacity (typed intents are kept as long as the repository).
    fn size_hint(&self) -> Option<usize> {
        exact(self.items.size_hint())
    }
}

fn exact(hint: (usize, Option<usize>)) -> Option<usize> {
    match hint {
        (low, Some(high)) if low == high => Some(low),
        _ => None,
    }
}

struct Map<'a, N, I> {
    de: NodeDe<'a, N>,
    entries: I,
    value: Option<N>,
}

impl<'a, N: Tree<'a>, I: Iterator<Item = (N, N)>> MapAccess<'a> for Map<'a, N, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(self.de.child(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        exact(self.entries.size_hint())
    }

    fn next_value_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        let v = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value without a key"))?;
        seed.deserialize(self.de.child(v))
    }
}

struct Enum<'a, N> {
    variant: NodeDe<'a, N>,
    value: Option<NodeDe<'a, N>>,
}

impl<'a, N: Tree<'a>> EnumAccess<'a> for Enum<'a, N> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'a>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let name = self.variant.scalar().map(|(s, _)| s).unwrap_or("");
        let v = seed.deserialize(name.into_deserializer())?;
        Ok((v, self))
    }
}

impl<'a, N: Tree<'a>> VariantAccess<'a> for Enum<'a, N> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None => Ok(()),
            Some(v) if matches!(v.node.shape(), Shape::Null) => Ok(()),
            Some(v) => Err(DeError::new(
                DeErrorKind::WrongType,
                "this value takes no settings".into(),
            )
            .at(v.node.span())),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.value {
            Some(v) => seed.deserialize(v),
            None => Err(DeError::new(
                DeErrorKind::WrongType,
                "this value needs settings (a mapping under it)".into(),
            )
            .at(self.variant.node.span())),
        }
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(v) => v.deserialize_seq(visitor),
            None => Err(de::Error::invalid_type(Unexpected::UnitVariant, &visitor)),
        }
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Some(v) => v.deserialize_map(visitor),
            None => Err(de::Error::invalid_type(Unexpected::UnitVariant, &visitor)),
        }
    }
}

#[cfg(test)]
mod tests;
