//! Offline validation of emitted objects against the upstream CRD schemas
//! (`$MESHPLAN_CRDS`, `meshplan check --schemas DIR`), as the API server
//! would validate them — without a cluster.
//!
//! Checked: types (with `nullable`, `x-kubernetes-int-or-string`),
//! `required`, `enum`, `pattern`, `format` (`int32`, `int64`, `byte`; other
//! formats are not checked), numeric bounds, lengths and item and
//! property counts, `x-kubernetes-list-type` uniqueness, `oneOf` / `anyOf` /
//! `allOf` / `not`, and fields the schema does not have (the API server
//! would silently *prune* them — a setting lost without an error, which is
//! why meshplan reports it). `x-kubernetes-validations` rules run on
//! meshplan's CEL engine; a rule it cannot compile (Kubernetes-only
//! functions such as `isURL`, or a transition rule on `oldSelf`) is
//! counted as skipped, never silently passed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use meshplan_policy_lang::cel::eval::{Bindings, Engine};
use serde_json::Value;

use crate::object::MeshObject;

/// The schemas of every CRD in a folder, by `(apiVersion, kind)`.
#[derive(Debug, Default)]
pub struct SchemaSet {
    schemas: BTreeMap<(String, String), Value>,
}

/// Why a folder of CRDs cannot be loaded. Each variant's text leaves its
/// cause to the chain (`source`), as the CLI prints errors (anyhow's
/// `{:#}`: `cannot read DIR: No such file or directory`).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The folder cannot be listed, or a file in it cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `.yaml`/`.yml` file that does not parse (boxed: the parser's
    /// error is large, and every `Result` would carry its size).
    #[error("{}: not YAML", path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The folder's YAML files define no CustomResourceDefinition: most
    /// likely the wrong folder, which would otherwise validate nothing.
    #[error("{} holds no CustomResourceDefinition", dir.display())]
    NoCrd { dir: PathBuf },
}

/// One broken constraint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// `Kind namespace/name`.
    pub object: String,
    /// The intent it came from.
    pub origin: crate::ir::Origin,
    /// The emitter that made it.
    pub emitter: &'static str,
    /// Where in the object: `spec.http[0].route[1].weight`.
    pub path: String,
    pub message: String,
}

/// What a validation run covered.
#[derive(Debug, Default)]
pub struct Report {
    pub objects: usize,
    pub violations: Vec<Violation>,
    /// `x-kubernetes-validations` rules evaluated.
    pub rules_evaluated: usize,
    /// Rules the CEL engine could not run (Kubernetes-only functions,
    /// transition rules), by rule text.
    pub rules_skipped: BTreeSet<String>,
    /// Kinds without a schema in the set (built-in kinds such as Service).
    pub no_schema: BTreeSet<String>,
}

impl SchemaSet {
    /// Reads every `.yaml`/`.yml` file of `dir` (not recursive).
    pub fn load(dir: &Path) -> Result<SchemaSet, SchemaError> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|source| SchemaError::Read {
                path: dir.to_owned(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        // Experimental channels first: a CRD in both is taken from the
        // experimental file (a superset), as the test environment does.
        files.sort_by_key(|p| {
            let n = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (!n.contains("experimental"), n)
        });
        let mut set = SchemaSet::default();
        for f in files {
            set.add_file(&f)?;
        }
        if set.schemas.is_empty() {
            return Err(SchemaError::NoCrd {
                dir: dir.to_owned(),
            });
        }
        Ok(set)
    }

    /// Adds the CRDs of a YAML file (schemas already known are kept).
    pub fn add_file(&mut self, f: &Path) -> Result<(), SchemaError> {
        let text = std::fs::read_to_string(f).map_err(|source| SchemaError::Read {
            path: f.to_owned(),
            source,
        })?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|source| SchemaError::Yaml {
                path: f.to_owned(),
                source: Box::new(source),
            })?;
        for d in docs {
            self.add_crd(&d);
        }
        Ok(())
    }

