//! Mapping a position inside a CEL expression to the file.
//!
//! An expression is a YAML scalar: plain, quoted, or a block (`|`, `>`)
//! whose lines are indented. We align the scalar's value with its raw text
//! in the file, character by character, skipping what YAML strips (quotes,
//! indentation, escape backslashes, the block header), so a column inside
//! the expression becomes the file's own line and column.

use crate::source::{SourceFile, Span};
use crate::yaml::{Node, Style};

/// The file byte offset of every character of `value`, plus one past the
/// end; `None` when the node's text cannot be found.
fn align(file: &SourceFile, node: &Node, value: &str, style: Style) -> Option<Vec<usize>> {
    let start = file.offset(node.span.start)?;
    let end = file
        .offset(node.span.end)
        .unwrap_or(file.text.len())
        .max(start);
    let raw = &file.text[start..end];
    let raw: Vec<(usize, char)> = raw.char_indices().map(|(i, c)| (start + i, c)).collect();
    let mut out = Vec::with_capacity(value.len() + 1);
    let mut i = 0;
    // A quoted scalar's span starts at its quote; a block scalar's at its
    // first content character (past the `|` header).
    if matches!(style, Style::SingleQuoted | Style::DoubleQuoted) {
        i = 1;
    }
    for vc in value.chars() {
        loop {
            let (off, rc) = *raw.get(i)?;
            if style == Style::DoubleQuoted && rc == '\\' {
                // An escape is one value character written as several.
                out.push(off);
                i += 2;
                if let Some((_, 'x' | 'u' | 'U')) = raw.get(i - 1) {
                    while raw.get(i).is_some_and(|(_, c)| c.is_ascii_hexdigit()) {
                        i += 1;
                    }
                }
                break;
            }
            let same = rc == vc || (vc == ' ' && rc == '\n' && style == Style::Folded);
            i += 1;
            if same {
                out.push(off);
                break;
            }
        }
    }
    let last = out.last().copied().unwrap_or(start);
    let tail = file.text[last..].chars().next().map_or(0, char::len_utf8);
    out.push(last + tail);
    Some(out)
}

/// The file span of characters `[start, end)` of the scalar `node`.
pub fn map_chars(file: &SourceFile, node: &Node, start: usize, end: usize) -> Span {
    let (value, style) = match &node.value {
        crate::yaml::Value::Scalar(s, st) => (&**s, *st),
        _ => return node.span,
    };
    let Some(offsets) = align(file, node, value, style) else {
        return node.span;
    };
    let s = offsets
        .get(start)
        .copied()
        .unwrap_or(*offsets.last().unwrap_or(&0));
    let e_idx = end.max(start + 1).min(offsets.len() - 1);
    // Map the last included character and step past it, so a range never
    // spills over a line break the value does not contain.
    let last = offsets.get(e_idx - 1).copied().unwrap_or(s);
    let last_len = file.text[last..].chars().next().map_or(1, char::len_utf8);
    Span::new(file.pos_at(s), file.pos_at(last + last_len))
}

/// The character offset in `value` of a 1-based line and column.
pub fn line_col_to_char(value: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (n, l) in value.split('\n').enumerate() {
        if n + 1 == line {
            return offset + (col.saturating_sub(1)).min(l.chars().count());
        }
        offset += l.chars().count() + 1;
    }
    value.chars().count()
}

/// A whole-node fallback span (first line of the node).
pub fn node_span(node: &Node) -> Span {
    let s = node.span;
    if s.end.line == s.start.line {
        s
    } else {
        Span::on_line(s.start, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use crate::yaml::{parse, Path};

    fn span_of(text: &str, path: &str, start: usize, end: usize) -> (u32, u32, u32) {
        let file = SourceFile::new("t.yaml", text);
        let (docs, errs) = parse(text);
        assert!(errs.is_empty());
        let node = docs[0].root.locate(&Path::parse(path)).clone();
        let sp = map_chars(&file, &node, start, end);
        (sp.start.line, sp.start.col, sp.end.col)
    }

    #[test]
    fn maps_into_a_plain_scalar() {
        // rule: intent.spc == 1  -> `spc` is chars 7..10
        let text = "rule: intent.spc == 1\n";
        assert_eq!(span_of(text, "rule", 7, 10), (1, 14, 17));
    }

    #[test]
    fn maps_into_a_double_quoted_scalar_with_escapes() {
        let text = "rule: \"a == \\\"x\\\" && bad\"\n";
        // value: a == "x" && bad ; `bad` at chars 12..15
        assert_eq!(span_of(text, "rule", 12, 15), (1, 22, 25));
    }

    #[test]
    fn maps_into_a_literal_block() {
        let text = "r:\n  rule: |\n    a &&\n      bogus\n";
        // value: "a &&\n  bogus\n": `bogus` at chars 7..12
        assert_eq!(span_of(text, "r.rule", 7, 12), (4, 7, 12));
    }

    #[test]
    fn maps_into_a_folded_block() {
        let text = "rule: >\n  a &&\n  bogus\n";
        // value: "a && bogus\n": `bogus` at 5..10
        assert_eq!(span_of(text, "rule", 5, 10), (3, 3, 8));
    }

    #[test]
    fn converts_line_and_column_to_a_char_offset() {
        assert_eq!(line_col_to_char("ab\ncd", 2, 2), 4);
        assert_eq!(line_col_to_char("ab", 1, 1), 0);
    }
}
