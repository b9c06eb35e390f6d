//! Serializes a value straight into the interpreter's values, the way
//! [`super::view::convert`] presents them (nulls dropped from maps, unsigned
//! integers as ints, maps and lists shared), in one pass.
//!
//! Going through `cel::to_value` first costs a second tree: every key
//! allocated twice, every map hashed twice. Here struct field names are
//! borrowed (`&'static str`), so a typed intent converts with one
//! allocation per string value and one per map or list.

use std::fmt;

use cel::common::types::{CelBool, CelDouble, CelInt, CelMapKey, CelString};
use cel::common::types::{CelNull, CelUInt};
use cel::common::value::Val;
use serde::ser::{self, Serialize};

use super::view::{convert, SharedList, SharedMap};

/// Why a value could not be converted to CEL (what serde's `custom`
/// reports: a map key that is not a string, say).
#[derive(Debug, thiserror::Error)]
#[error("cannot convert the value to CEL: {0}")]
pub struct Error(String);

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// What a value serialized to.
type Out = Option<Box<dyn Val>>;

/// Converts `value`; `None` for a null.
pub fn to_val<T: Serialize + ?Sized>(value: &T) -> Result<Out, Error> {
    value.serialize(Serializer)
}

struct Serializer;

fn val(v: impl Val + 'static) -> Result<Out, Error> {
    Ok(Some(Box::new(v)))
}

/// Values `cel` serializes through marker names (durations, timestamps):
/// converted by `cel` itself, then presented as ours.
struct Marked<'a, T: ?Sized>(&'static str, &'a T);

impl<T: Serialize + ?Sized> Serialize for Marked<'_, T> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(self.0, self.1)
    }
}

impl ser::Serializer for Serializer {
    type Ok = Out;
    type Error = Error;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = ser::Impossible<Out, Error>;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = ser::Impossible<Out, Error>;