    /// Adds a CRD document's schemas (ignores anything else).
    pub fn add_crd(&mut self, d: &Value) {
        if d.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            return;
        }
        let (Some(group), Some(kind)) = (
            d.pointer("/spec/group").and_then(Value::as_str),
            d.pointer("/spec/names/kind").and_then(Value::as_str),
        ) else {
            return;
        };
        for v in d
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(name), Some(schema)) = (
                v.get("name").and_then(Value::as_str),
                v.pointer("/schema/openAPIV3Schema"),
            ) else {
                continue;
            };
            self.schemas
                .entry((format!("{group}/{name}"), kind.to_owned()))
                .or_insert_with(|| schema.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.schemas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schemas.is_empty()
    }

    /// Validates every object.
    pub fn validate(&self, objects: &[MeshObject]) -> Report {
        let engine = Engine::new();
        let mut report = Report::default();
        for o in objects {
            let Some(schema) = self
                .schemas
                .get(&(o.api_version.to_owned(), o.kind.to_owned()))
            else {
                report
                    .no_schema
                    .insert(format!("{} {}", o.api_version, o.kind));
                continue;
            };
            report.objects += 1;
            let mut cx = Cx {
                engine: &engine,
                object: o.display_name(),
                origin: o.origin.clone(),
                emitter: o.emitter,
                report: &mut report,
            };
            // Metadata is the API server's business (names are checked by
            // the intent language already).
            let mut body = o.body.value();
            if let Some(m) = body.as_object_mut() {
                m.remove("metadata");
                m.remove("apiVersion");
                m.remove("kind");
            }
            let mut root = schema.clone();
            if let Some(props) = root.get_mut("properties").and_then(Value::as_object_mut) {
                props.remove("metadata");
                props.remove("apiVersion");
                props.remove("kind");
            }
            // …and so is requiring them (Cilium's schema does).
            if let Some(req) = root.get_mut("required").and_then(Value::as_array_mut) {
                req.retain(|r| !matches!(r.as_str(), Some("metadata" | "apiVersion" | "kind")));
            }
            // The API server defaults before it validates.
            default(&root, &mut body);
            cx.check(&root, &body, "", true);
        }
        report.violations.sort();
        report.violations.dedup();
        report
    }
}

struct Cx<'a> {
    engine: &'a Engine,
    object: String,
    origin: crate::ir::Origin,
    emitter: &'static str,
    report: &'a mut Report,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

