//! Source files and positions.
//!
//! Every diagnostic points at a [`Location`]: a file of the repository and a
//! [`Span`] inside it. Lines and columns are 1-based and columns count
//! characters (not bytes), as editors and rustc do.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// A position in a source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}

impl Pos {
    pub const fn new(line: u32, col: u32) -> Self {
        Self { line, col }
    }
}

/// The start of a file, 1:1: what a finding about a whole file points at
/// (SARIF readers, code scanning among them, refuse a line 0).
impl Default for Pos {
    fn default() -> Self {
        Self::new(1, 1)
    }
}

/// A range in a source file; `end` is exclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    pub const fn new(start: Pos, end: Pos) -> Self {
        Self { start, end }
    }

    /// A span of `len` characters on one line.
    pub const fn on_line(start: Pos, len: u32) -> Self {
        Self {
            start,
            end: Pos::new(start.line, start.col + len),
        }
    }
}

/// One file of the repository, with its text kept for snippets.
#[derive(Debug)]
pub struct SourceFile {
    /// Path relative to the repository root, with `/` separators, as shown in
    /// diagnostics (stable across platforms).
    pub name: String,
    pub text: String,
    /// Where each line starts, indexed when first asked: diagnostics in a
    /// file of thousands of documents would each scan it from the top.
    line_starts: OnceLock<Box<[usize]>>,
    /// The node trees of its documents, read again to locate diagnostics
    /// in documents whose tree was not kept (see [`SourceFile::trees`]).
    trees: Mutex<Option<Arc<[crate::yaml::Node]>>>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            text: text.into(),
            line_starts: OnceLock::new(),
            trees: Mutex::new(None),
        })
    }

    /// The node trees of the file's documents, parsed the first time they
    /// are asked for and kept until [`SourceFile::forget_trees`]: locating
    /// a thousand diagnostics in one file reads it once, not a thousand
    /// times.
    pub fn trees(&self) -> Arc<[crate::yaml::Node]> {
        let mut cached = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(cached.get_or_insert_with(|| {
            crate::yaml::parse(&self.text)
                .0
                .into_iter()
                .map(|d| d.root)
                .collect()
        }))
    }

    /// Drops the trees [`SourceFile::trees`] kept.
    pub fn forget_trees(&self) {
        *self.trees.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        })
    }

    /// The byte offset of a position, if it is inside the text.
    pub fn offset(&self, pos: Pos) -> Option<usize> {
        let idx = usize::try_from(pos.line).ok()?.checked_sub(1)?;
        let line_start = *self.line_starts().get(idx)?;
        let col = usize::try_from(pos.col).ok()?.checked_sub(1)?;
        let line = &self.text[line_start..];
        let within = line
            .char_indices()
            .nth(col)
            .map(|(i, _)| i)
            .unwrap_or(line.len());
        Some(line_start + within)
    }

    /// The position of a byte offset.
    pub fn pos_at(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let starts = self.line_starts();
        // The lines starting at or before `offset`; the first starts at 0.
        let line = starts.partition_point(|&s| s <= offset);
        let line_start = starts[line - 1];
        let col = self.text[line_start..offset].chars().count() + 1;
        Pos::new(
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(col).unwrap_or(u32::MAX),
        )
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, line: u32) -> Option<&str> {
        let idx = usize::try_from(line).ok()?.checked_sub(1)?;
        let starts = self.line_starts();
        let start = *starts.get(idx)?;
        // The next line's start, less its `\n`.
        let end = starts.get(idx + 1).map_or(self.text.len(), |next| next - 1);
        let l = &self.text[start..end];
        Some(l.strip_suffix('\r').unwrap_or(l))
    }
}

/// A file and a span inside it.
#[derive(Clone, Debug)]
pub struct Location {
    pub file: Arc<SourceFile>,
    pub span: Span,
}

impl Location {
    pub fn new(file: Arc<SourceFile>, span: Span) -> Self {
        Self { file, span }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file.name, self.span.start.line, self.span.start.col
        )
    }
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        self.file.name == other.file.name && self.span == other.span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines, offsets and positions found through the line index are
    /// those of scanning the text from the top.
    #[test]
    fn the_line_index_agrees_with_scanning() {
        for text in [
            "",
            "\n",
            "a",
            "a\n",
            "a\nb",
            "a\r\nbé\r\n\nc",
            "é\n\n\nxyz\n",
        ] {
            let f = SourceFile::new("f.yaml", text);
            let lines: Vec<&str> = text.split('\n').collect();
            for (i, want) in lines.iter().enumerate() {
                let line = u32::try_from(i + 1).unwrap();
                assert_eq!(f.line(line), Some(want.strip_suffix('\r').unwrap_or(want)));
            }
            let past = u32::try_from(lines.len() + 1).unwrap();
            assert_eq!(f.line(past), None, "{text:?}");
            assert_eq!(f.line(0), None);
            for (offset, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let before = &text[..offset];
                let line = before.matches('\n').count() + 1;
                let start = before.rfind('\n').map_or(0, |i| i + 1);
                let col = text[start..offset].chars().count() + 1;
                let pos = Pos::new(line as u32, col as u32);
                assert_eq!(f.pos_at(offset), pos, "{text:?} at {offset}");
                assert_eq!(f.offset(pos), Some(offset), "{text:?} at {pos:?}");
            }
        }
    }
}
