//! A fast reader for the plain block YAML that intent files are written in.
//!
//! libyaml's scanner (`libyaml-safer`) spends most of a repository's load
//! time copying the input a character at a time. Intent files use a small
//! part of YAML: block mappings and sequences, one-line scalars, one-line
//! flow collections, comments and `---`. This reader handles exactly that
//! part and writes the same nodes onto a [`Tape`], spans included (and
//! [`Tape::trees`] builds the same [`Node`](super::Node) trees); on anything
//! else (a block or multi-line scalar, an anchor, a tag, a tab, a
//! non-ASCII character, an empty value, a duplicate key, a syntax error…)
//! it gives up and [`super::parse`] reads the file with libyaml, so
//! every diagnostic still comes from there.
//!
//! Contract, tested against libyaml on every YAML file of the project and
//! on generated and mutated documents: when [`parse`] returns documents,
//! libyaml reads the text without error into the same documents.

use super::node::{Document, Style, MAX_DEPTH, MAX_NODES};
use super::tape::{Kind, Tape, Tok};
use crate::source::{Pos, Span};

/// Reads `text`, or `None` when it is not in the subset this reader knows.
pub(super) fn parse(text: &str) -> Option<Vec<Document>> {
    let mut tape = Tape::default();
    read(text, &mut tape)?;
    Some(tape.trees(text))
}

/// Reads `text` onto `tape` (emptied first), or `None` when it is not in
/// the subset this reader knows.
pub fn read(text: &str, tape: &mut Tape) -> Option<()> {
    tape.clear();
    let b = text.as_bytes();
    // ASCII only (columns are then bytes), no control characters but `\n`
    // (so no tabs and no `\r`).
    if !plain_ascii(b) {
        return None;
    }
    let mut r = Reader {
        b,
        lines: lines(b)?,
        next: 0,
        nodes: 0,
        depth: 0,
        tape,
    };
    let mut i = 0;
    loop {
        // Consecutive markers are empty documents, which hold nothing.
        while r.lines.get(i).is_some_and(|l| l.marker) {
            i += 1;
        }
        let Some(&line) = r.lines.get(i) else {
            break;
        };
        let root = r.block_node(i, line.indent, -1)?;
        if r.lines.get(r.next).is_some_and(|l| !l.marker) {
            return None;
        }
        r.tape.docs.push(u32::try_from(root).ok()?);
        i = r.next;
    }
    Some(())
}

/// A line with content: not blank, not only a comment.
#[derive(Clone, Copy, Debug)]
struct Line {
    /// Byte offsets of the line in the text, without its `\n`.
    start: usize,
    end: usize,
    /// Leading spaces.
    indent: usize,
    /// 1-based line number.
    no: u32,
    /// A `---` document marker.
    marker: bool,
}

/// ASCII without control characters but `\n`. Checked 32 bytes at a time
/// without stopping early, so the compiler vectorises it: every byte of
/// every file passes here, and byte by byte it was a large part of the
/// reader's time.
fn plain_ascii(b: &[u8]) -> bool {
    let bad = |c: u8| ((c < 0x20) & (c != b'\n')) | (c >= 0x7f);
    let chunks = b.chunks_exact(32);
    let tail = chunks.remainder();
    chunks
        .map(|chunk| chunk.iter().fold(false, |acc, &c| acc | bad(c)))
        .chain(std::iter::once(tail.iter().any(|&c| bad(c))))
        .all(|found| !found)
}

fn lines(b: &[u8]) -> Option<Vec<Line>> {
    let mut out = Vec::with_capacity(b.len() / 16);
    let mut start = 0;
    // Line ends found with memchr (vector search), not byte by byte.
    let ends = memchr::memchr_iter(b'\n', b).chain(std::iter::once(b.len()));
    for (n, end) in ends.enumerate() {
        let raw = &b[start..end];
        let indent = raw.iter().take_while(|&&c| c == b' ').count();
        let no = u32::try_from(n + 1).ok()?;
        match raw.get(indent) {
            None | Some(b'#') => {}
            _ if raw == b"---" => out.push(Line {
                start,
                end,
                indent: 0,
                no,
                marker: true,
            }),
            // Directives, `...`, and markers with content on their line.
            _ if raw.starts_with(b"---") || raw.starts_with(b"...") || raw[0] == b'%' => {
                return None
            }
            _ => out.push(Line {
                start,
                end,
                indent,
                no,
                marker: false,
            }),
        }
        start = end + 1;
    }
    Some(out)
}