impl Cx<'_> {
    fn violation(&mut self, path: &str, message: String) {
        self.report.violations.push(Violation {
            object: self.object.clone(),
            origin: self.origin.clone(),
            emitter: self.emitter,
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path.into()
            },
            message,
        });
    }

    /// `structural`: the schema describes the value's shape (fields not in
    /// it are pruned); inside `oneOf`/`anyOf`/`allOf`/`not` schemas only
    /// constrain values.
    fn check(&mut self, schema: &Value, v: &Value, path: &str, structural: bool) {
        let Some(s) = schema.as_object() else { return };
        if v.is_null() {
            if structural && s.get("nullable") != Some(&Value::Bool(true)) && s.contains_key("type")
            {
                self.violation(path, "null is not allowed here".into());
            }
            return;
        }
        let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = int_or_string
                || match t {
                    "object" => v.is_object(),
                    "array" => v.is_array(),
                    "string" => v.is_string(),
                    "integer" => v.is_i64() || v.is_u64(),
                    "number" => v.is_number(),
                    "boolean" => v.is_boolean(),
                    _ => true,
                };
            if !ok {
                self.violation(path, format!("expected {t}, found {}", type_name(v)));
                return;
            }
        } else if int_or_string && !(v.is_string() || v.is_i64() || v.is_u64()) {
            self.violation(
                path,
                format!("expected an integer or a string, found {}", type_name(v)),
            );
            return;
        }
        self.values(s, v, path);
        match v {
            Value::Object(m) => {
                let props = s.get("properties").and_then(Value::as_object);
                for r in s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(r) = r.as_str() {
                        if !m.contains_key(r) {
                            self.violation(path, format!("required field `{r}` is missing"));
                        }
                    }
                }
                let preserve =
                    s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
                let additional = s.get("additionalProperties");
                for (k, fv) in m {
                    let p = join(path, k);
                    if let Some(fs) = props.and_then(|p| p.get(k)) {
                        self.check(fs, fv, &p, structural);
                    } else if let Some(a) = additional.filter(|a| a.is_object()) {
                        self.check(a, fv, &p, structural);
                    } else if structural && !preserve && additional != Some(&Value::Bool(true)) {
                        self.violation(
                            &p,
                            "unknown field: the schema has no such field (the API server would drop it silently)".into(),
                        );
                    }
                }
            }
            Value::Array(items) => {
                if let Some(is) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(is, item, &format!("{path}[{i}]"), structural);
                    }
                }
                self.list_type(s, items, path);
            }
            _ => {}
        }
        for (i, sub) in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let _ = i;
            self.check(sub, v, path, false);
        }
        for key in ["oneOf", "anyOf"] {
            let Some(subs) = s.get(key).and_then(Value::as_array) else {
                continue;
            };
            let passing = subs.iter().filter(|sub| self.passes(sub, v, path)).count();
            let ok = if key == "oneOf" {
                passing == 1
            } else {
                passing >= 1
            };
            if !ok {
                let want = if key == "oneOf" {
                    "exactly one"
                } else {
                    "at least one"
                };
                self.violation(
                    path,
                    format!(
                        "{want} of the schema's {} alternatives must hold, {passing} do",
                        subs.len()
                    ),
                );
            }
        }
        if let Some(not) = s.get("not") {
            if self.passes(not, v, path) {
                self.violation(
                    path,
                    "matches a combination the schema forbids (`not`)".into(),
                );
            }
        }
        self.cel_rules(s, v, path);
    }

    /// Whether `v` satisfies a value-only schema, without reporting.
    fn passes(&mut self, schema: &Value, v: &Value, path: &str) -> bool {
        let before = self.report.violations.len();
        self.check(schema, v, path, false);
        let ok = self.report.violations.len() == before;
        self.report.violations.truncate(before);
        ok
    }

    fn values(&mut self, s: &serde_json::Map<String, Value>, v: &Value, path: &str) {
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                let allowed: Vec<String> = e.iter().map(|x| x.to_string()).collect();
                self.violation(path, format!("{v} is not one of {}", allowed.join(", ")));
            }
        }
        if let (Some(p), Some(text)) = (s.get("pattern").and_then(Value::as_str), v.as_str()) {
            if let Ok(re) = regex::Regex::new(p) {
                if !re.is_match(text) {
                    self.violation(path, format!("\"{text}\" does not match the pattern {p}"));
                }
            }
        }
        if let Some(n) = v.as_f64() {
            let excl = |k: &str| s.get(k) == Some(&Value::Bool(true));
            if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
                if n < min || (excl("exclusiveMinimum") && n == min) {
                    self.violation(path, format!("{v} is below the minimum {min}"));
                }
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
                if n > max || (excl("exclusiveMaximum") && n == max) {
                    self.violation(path, format!("{v} is above the maximum {max}"));
                }
            }
        }
        match (s.get("format").and_then(Value::as_str), v) {
            (Some("int32"), Value::Number(n))
                if n.as_i64().is_none_or(|i| i32::try_from(i).is_err()) =>
            {
                self.violation(path, format!("{n} does not fit in int32"));
            }
            (Some("int64"), Value::Number(n)) if n.as_i64().is_none() => {
                self.violation(path, format!("{n} does not fit in int64"));
            }
            (Some("byte"), Value::String(t)) => {
                use base64::Engine as _;
                if base64::engine::general_purpose::STANDARD.decode(t).is_err() {
                    self.violation(path, "not base64 (format: byte)".into());
                }
            }
            // Other formats (date-time, uri, …) are not checked.
            _ => {}
        }
        let bound = |k: &str| s.get(k).and_then(Value::as_u64);
        let len = match v {
            Value::String(t) => Some((t.chars().count() as u64, "characters", "Length")),
            Value::Array(a) => Some((a.len() as u64, "items", "Items")),
            Value::Object(m) => Some((m.len() as u64, "fields", "Properties")),
            _ => None,
        };
        if let Some((n, what, suffix)) = len {
            if let Some(min) = bound(&format!("min{suffix}")) {
                if n < min {
                    self.violation(path, format!("{n} {what}, fewer than the minimum {min}"));
                }
            }
            if let Some(max) = bound(&format!("max{suffix}")) {
                if n > max {
                    self.violation(path, format!("{n} {what}, more than the maximum {max}"));
                }
            }
        }
    }

    fn list_type(&mut self, s: &serde_json::Map<String, Value>, items: &[Value], path: &str) {
        match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => {
                for (i, a) in items.iter().enumerate() {
                    if items[..i].contains(a) {
                        self.violation(&format!("{path}[{i}]"), "a duplicate in a set".into());
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = s
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut seen = BTreeSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Vec<String> = keys
                        .iter()
                        .map(|k| item.get(*k).map(|x| x.to_string()).unwrap_or_default())
                        .collect();
                    if !seen.insert(key.clone()) {
                        self.violation(
                            &format!("{path}[{i}]"),
                            format!("a second item with the key {}", key.join("/")),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn cel_rules(&mut self, s: &serde_json::Map<String, Value>, v: &Value, path: &str) {
        let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) else {
            return;
        };
        for r in rules {
            let Some(rule) = r.get("rule").and_then(Value::as_str) else {
                continue;
            };
            if rule.contains("oldSelf") {
                // A transition rule: nothing to compare with on create.
                self.report.rules_skipped.insert(rule.to_owned());
                continue;
            }
            let Ok(compiled) = self.engine.compile(rule, &["self"]) else {
                self.report.rules_skipped.insert(rule.to_owned());
                continue;
            };
            let Ok(value) = cel::to_value(v) else {
                self.report.rules_skipped.insert(rule.to_owned());
                continue;
            };
            match self
                .engine
                .eval(&compiled, &Bindings::new().with_value("self", value))
            {
                Ok(cel::Value::Bool(true)) => self.report.rules_evaluated += 1,
                Ok(cel::Value::Bool(false)) => {
                    self.report.rules_evaluated += 1;
                    let mut msg = r
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("failed rule: {rule}"));
                    if r.get("message").is_some() {
                        let _ = write!(msg, " (rule: {rule})");
                    }
                    let at = r
                        .get("fieldPath")
                        .and_then(Value::as_str)
                        .map(|f| format!("{path}{f}"))
                        .unwrap_or_else(|| path.to_owned());
                    self.violation(&at, msg);
                }
                // Not a boolean, or an evaluation error (a missing key the
                // API server's typed CEL would have handled): skipped.
                _ => {
                    self.report.rules_skipped.insert(rule.to_owned());
                }
            }
        }
    }
}

/// Fills in the schema's `default`s, as the API server does before
/// validating.
fn default(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                    for fv in m.values_mut() {
                        default(a, fv);
                    }
                }
                return;
            };
            for (k, ps) in props {
                match m.get_mut(k) {
                    Some(fv) => default(ps, fv),
                    None => {
                        if let Some(d) = ps.get("default") {
                            let mut d = d.clone();
                            default(ps, &mut d);
                            m.insert(k.clone(), d);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for item in items {
                    default(is, item);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Origin;
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "spec": {"group": "example.com", "names": {"kind": "Route"},
              "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "required": ["host"],
                  "x-kubernetes-validations": [{"rule": "self.weight <= 100", "message": "weight is a percentage"},
                                               {"rule": "isURL(self.host)"}],
                  "properties": {
                    "host": {"type": "string", "pattern": "^[a-z.]+$", "maxLength": 20},
                    "weight": {"type": "integer", "minimum": 0, "format": "int32"},
                    "mode": {"type": "string", "enum": ["a", "b"]},
                    "port": {"x-kubernetes-int-or-string": true},
                    "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                    "match": {"type": "object", "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"}},
                              "oneOf": [{"required": ["exact"]}, {"required": ["prefix"]}]}
                  }}}}}}]}
        })
    }

    fn route(spec: Value) -> MeshObject {
        MeshObject::builder(
            "x",
            "example.com/v1",
            "Route",
            "ns",
            "r",
            &Origin::default(),
        )
        .spec(spec)
        .build()
    }

    fn messages(spec: Value) -> Vec<String> {
        let mut set = SchemaSet::default();
        set.add_crd(&crd());
        set.validate(&[route(spec)])
            .violations
            .into_iter()
            .map(|v| format!("{}: {}", v.path, v.message))
            .collect()
    }

    #[test]
    fn a_valid_object_passes_and_kubernetes_only_rules_are_counted_as_skipped() {
        let mut set = SchemaSet::default();
        set.add_crd(&crd());
        let r = set.validate(&[route(json!({"host": "a.b", "weight": 5, "port": "http", "tags": ["x"], "match": {"exact": "/"}}))]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.rules_evaluated, 1);
        assert_eq!(
            r.rules_skipped.iter().collect::<Vec<_>>(),
            ["isURL(self.host)"]
        );
    }

    #[test]
    fn reports_each_broken_constraint_with_its_path() {
        let got = messages(
            json!({"host": "UPPER", "weight": 150, "mode": "c", "port": 1.5,
            "tags": ["x", "x"], "match": {"exact": "/", "prefix": "/"}, "typo": 1}),
        );
        for want in [
            "spec.host: \"UPPER\" does not match the pattern ^[a-z.]+$",
            "spec: weight is a percentage (rule: self.weight <= 100)",
            "spec.mode: \"c\" is not one of \"a\", \"b\"",
            "spec.port: expected an integer or a string, found a number",
            "spec.tags[1]: a duplicate in a set",
            "spec.match: exactly one of the schema's 2 alternatives must hold, 2 do",
            "spec.typo: unknown field: the schema has no such field (the API server would drop it silently)",
        ] {
            assert!(got.iter().any(|g| g == want), "missing {want:?} in {got:#?}");
        }
    }

    #[test]
    fn a_missing_required_field_and_a_wrong_type_are_reported() {
        let got = messages(json!({"weight": "ten"}));
        assert!(
            got.contains(&"spec: required field `host` is missing".to_owned()),
            "{got:?}"
        );
        assert!(
            got.contains(&"spec.weight: expected integer, found a string".to_owned()),
            "{got:?}"
        );
    }

    #[test]
    fn an_int32_out_of_range_is_reported() {
        let got = messages(json!({"host": "a", "weight": 5_000_000_000_i64}));
        assert!(
            got.contains(&"spec.weight: 5000000000 does not fit in int32".to_owned()),
            "{got:?}"
        );
    }

    #[test]
    fn kinds_without_a_schema_are_listed_not_passed() {
        let set = SchemaSet::default();
        let svc = MeshObject::builder("x", "v1", "Service", "ns", "s", &Origin::default()).build();
        let r = set.validate(&[svc]);
        assert_eq!(r.objects, 0);
        assert_eq!(r.no_schema.iter().collect::<Vec<_>>(), ["v1 Service"]);
    }
}
