//! rustc-style rendering: code, message, `file:line:col`, the source line
//! with a caret under the offending node, then the hint.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::{Diagnostic, Summary};

/// Text that comes from a repository (a message a rule computes, a file
/// name, a source line) as it may reach a terminal or a CI log: control
/// characters — line breaks and escape sequences among them, which could
/// forge another diagnostic's lines or drive the terminal — and the
/// characters that reorder or break lines are escaped (`\u{1b}`).
pub fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| match unsafe_char(c) {
                true => c.escape_unicode().to_string(),
                false => c.to_string(),
            })
            .collect(),
    )
}

/// A source line, its unsafe characters each replaced by one `�` so that
/// the caret below it still lines up.
fn safe_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if unsafe_char(c) { '\u{fffd}' } else { c })
            .collect(),
    )
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One line, for logs and status objects:
/// `file:line:col: error[CODE]: message (hint: …)`.
pub fn one_line(d: &Diagnostic) -> String {
    let mut out = String::new();
    if let Some(loc) = &d.location {
        let _ = write!(out, "{}: ", safe(&loc.to_string()));
    }
    let _ = write!(
        out,
        "{}[{}]: {}",
        d.severity,
        safe(&d.code),
        safe(&d.message)
    );
    if let Some(h) = &d.hint {
        let _ = write!(out, " (hint: {})", safe(h));
    }
    out
}

/// Renders one diagnostic (no colour: output is stable and diffable; the CLI
/// adds colour on a terminal).
pub fn render(d: &Diagnostic) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}[{}]: {}",
        d.severity,
        safe(&d.code),
        safe(&d.message)
    );
    let Some(loc) = &d.location else {
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  = hint: {}", safe(h));
        }
        return out;
    };
    let line_no = loc.span.start.line;
    let gutter = line_no.to_string().len().max(2);
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad}--> {}", safe(&loc.to_string()));
    if let Some(text) = loc.file.line(line_no) {
        let text = safe_line(&text.replace('\t', " ")).into_owned();
        let start = loc.span.start.col.saturating_sub(1) as usize;
        let line_chars = text.chars().count();
        let len = if loc.span.end.line == loc.span.start.line {
            loc.span.end.col.saturating_sub(loc.span.start.col) as usize
        } else {
            line_chars.saturating_sub(start)
        }
        .max(1);
        // A long line (a 10 MB scalar) is shown around the span only.
        let (text, start, len) = window(&text, start, len);
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{line_no:>gutter$} | {}", text.trim_end());
        let _ = write!(out, "{pad} | {}{}", " ".repeat(start), "^".repeat(len));
        match &d.label {
            Some(l) => {
                let _ = writeln!(out, " {}", safe(l));
            }
            None => out.push('\n'),
        }
        let _ = writeln!(out, "{pad} |");
    }
    if let Some(h) = &d.hint {
        let _ = writeln!(out, "{pad} = hint: {}", safe(h));
    }
    for r in &d.related {
        let _ = writeln!(
            out,
            "{pad} = note: {}: {}",
            safe(&r.location.to_string()),
            safe(&r.message)
        );
    }
    out
}

/// Widest source excerpt shown, in characters.
const MAX_EXCERPT: usize = 160;

/// The part of `line` shown for a span of `len` characters at `start`: all
/// of it when short, else [`MAX_EXCERPT`] characters from a little before
/// the span, `…` marking what is cut; the span moved and cut to match.
fn window(line: &str, start: usize, len: usize) -> (String, usize, usize) {
    let chars = line.chars().count();
    if chars <= MAX_EXCERPT {
        return (line.to_owned(), start, len);
    }
    let from = start
        .saturating_sub(20)
        .min(chars.saturating_sub(MAX_EXCERPT));
    let mut shown: String = line.chars().skip(from).take(MAX_EXCERPT).collect();
    let mut start = start - from;
    if from > 0 {
        shown.insert(0, '…');
        start += 1;
    }
    if from + MAX_EXCERPT < chars {
        shown.push('…');
    }
    let len = len.min(MAX_EXCERPT.saturating_sub(start).max(1));
    (shown, start, len)
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
