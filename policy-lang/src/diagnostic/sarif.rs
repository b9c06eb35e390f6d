//! `--format sarif`: SARIF 2.1.0, uploadable to code scanning from CI.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Code, Diagnostic, Severity};

/// A rule's id and one-line description, for the tool's rule table.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    pub id: String,
    pub description: String,
}

/// `rules` describes codes that are not meshplan's own (built-in and
/// organisation CEL rules); meshplan's codes are always described.
pub fn render(diags: &[Diagnostic], rules: &[RuleInfo]) -> String {
    let mut table: BTreeMap<String, String> = Code::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), c.title().to_string()))
        .collect();
    for r in rules {
        table.insert(r.id.clone(), r.description.clone());
    }
    let ids: Vec<&String> = table.keys().collect();
    let driver_rules: Vec<Value> = table
        .iter()
        .map(|(id, desc)| {
            json!({
                "id": id,
                "shortDescription": { "text": desc },
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let mut r = json!({
                "ruleId": d.code,
                "level": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": { "text": match &d.hint {
                    Some(h) => format!("{} ({h})", d.message),
                    None => d.message.clone(),
                }},
            });
            if let Some(i) = ids.iter().position(|id| **id == d.code) {
                r["ruleIndex"] = json!(i);
            }
            if let Some(l) = &d.location {
                r["locations"] = json!([physical(&l.file.name, l.span)]);
            }
            if !d.related.is_empty() {
                r["relatedLocations"] = d
                    .related
                    .iter()
                    .enumerate()
                    .map(|(i, rel)| {
                        let mut p = physical(&rel.location.file.name, rel.location.span);
                        p["id"] = json!(i);
                        p["message"] = json!({ "text": rel.message });
                        p
                    })
                    .collect();
            }
            r
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "meshplan",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/meshplan/meshplan",
                "rules": driver_rules,
            }},
            "results": results,
        }],
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

fn physical(file: &str, span: crate::source::Span) -> Value {
    json!({
        "physicalLocation": {
            "artifactLocation": { "uri": file, "uriBaseId": "%SRCROOT%" },
            "region": {
                "startLine": span.start.line,
                "startColumn": span.start.col,
                "endLine": span.end.line,
                "endColumn": span.end.col,
            }
        }
    })
}