    fn serialize_bool(self, v: bool) -> Result<Out, Error> {
        val(CelBool::from(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Out, Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<Out, Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<Out, Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<Out, Error> {
        val(CelInt::from(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Out, Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<Out, Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<Out, Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<Out, Error> {
        // Rules compare with int literals (`weight <= 50`) and CEL has no
        // mixed int/uint arithmetic: every integer that fits is an int.
        match i64::try_from(v) {
            Ok(i) => val(CelInt::from(i)),
            Err(_) => val(CelUInt::from(v)),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<Out, Error> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<Out, Error> {
        val(CelDouble::from(v))
    }
    fn serialize_char(self, v: char) -> Result<Out, Error> {
        val(CelString::from(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Out, Error> {
        val(CelString::from(v.to_string()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Out, Error> {
        let c = convert(cel::Value::Bytes(std::sync::Arc::new(v.to_vec())));
        Ok(Some(c))
    }
    fn serialize_none(self) -> Result<Out, Error> {
        Ok(None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Out, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Out, Error> {
        Ok(None)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Out, Error> {
        Ok(None)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
    ) -> Result<Out, Error> {
        val(CelString::from(v))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<Out, Error> {
        if name.starts_with("$__cel_private_") {
            let value = cel::to_value(Marked(name, v)).map_err(|e| Error(e.to_string()))?;
            return Ok(Some(convert(value)));
        }
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Out, Error> {
        let mut entries = Vec::with_capacity(1);
        if let Some(inner) = v.serialize(Serializer)? {
            entries.push((CelMapKey::from(variant), inner));
        }
        val(SharedMap::new(entries))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Error> {
        Ok(Seq {
            items: Vec::with_capacity(len.unwrap_or(0)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(Error(format!(
            "`{name}::{variant}`: tuple variants have no CEL form"
        )))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Map, Error> {
        Ok(Map {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Map, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(Error(format!(
            "`{name}::{variant}`: struct variants have no CEL form"
        )))
    }
}

struct Seq {
    items: Vec<Box<dyn Val>>,
}

impl Seq {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        let item = v.serialize(Serializer)?;
        // A null inside a list stays: the list's length is the user's.
        self.items.push(item.unwrap_or_else(|| Box::new(CelNull)));
        Ok(())
    }

    fn finish(self) -> Result<Out, Error> {
        val(SharedList::new(self.items))
    }
}

// Lists, tuples and tuple structs are all lists.
macro_rules! seq_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Seq {
            type Ok = Out;
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
                self.push(v)
            }
            fn end(self) -> Result<Out, Error> {
                self.finish()
            }
        }
    )*};
}

seq_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

struct Map {
    // Distinct keys: struct fields are, and so are the keys of every map
    // type serde serializes.
    entries: Vec<(CelMapKey<'static>, Box<dyn Val>)>,
    key: Option<CelMapKey<'static>>,
}

impl Map {
    fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: CelMapKey<'static>,
        v: &T,
    ) -> Result<(), Error> {
        if let Some(value) = v.serialize(Serializer)? {
            self.entries.push((key, value));
        }
        Ok(())
    }

    fn finish(self) -> Result<Out, Error> {
        val(SharedMap::new(self.entries))
    }
}

impl ser::SerializeMap for Map {
    type Ok = Out;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Error> {
        self.key = Some(k.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error("a map value without its key".into()))?;
        self.insert(key, v)
    }
    fn end(self) -> Result<Out, Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Map {
    type Ok = Out;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        k: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.insert(CelMapKey::from(k), v)
    }
    fn end(self) -> Result<Out, Error> {
        self.finish()
    }
}

/// Map keys: strings, integers and booleans, as CEL allows.
struct KeySerializer;

impl ser::Serializer for KeySerializer {
    type Ok = CelMapKey<'static>;
    type Error = Error;
    type SerializeSeq = ser::Impossible<Self::Ok, Error>;
    type SerializeTuple = ser::Impossible<Self::Ok, Error>;
    type SerializeTupleStruct = ser::Impossible<Self::Ok, Error>;
    type SerializeTupleVariant = ser::Impossible<Self::Ok, Error>;
    type SerializeMap = ser::Impossible<Self::Ok, Error>;
    type SerializeStruct = ser::Impossible<Self::Ok, Error>;
    type SerializeStructVariant = ser::Impossible<Self::Ok, Error>;

    fn serialize_bool(self, v: bool) -> Result<Self::Ok, Error> {
        Ok(v.into())
    }
    fn serialize_i8(self, v: i8) -> Result<Self::Ok, Error> {
        Ok(i64::from(v).into())
    }
    fn serialize_i16(self, v: i16) -> Result<Self::Ok, Error> {
        Ok(i64::from(v).into())
    }
    fn serialize_i32(self, v: i32) -> Result<Self::Ok, Error> {
        Ok(i64::from(v).into())
    }
    fn serialize_i64(self, v: i64) -> Result<Self::Ok, Error> {
        Ok(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<Self::Ok, Error> {
        Ok(i64::from(v).into())
    }
    fn serialize_u16(self, v: u16) -> Result<Self::Ok, Error> {
        Ok(i64::from(v).into())
    }
    fn serialize_u32(self, v: u32) -> Result<Self::Ok, Error> {
        Ok(i64::from(v).into())
    }
    fn serialize_u64(self, v: u64) -> Result<Self::Ok, Error> {
        Ok(v.into())
    }
    fn serialize_f32(self, _: f32) -> Result<Self::Ok, Error> {
        Err(not_a_key("a float"))
    }
    fn serialize_f64(self, _: f64) -> Result<Self::Ok, Error> {
        Err(not_a_key("a float"))
    }
    fn serialize_char(self, v: char) -> Result<Self::Ok, Error> {
        Ok(v.to_string().into())
    }
    fn serialize_str(self, v: &str) -> Result<Self::Ok, Error> {
        Ok(v.to_string().into())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Self::Ok, Error> {
        Err(not_a_key("bytes"))
    }
    fn serialize_none(self) -> Result<Self::Ok, Error> {
        Err(not_a_key("null"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Self::Ok, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Self::Ok, Error> {
        Err(not_a_key("null"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Self::Ok, Error> {
        Err(not_a_key("null"))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
    ) -> Result<Self::Ok, Error> {
        Ok(CelMapKey::from(v))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Self::Ok, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Error> {
        Err(not_a_key("an enum"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_a_key("a list"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_a_key("a list"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_a_key("a list"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_a_key("an enum"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(not_a_key("a map"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(not_a_key("a map"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_a_key("an enum"))
    }
}

fn not_a_key(what: &str) -> Error {
    Error(format!("{what} cannot be a CEL map key"))
}

#[cfg(test)]
mod tests {
    use crate::cel::{Bindings, Bound, Engine};

    #[derive(serde::Serialize)]
    struct Step {
        weight: Option<u32>,
        pause: Option<crate::intent::Duration>,
    }

    #[test]
    fn converts_like_the_interpreter_would_see_the_json() {
        let steps = vec![
            Step {
                weight: Some(10),
                pause: Some(crate::intent::Duration::from_secs(60)),
            },
            Step {
                weight: None,
                pause: None,
            },
        ];
        let bound =
            Bound::new(&serde_json::json!({"labels": {"a": "b"}, "n": [1u8, 2u8]})).unwrap();
        let typed = Bound::new(&steps).unwrap();
        let engine = Engine::new();
        let c = engine
            .compile(
                "s[0].weight == 10 && s[0].pause == duration('1m') && !has(s[1].weight) \
                 && j.labels.a == 'b' && j.n[1] == 2",
                &["s", "j"],
            )
            .unwrap();
        let b = Bindings::new().with("s", &typed).with("j", &bound);
        assert_eq!(engine.eval(&c, &b), Ok(cel::Value::Bool(true)));
    }
}
