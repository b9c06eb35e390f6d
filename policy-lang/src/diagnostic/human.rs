//! rustc-style rendering: code, message, `file:line:col`, the source line
//! with a caret under the offending node, then the hint.

use std::fmt::Write as _;

use super::{Diagnostic, Summary};

/// One line, for logs and status objects:
/// `file:line:col: error[CODE]: message (hint: …)`.
pub fn one_line(d: &Diagnostic) -> String {
    let mut out = String::new();
    if let Some(loc) = &d.location {
        let _ = write!(out, "{loc}: ");
    }
    let _ = write!(out, "{}[{}]: {}", d.severity, d.code, d.message);
    if let Some(h) = &d.hint {
        let _ = write!(out, " (hint: {h})");
    }
    out
}

/// Renders one diagnostic (no colour: output is stable and diffable; the CLI
/// adds colour on a terminal).
pub fn render(d: &Diagnostic) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}[{}]: {}", d.severity, d.code, d.message);
    let Some(loc) = &d.location else {
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  = hint: {h}");
        }
        return out;
    };
    let line_no = loc.span.start.line;
    let gutter = line_no.to_string().len().max(2);
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad}--> {loc}");
    if let Some(text) = loc.file.line(line_no) {
        let text = text.replace('\t', " ");
        let start = loc.span.start.col.saturating_sub(1) as usize;
        let line_chars = text.chars().count();
        let len = if loc.span.end.line == loc.span.start.line {
            loc.span.end.col.saturating_sub(loc.span.start.col) as usize
        } else {
            line_chars.saturating_sub(start)
        }
        .max(1);
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{line_no:>gutter$} | {}", text.trim_end());
        let _ = write!(out, "{pad} | {}{}", " ".repeat(start), "^".repeat(len));
        match &d.label {
            Some(l) => {
                let _ = writeln!(out, " {l}");
            }
            None => out.push('\n'),
        }
        let _ = writeln!(out, "{pad} |");
    }
    if let Some(h) = &d.hint {
        let _ = writeln!(out, "{pad} = hint: {h}");
    }
    for r in &d.related {
        let _ = writeln!(out, "{pad} = note: {}: {}", r.location, r.message);
    }
    out
}

/// Renders all diagnostics, a blank line between them, and a summary line.
pub fn render_all(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&render(d));
        out.push('\n');
    }
    out.push_str(&summary_line(Summary::of(diags)));
    out.push('\n');
    out
}

pub fn summary_line(s: Summary) -> String {
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(s.errors, "error"),
        plural(s.warnings, "warning")
    )
}
