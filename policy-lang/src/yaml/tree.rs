//! What the deserializer reads: a node of a [`Node`] tree, or of the fast
//! reader's tape ([`super::tape`]), behind one trait, so the tape is read
//! without building a tree.

use super::node::{Node, Style, Value};
use crate::source::Span;

/// A node the deserializer reads: a [`Node`] of a tree, or a node of the
/// fast reader's tape (read without building a tree).
pub trait Tree<'a>: Copy {
    type Items: Iterator<Item = Self>;
    type Entries: Iterator<Item = (Self, Self)> + Clone;
    fn span(self) -> Span;
    fn shape(self) -> Shape<'a, Self>;
}

/// What a [`Tree`] node holds.
#[derive(Debug)]
pub enum Shape<'a, T: Tree<'a>> {
    Null,
    Scalar(&'a str, Style),
    Seq(T::Items),
    Map(T::Entries),
}

impl<'a> Tree<'a> for &'a Node {
    type Items = std::slice::Iter<'a, Node>;
    type Entries = std::iter::Map<std::slice::Iter<'a, (Node, Node)>, Pair<'a>>;
    fn span(self) -> Span {
        self.span
    }
    fn shape(self) -> Shape<'a, Self> {
        match &self.value {
            Value::Null => Shape::Null,
            Value::Scalar(s, style) => Shape::Scalar(s, *style),
            Value::Seq(items) => Shape::Seq(items.iter()),
            Value::Map(entries) => Shape::Map(entries.iter().map(pair as Pair<'a>)),
        }
    }
}

type Pair<'a> = fn(&'a (Node, Node)) -> (&'a Node, &'a Node);

fn pair((k, v): &(Node, Node)) -> (&Node, &Node) {
    (k, v)
}
