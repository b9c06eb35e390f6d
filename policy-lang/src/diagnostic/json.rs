//! `--format json`: one object with every diagnostic and a summary.

use serde_json::{json, Value};

use super::{Diagnostic, Summary};

pub fn to_value(d: &Diagnostic) -> Value {
    let mut v = json!({
        "code": d.code,
        "severity": d.severity.as_str(),
        "message": d.message,
    });
    if let Some(l) = &d.location {
        v["file"] = json!(l.file.name);
        v["line"] = json!(l.span.start.line);
        v["column"] = json!(l.span.start.col);
        v["endLine"] = json!(l.span.end.line);
        v["endColumn"] = json!(l.span.end.col);
    }
    if let Some(h) = &d.hint {
        v["hint"] = json!(h);
    }
    if !d.related.is_empty() {
        v["related"] = d
            .related
            .iter()
            .map(|r| {
                json!({
                    "file": r.location.file.name,
                    "line": r.location.span.start.line,
                    "column": r.location.span.start.col,
                    "message": r.message,
                })
            })
            .collect();
    }
    v
}

pub fn render(diags: &[Diagnostic]) -> String {
    let s = Summary::of(diags);
    let doc = json!({
        "diagnostics": diags.iter().map(to_value).collect::<Vec<_>>(),
        "summary": { "errors": s.errors, "warnings": s.warnings },
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}
