//! Durations as written in intents: `500ms`, `10s`, `1m30s`, `2h`, `30d`.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration with millisecond precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl Duration {
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs * 1000,
        }
    }

    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    pub fn as_secs_f64(self) -> f64 {
        self.millis as f64 / 1000.0
    }

    /// Parses `1h30m`, `250ms`, `1.5s` (a fraction only on the last part).
    pub fn parse(s: &str) -> Result<Self, InvalidDuration> {
        let bad = || InvalidDuration(s.to_owned());
        if s.is_empty() {
            return Err(bad());
        }
        let mut rest = s;
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            if num_end == 0 {
                return Err(bad());
            }
            let (num, tail) = rest.split_at(num_end);
            let unit_end = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, next) = tail.split_at(unit_end);
            let factor = UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, f)| *f)
                .ok_or_else(bad)?;
            let part = if num.contains('.') {
                if !next.is_empty() {
                    return Err(bad());
                }
                let f: f64 = num.parse().map_err(|_| bad())?;
                (f * factor as f64).round() as u64
            } else {
                num.parse::<u64>()
                    .ok()
                    .and_then(|n| n.checked_mul(factor))
                    .ok_or_else(bad)?
            };
            total = total.checked_add(part).ok_or_else(bad)?;
            rest = next;
        }
        Ok(Self { millis: total })
    }
}

/// A duration meshplan cannot read: the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration \"{0}\": expected a number and a unit (ms, s, m, h, d), such as 500ms, 10s, 1m30s or 30d")]
pub struct InvalidDuration(pub String);

impl fmt::Display for Duration {
    /// The shortest exact form: `90s` is `1m30s`, `1500ms` is `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.millis;
        if rest % 1000 != 0 {
            return write!(f, "{rest}ms");
        }
        for (unit, factor) in &UNITS[..4] {
            let n = rest / factor;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                rest -= n * factor;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Duration::parse(&s).map_err(de::Error::custom)
    }
}

/// Serializes as a CEL `duration` (the model is serialized only to build the
/// CEL view of an intent, where rules compare durations natively).
impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let millis = i64::try_from(self.millis).unwrap_or(i64::MAX);
        cel::Duration(chrono::Duration::milliseconds(millis)).serialize(s)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))*[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)$",
            "description": "A duration: a number and a unit (ms, s, m, h, d), such as 500ms, 10s, 1m30s or 30d.",
            "examples": ["500ms", "10s", "1m30s", "30d"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(Duration::parse("1m30s").unwrap().as_millis(), 90_000);
        assert_eq!(Duration::parse("250ms").unwrap().as_millis(), 250);
        assert_eq!(Duration::parse("1.5s").unwrap().as_millis(), 1500);
        assert_eq!(Duration::parse("30d").unwrap().as_millis(), 30 * 86_400_000);
    }

    #[test]
    fn rejects_durations_without_a_unit() {
        assert!(Duration::parse("10").is_err());
        assert!(Duration::parse("ten seconds").is_err());
        assert!(Duration::parse("").is_err());
        assert!(Duration::parse("1.5m30s").is_err());
        assert!(Duration::parse("5w").is_err());
    }

    #[test]
    fn displays_the_shortest_exact_form() {
        assert_eq!(Duration::parse("90s").unwrap().to_string(), "1m30s");
        assert_eq!(Duration::parse("1500ms").unwrap().to_string(), "1500ms");
        assert_eq!(Duration::parse("2h").unwrap().to_string(), "2h");
    }
}
