//! The JSON Schema of the intent language, for editors
//! (yaml-language-server) and for `meshplan schema`.
//!
//! One schema covers every kind: `kind` selects the document's schema with
//! `if`/`then`, so an editor validates any meshplan file against the right
//! shape and shows the field docs as hover text.

use schemars::{generate::SchemaSettings, JsonSchema};
use serde_json::{json, Map, Value};

use crate::intent::{Config, Kind, Policy, ServiceIntent, API_VERSION};

fn one<T: JsonSchema>(defs: &mut Map<String, Value>) -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut v = schema.to_value();
    if let Some(Value::Object(d)) = v.as_object_mut().and_then(|o| o.remove("$defs")) {
        for (k, s) in d {
            defs.insert(k, s);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
    }
    v
}

/// The schema of one kind, or of all kinds when `kind` is `None`.
pub fn schema(kind: Option<Kind>) -> Value {
    let mut defs = Map::new();
    let mut kinds = Vec::new();
    for k in Kind::ALL {
        if kind.is_some_and(|want| want != k) {
            continue;
        }
        let mut body = match k {
            Kind::ServiceIntent => one::<ServiceIntent>(&mut defs),
            Kind::Policy => one::<Policy>(&mut defs),
            Kind::MeshplanConfig => one::<Config>(&mut defs),
        };
        body["title"] = json!(k.as_str());
        defs.insert(k.as_str().to_string(), body);
        kinds.push(k.as_str());
    }
    let all_of: Vec<Value> = kinds
        .iter()
        .map(|k| {
            json!({
                "if": { "properties": { "kind": { "const": k } }, "required": ["kind"] },
                "then": { "$ref": format!("#/$defs/{k}") },
            })
        })
        .collect();
    // Keys sorted by serde_json's map (preserve_order keeps insertion
    // order): sort the definitions so the output is stable.
    let mut sorted: Vec<(String, Value)> = defs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let defs: Map<String, Value> = sorted.into_iter().collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://meshplan.dev/schemas/v1alpha1.json",
        "title": "meshplan intents (meshplan.dev/v1alpha1)",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": { "const": API_VERSION },
            "kind": { "enum": kinds },
        },
        "allOf": all_of,
        "$defs": defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_every_kind_and_forbids_unknown_fields() {
        let s = schema(None);
        for k in Kind::ALL {
            assert!(s["$defs"][k.as_str()].is_object(), "{k:?}");
        }
        let text = s.to_string();
        assert!(text.contains("\"additionalProperties\":false"));
        assert!(text.contains("perTryTimeout"));
    }

    /// The schema refuses what `check` refuses: names that are not DNS
    /// labels, port 0 (an editor then flags them as they are typed).
    #[test]
    fn states_the_names_and_ports_check_accepts() {
        let s = schema(None);
        let defs = &s["$defs"];
        assert_eq!(defs["Port"]["properties"]["port"]["minimum"], 1);
        assert_eq!(defs["Port"]["properties"]["port"]["maximum"], 65535);
        for (def, field) in [
            ("Metadata", "name"),
            ("Port", "name"),
            ("Version", "name"),
            ("Route", "name"),
        ] {
            let f = &defs[def]["properties"][field];
            assert_eq!(f["pattern"], crate::intent::DNS_LABEL, "{def}.{field}");
            assert_eq!(f["maxLength"], 63, "{def}.{field}");
        }
        let pattern = regex::Regex::new(crate::intent::DNS_LABEL).unwrap();
        for name in [
            "web", "a", "a-b", "v1", "9x", "Web", "a_b", "-a", "a-", "", "a.b", "é",
        ] {
            assert_eq!(
                pattern.is_match(name),
                crate::check::validate::is_dns_label(name),
                "{name:?}"
            );
        }
    }

    #[test]
    fn is_deterministic() {
        assert_eq!(schema(None).to_string(), schema(None).to_string());
    }
}
