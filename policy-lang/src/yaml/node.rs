//! A YAML document as a tree of [`Node`]s, each with the [`Span`] it was
//! written at.
//!
//! We build our own tree from the parser's events (instead of deserializing
//! straight from the text) because diagnostics need the position of *any*
//! node long after deserialization: a semantic error such as "weight 150" is
//! found on the typed model, then located by its path (`spec.rollout.steps[1]
//! .weight`) in this tree.
//!
//! This file holds the tree, its paths and the limits every reader keeps
//! to; `events.rs` builds it from libyaml's events, `fast.rs` from plain
//! block YAML.

use crate::source::Span;

/// How a scalar was written; needed to map positions inside it (CEL
/// expressions) back to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing at all.
    Null,
    // Boxed text and slices, not `String` and `Vec`: a repository keeps
    // every document's tree (to locate diagnostics), and these make a node
    // 40 bytes instead of 48, with no spare capacity.
    Scalar(Box<str>, Style),
    Seq(Box<[Node]>),
    /// Entries in source order; keys are scalars (complex keys are rejected).
    Map(Box<[(Node, Node)]>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

/// One segment of a path into a document.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into a document, such as `spec.rollout.steps[1].weight`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses the dotted form; `[n]` selects a sequence item.
    pub fn parse(s: &str) -> Self {
        let mut segs = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(i) = rest.find('[') {
                if i > 0 {
                    segs.push(Seg::Key(rest[..i].to_string()));
                }
                rest = &rest[i..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let Some(end) = stripped.find(']') else { break };
                    match stripped[..end].parse() {
                        Ok(n) => segs.push(Seg::Index(n)),
                        Err(_) => segs.push(Seg::Key(stripped[..end].to_string())),
                    }
                    rest = &stripped[end + 1..];
                }
            } else {
                segs.push(Seg::Key(rest.to_string()));
            }
        }
        Self(segs)
    }

    pub fn key(&self, k: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.into()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key node of an entry (to point at `retires:` itself).
    pub fn get_key(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, _)| k),
            _ => None,
        }
    }

    /// The node at exactly `path`.
    pub fn find(&self, path: &Path) -> Option<&Node> {
        let mut node = self;
        for seg in &path.0 {
            node = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(_)) => node.get(k)?,
                (Seg::Index(i), Value::Seq(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The node at `path`, or the deepest existing ancestor on the way
    /// (a defaulted field has no node of its own: point at its parent).
    pub fn locate(&self, path: &Path) -> &Node {
        let mut node = self;
        for seg in &path.0 {
            let next = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(_)) => node.get(k),
                (Seg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// Like [`Node::locate`], but the key of the last segment when it is a
    /// map key (for errors about the key, e.g. a duplicate name).
    pub fn locate_key(&self, path: &Path) -> &Node {
        if let Some((Seg::Key(k), parent)) = path.0.split_last() {
            let parent_node = self.locate(&Path(parent.to_vec()));
            if let Some(key) = parent_node.get_key(k) {
                return key;
            }
        }
        self.locate(path)
    }
}

/// A parsed document.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub root: Node,
    /// 0-based index of the document in its file.
    pub index: usize,
}

/// What went wrong building the tree.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeError {
    pub kind: TreeErrorKind,
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeErrorKind {
    Syntax,
    DuplicateKey,
    ComplexKey,
    TooLarge,
    TooDeep,
}

/// More nodes than any intent repository needs; stops alias bombs.
pub const MAX_NODES: usize = 2_000_000;

/// Deeper nesting than any intent or Kubernetes object needs (intents nest
/// about 8 deep). The tree is built, checked and dropped recursively: the
/// limit keeps `[[[[…` from overflowing the stack.
pub const MAX_DEPTH: usize = 64;

/// A scalar's value: the plain spellings of null are [`Value::Null`].
pub(super) fn scalar_value(value: String, style: Style) -> Value {
    if style == Style::Plain && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL") {
        Value::Null
    } else {
        Value::Scalar(value.into_boxed_str(), style)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::source::Pos;
    use crate::yaml::parse;

    /// The tree of `text`'s one document, which must read without error.
    pub(in crate::yaml) fn one(text: &str) -> Node {
        let (docs, errs) = parse(text);
        assert!(errs.is_empty(), "{errs:?}");
        docs.into_iter().next().expect("a document").root
    }

    #[test]
    fn scalar_spans_point_at_the_value() {
        let root = one("a:\n  b: hello\n");
        let b = root.locate(&Path::parse("a.b"));
        assert_eq!(b.as_str(), Some("hello"));
        assert_eq!(b.span.start, Pos::new(2, 6));
    }

    #[test]
    fn locate_falls_back_to_the_nearest_ancestor() {
        let root = one("spec:\n  steps:\n    - weight: 10\n");
        let n = root.locate(&Path::parse("spec.steps[0].pause"));
        assert_eq!(n.span.start, Pos::new(3, 7));
        let w = root.locate(&Path::parse("spec.steps[0].weight"));
        assert_eq!(w.as_str(), Some("10"));
    }

    /// Every document's tree is kept: a node's size is its memory.
    #[test]
    fn a_node_takes_40_bytes() {
        assert_eq!(std::mem::size_of::<Node>(), 40);
    }

    #[test]
    fn path_round_trips_through_display() {
        let p = Path::parse("spec.rollout.steps[2].weight");
        assert_eq!(p.to_string(), "spec.rollout.steps[2].weight");
        assert_eq!(p.0[3], Seg::Index(2));
    }
}