struct Reader<'a, 't> {
    b: &'a [u8],
    lines: Vec<Line>,
    /// The first line not yet read.
    next: usize,
    nodes: usize,
    /// Collections open around the current node.
    depth: usize,
    tape: &'t mut Tape,
}

impl<'a> Reader<'a, '_> {
    fn text(&self, li: usize) -> &'a [u8] {
        let l = self.lines[li];
        &self.b[l.start..l.end]
    }

    fn pos(&self, li: usize, col: usize) -> Pos {
        Pos::new(
            self.lines[li].no,
            u32::try_from(col + 1).unwrap_or(u32::MAX),
        )
    }

    fn count(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES).then_some(())
    }

    /// Pushes a node; a collection's length, end and `next` are set when
    /// it is closed.
    fn push(&mut self, tok: Tok) -> usize {
        let i = self.tape.toks.len();
        self.tape.toks.push(Tok {
            next: u32::try_from(i + 1).unwrap_or(u32::MAX),
            ..tok
        });
        i
    }

    fn open(&mut self, kind: Kind, start: Pos) -> usize {
        self.push(Tok {
            span: Span::new(start, start),
            kind,
            style: Style::Plain,
            owned: false,
            from: 0,
            to: 0,
            len: 0,
            next: 0,
        })
    }

    fn close(&mut self, at: usize, len: usize, end: Pos) {
        let next = u32::try_from(self.tape.toks.len()).unwrap_or(u32::MAX);
        let t = &mut self.tape.toks[at];
        t.len = u32::try_from(len).unwrap_or(u32::MAX);
        t.next = next;
        t.span.end = end;
    }

    fn end_of(&self, at: usize) -> Pos {
        self.tape.toks[at].span.end
    }

    /// The scalar written from column `from` to `to` of line `li`.
    fn scalar(&mut self, li: usize, from: usize, to: usize, style: Style) -> usize {
        let start = self.lines[li].start;
        let text = &self.b[start + from..start + to];
        let null =
            style == Style::Plain && matches!(text, b"" | b"~" | b"null" | b"Null" | b"NULL");
        self.push(Tok {
            span: Span::new(self.pos(li, from), self.pos(li, to)),
            kind: if null { Kind::Null } else { Kind::Scalar },
            style,
            owned: false,
            // Files are at most 16 MiB (`parse::MAX_FILE_BYTES`).
            from: u32::try_from(start + from).unwrap_or(u32::MAX),
            to: u32::try_from(start + to).unwrap_or(u32::MAX),
            len: 0,
            next: 0,
        })
    }

    /// The content line after the current one, unless a marker ends the
    /// document there.
    fn following(&self) -> Option<Line> {
        self.lines.get(self.next).filter(|l| !l.marker).copied()
    }

    /// The node at line `li`, column `col`, inside a parent indented by
    /// `parent` (-1 for a document's root).
    fn block_node(&mut self, li: usize, col: usize, parent: isize) -> Option<usize> {
        self.nested(|r| r.block_node_here(li, col, parent))
    }

    /// Reads a node one level deeper; too deep is left to libyaml (which
    /// reports it, see [`MAX_DEPTH`]).
    fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let node = read(self);
        self.depth -= 1;
        node
    }

    fn block_node_here(&mut self, li: usize, col: usize, parent: isize) -> Option<usize> {
        let s = self.text(li);
        if is_entry(s, col) {
            return self.block_seq(li, col);
        }
        if mapping_key(s, col).is_some() {
            return self.block_map(li, col);
        }
        let node = self.inline(li, col)?;
        // A deeper line would continue the scalar over several lines.
        match self.following() {
            Some(l) if l.indent as isize > parent => None,
            _ => Some(node),
        }
    }

    /// A block mapping whose first key is at line `li`, column `n`.
    fn block_map(&mut self, first: usize, n: usize) -> Option<usize> {
        self.count()?;
        let start = self.pos(first, n);
        let map = self.open(Kind::Map, start);
        let mut len = 0;
        let mut end;
        let mut li = first;
        loop {
            let s = self.text(li);
            let colon = mapping_key(s, n)?;
            self.key(li, n, colon, map, len)?;
            let c = skip_spaces(s, colon + 1);
            let value = if c == s.len() || s[c] == b'#' {
                // The value is on the following lines: deeper, or a
                // sequence at the key's own indentation.
                self.next = li + 1;
                match self.following() {
                    Some(l) if l.indent > n => self.block_node(self.next, l.indent, n as isize)?,
                    Some(l) if l.indent == n && is_entry(self.text(self.next), n) => {
                        self.block_seq(self.next, n)?
                    }
                    _ => return None,
                }
            } else {
                self.inline(li, c)?
            };
            len += 2;
            end = self.end_of(value);
            match self.following() {
                Some(l) if l.indent > n => return None,
                Some(l) if l.indent == n => {
                    if is_entry(self.text(self.next), n) {
                        return None;
                    }
                    li = self.next;
                }
                _ => break,
            }
        }
        self.close(map, len, end);
        Some(map)
    }

    /// A block sequence whose first `-` is at line `li`, column `n`.
    fn block_seq(&mut self, first: usize, n: usize) -> Option<usize> {
        self.count()?;
        let start = self.pos(first, n);
        let seq = self.open(Kind::Seq, start);
        let mut len = 0;
        let mut end;
        let mut li = first;
        loop {
            let s = self.text(li);
            let c = skip_spaces(s, n + 1);
            let item = if c == s.len() || s[c] == b'#' {
                self.next = li + 1;
                match self.following() {
                    Some(l) if l.indent > n => self.block_node(self.next, l.indent, n as isize)?,
                    _ => return None,
                }
            } else {
                // On the entry's line: `- - a`, `- key: v` or `- value`.
                self.block_node(li, c, n as isize)?
            };
            len += 1;
            end = self.end_of(item);
            match self.following() {
                Some(l) if l.indent > n => return None,
                Some(l) if l.indent == n && is_entry(self.text(self.next), n) => li = self.next,
                _ => break,
            }
        }
        self.close(seq, len, end);
        Some(seq)
    }

    /// A value that ends on its line (a scalar or a flow collection),
    /// followed by nothing but a comment; the next line becomes current.
    fn inline(&mut self, li: usize, c: usize) -> Option<usize> {
        let s = self.text(li);
        let (node, end) = self.flow_node(li, s, c, false)?;
        let after = skip_spaces(s, end);
        // A comment needs a space before its `#`.
        if after != s.len() && !(s[after] == b'#' && after > end) {
            return None;
        }
        self.next = li + 1;
        Some(node)
    }

    /// A scalar or flow collection starting at `c`; `flow` inside a flow
    /// collection. Returns the node and the offset after it.
    fn flow_node(&mut self, li: usize, s: &[u8], c: usize, flow: bool) -> Option<(usize, usize)> {
        self.count()?;
        match *s.get(c)? {
            b'[' => self.nested(|r| r.flow_seq(li, s, c)),
            b'{' => self.nested(|r| r.flow_map(li, s, c)),
            b'\'' => {
                let mut doubled = false;
                let mut i = c + 1;
                loop {
                    match *s.get(i)? {
                        b'\'' if s.get(i + 1) == Some(&b'\'') => {
                            doubled = true;
                            i += 2;
                        }
                        b'\'' => break,
                        _ => i += 1,
                    }
                }
                let node = self.scalar(li, c + 1, i, Style::SingleQuoted);
                let span = Span::new(self.pos(li, c), self.pos(li, i + 1));
                let t = &mut self.tape.toks[node];
                t.span = span;
                if doubled {
                    // The text with each `''` undone, kept beside the tape.
                    let text = String::from_utf8_lossy(&s[c + 1..i]).replace("''", "'");
                    t.owned = true;
                    t.from = u32::try_from(self.tape.owned.len()).unwrap_or(u32::MAX);
                    self.tape.owned.push(text);
                }
                Some((node, i + 1))
            }
            b'"' => {
                let close = c + 1 + s[c + 1..].iter().position(|&ch| ch == b'"')?;
                if s[c + 1..close].contains(&b'\\') {
                    return None;
                }
                let node = self.scalar(li, c + 1, close, Style::DoubleQuoted);
                self.tape.toks[node].span = Span::new(self.pos(li, c), self.pos(li, close + 1));
                Some((node, close + 1))
            }
            first => {
                let next = s.get(c + 1).copied();
                let starts = match first {
                    b'-' => next.is_some_and(|ch| ch != b' '),
                    _ => !INDICATORS.contains(&first),
                };
                if !starts {
                    return None;
                }
                let mut i = c;
                let mut end = c;
                while i < s.len() {
                    let ch = s[i];
                    if ch == b'#' && s[i - 1] == b' ' {
                        break;
                    }
                    if ch == b':' {
                        match s.get(i + 1) {
                            None | Some(b' ') => return None,
                            Some(b',' | b'[' | b']' | b'{' | b'}') if flow => return None,
                            _ => {}
                        }
                    }
                    if flow && matches!(ch, b',' | b']' | b'}') {
                        break;
                    }
                    if flow && matches!(ch, b'[' | b'{') {
                        return None;
                    }
                    if ch != b' ' {
                        end = i + 1;
                    }
                    i += 1;
                }
                if flow && i == s.len() {
                    return None;
                }
                Some((self.scalar(li, c, end, Style::Plain), end))
            }
        }
    }

    fn flow_seq(&mut self, li: usize, s: &[u8], c: usize) -> Option<(usize, usize)> {
        let seq = self.open(Kind::Seq, self.pos(li, c));
        let mut len = 0;
        let close = self.flow_items(s, c, b']', |r, i| {
            let (_, end) = r.flow_node(li, s, i, true)?;
            len += 1;
            Some(end)
        })?;
        self.close(seq, len, self.pos(li, close + 1));
        Some((seq, close + 1))
    }

    fn flow_map(&mut self, li: usize, s: &[u8], c: usize) -> Option<(usize, usize)> {
        let map = self.open(Kind::Map, self.pos(li, c));
        let mut len = 0;
        let close = self.flow_items(s, c, b'}', |r, i| {
            let colon = mapping_key(s, i)?;
            r.key(li, i, colon, map, len)?;
            let (_, end) = r.flow_node(li, s, skip_spaces(s, colon + 1), true)?;
            len += 2;
            Some(end)
        })?;
        self.close(map, len, self.pos(li, close + 1));
        Some((map, close + 1))
    }

    /// The items of the flow collection opened at `c`, each read by `item`
    /// (which returns the offset after it), separated by commas: the offset
    /// of the `close` bracket. A trailing comma is left to libyaml.
    fn flow_items(
        &mut self,
        s: &[u8],
        c: usize,
        close: u8,
        mut item: impl FnMut(&mut Self, usize) -> Option<usize>,
    ) -> Option<usize> {
        let mut i = skip_spaces(s, c + 1);
        if s.get(i) == Some(&close) {
            return Some(i);
        }
        loop {
            i = skip_spaces(s, item(self, i)?);
            match *s.get(i)? {
                b',' => {
                    i = skip_spaces(s, i + 1);
                    if s.get(i) == Some(&close) {
                        return None;
                    }
                }
                ch if ch == close => return Some(i),
                _ => return None,
            }
        }
    }

    /// The key from `c` to its `:` at `colon`, unless the mapping at `map`
    /// (`len` children so far) has it. Keys are compared one by one, so a
    /// mapping of more than [`MAX_SCANNED_KEYS`] is left to libyaml, which
    /// hashes them.
    fn key(&mut self, li: usize, c: usize, colon: usize, map: usize, len: usize) -> Option<()> {
        if len / 2 >= MAX_SCANNED_KEYS {
            return None;
        }
        self.count()?;
        let key = self.scalar(li, c, colon, Style::Plain);
        let name = |t: &Tok| match t.kind {
            Kind::Scalar => &self.b[t.from as usize..t.to as usize],
            _ => b"",
        };
        let toks = &self.tape.toks;
        let mut at = map + 1;
        for _ in 0..len / 2 {
            if name(&toks[at]) == name(&toks[key]) {
                return None;
            }
            at = toks[toks[at].next as usize].next as usize;
        }
        Some(())
    }
}

