//! Source files and positions.
//!
//! Every diagnostic points at a [`Location`]: a file of the repository and a
//! [`Span`] inside it. Lines and columns are 1-based and columns count
//! characters (not bytes), as editors and rustc do.

use std::fmt;
use std::sync::Arc;

/// A position in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            text: text.into(),
        })
    }

    /// The byte offset of a position, if it is inside the text.
    pub fn offset(&self, pos: Pos) -> Option<usize> {
        let idx = usize::try_from(pos.line).ok()?.checked_sub(1)?;
        let line_start = if idx == 0 {
            0
        } else {
            self.text
                .match_indices('\n')
                .nth(idx - 1)
                .map(|(i, _)| i + 1)?
        };
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
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        Pos::new(
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(col).unwrap_or(u32::MAX),
        )
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, line: u32) -> Option<&str> {
        let idx = usize::try_from(line).ok()?.checked_sub(1)?;
        self.text
            .split('\n')
            .nth(idx)
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
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