/// Characters a plain scalar may not start with (`-` is decided apart).
const INDICATORS: &[u8] = b"?:,[]{}#&*!|>'\"%@` ";

/// Most keys of one mapping this reader checks for duplicates.
const MAX_SCANNED_KEYS: usize = 32;

/// Longest key read here; libyaml refuses implicit keys over 1,024.
const MAX_KEY: usize = 512;

fn skip_spaces(s: &[u8], mut i: usize) -> usize {
    while s.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// `-` followed by a space or the line's end: a block sequence entry.
fn is_entry(s: &[u8], c: usize) -> bool {
    s.get(c) == Some(&b'-') && matches!(s.get(c + 1), None | Some(b' '))
}

/// A simple key at `c` followed by `:` and a space or the line's end: the
/// offset of the `:`.
fn mapping_key(s: &[u8], c: usize) -> Option<usize> {
    let key_char = |ch: u8| ch.is_ascii_alphanumeric() || matches!(ch, b'_' | b'.' | b'/' | b'-');
    let first = *s.get(c)?;
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return None;
    }
    let len = s[c..].iter().take_while(|&&ch| key_char(ch)).count();
    let colon = c + len;
    let ends = s.get(colon) == Some(&b':') && matches!(s.get(colon + 1), None | Some(b' '));
    (ends && len <= MAX_KEY).then_some(colon)
}

#[cfg(test)]
mod tests;
