//! The fast reader's output: every node of a file in document order, in
//! one flat list ("tape") that is reused from file to file.
//!
//! A [`Node`] tree costs an allocation per scalar and per collection, and
//! freeing them all again; for the one-service files most repositories are
//! made of, the typed intent can be read straight from the tape instead
//! ([`super::de::from_node`] reads either), and a tree is built only when a diagnostic
//! must be located in the file (it is read again then). [`Tape::trees`]
//! builds the same tree the reader used to build, for every other file.

use super::node::{Document, Node, Style, Value};
use super::tree::{Shape, Tree};
use crate::source::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Scalar,
    Seq,
    Map,
}

/// One node. A collection's children follow it (a mapping's keys and
/// values alternate), and `next` is the index after its last descendant.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tok {
    pub span: Span,
    pub kind: Kind,
    pub style: Style,
    /// A scalar's text: bytes `from..to` of the file, or `owned[from]`
    /// (a single-quoted scalar with a doubled quote).
    pub owned: bool,
    pub from: u32,
    pub to: u32,
    /// A collection's children (twice its entries for a mapping).
    pub len: u32,
    pub next: u32,
}

/// The nodes of one file's documents.
#[derive(Debug, Default)]
pub struct Tape {
    pub(super) toks: Vec<Tok>,
    pub(super) owned: Vec<String>,
    /// Each document's root.
    pub(super) docs: Vec<u32>,
}

impl Tape {
    pub(super) fn clear(&mut self) {
        self.toks.clear();
        self.owned.clear();
        self.docs.clear();
    }

    /// How many documents the file holds.
    pub fn documents(&self) -> usize {
        self.docs.len()
    }

    /// Every document as a [`Node`] tree; `text` is the file the tape was
    /// read from.
    pub fn trees(&self, text: &str) -> Vec<Document> {
        (0..self.docs.len())
            .filter_map(|d| self.root(text, d))
            .enumerate()
            .map(|(index, root)| Document {
                root: root.node(),
                index,
            })
            .collect()
    }

    /// Document `doc`'s root, read from `text` (the file the tape was
    /// read from).
    pub fn root<'a>(&'a self, text: &'a str, doc: usize) -> Option<TapeNode<'a>> {
        let i = *self.docs.get(doc)?;
        Some(TapeNode {
            tape: self,
            text,
            tok: self.toks.get(i as usize)?,
            i,
        })
    }
}

/// A node of a [`Tape`], with the text it was read from.
#[derive(Clone, Copy, Debug)]
pub struct TapeNode<'a> {
    tape: &'a Tape,
    text: &'a str,
    tok: &'a Tok,
    i: u32,
}

impl<'a> TapeNode<'a> {
    fn tok(&self) -> &'a Tok {
        self.tok
    }

    /// The node at index `i` of the tape (the tape is well formed: its
    /// indices are in range; a node stands in when not).
    fn at(&self, i: u32) -> Self {
        TapeNode {
            tok: self.tape.toks.get(i as usize).unwrap_or(self.tok),
            i,
            ..*self
        }
    }

    fn scalar_text(&self) -> &'a str {
        let t = self.tok();
        if t.owned {
            self.tape
                .owned
                .get(t.from as usize)
                .map_or("", String::as_str)
        } else {
            // The fast reader reads ASCII only: every offset is a character
            // boundary.
            self.text
                .get(t.from as usize..t.to as usize)
                .unwrap_or_default()
        }
    }

    fn children(&self) -> Children<'a> {
        Children {
            node: self.at(self.i + 1),
            left: self.tok().len as usize,
        }
    }

    /// A scalar's text.
    pub fn as_str(&self) -> Option<&'a str> {
        match self.tok().kind {
            Kind::Scalar => Some(self.scalar_text()),
            _ => None,
        }
    }

    /// The value of the mapping entry `key`, when this is a mapping.
    pub fn get(&self, key: &str) -> Option<TapeNode<'a>> {
        match self.shape() {
            Shape::Map(mut entries) => {
                entries.find_map(|(k, v)| (k.as_str() == Some(key)).then_some(v))
            }
            _ => None,
        }
    }

    /// The node as a [`Node`] tree.
    pub fn node(&self) -> Node {
        let value = match self.shape() {
            Shape::Null => Value::Null,
            Shape::Scalar(s, style) => Value::Scalar(s.into(), style),
            Shape::Seq(items) => Value::Seq(items.map(|n| n.node()).collect()),
            Shape::Map(entries) => Value::Map(entries.map(|(k, v)| (k.node(), v.node())).collect()),
        };
        Node {
            span: self.span(),
            value,
        }
    }
}

/// The children of a collection of a [`Tape`], in order.
#[derive(Clone, Debug)]
pub struct Children<'a> {
    node: TapeNode<'a>,
    left: usize,
}

impl<'a> Iterator for Children<'a> {
    type Item = TapeNode<'a>;

    fn next(&mut self) -> Option<TapeNode<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let here = self.node;
        if self.left > 0 {
            self.node = here.at(here.tok().next);
        }
        Some(here)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// A mapping's entries of a [`Tape`]: its children two by two.
#[derive(Clone, Debug)]
pub struct Entries<'a>(Children<'a>);

impl<'a> Iterator for Entries<'a> {
    type Item = (TapeNode<'a>, TapeNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        Some((self.0.next()?, self.0.next()?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.left / 2;
        (n, Some(n))
    }
}

impl<'a> Tree<'a> for TapeNode<'a> {
    type Items = Children<'a>;
    type Entries = Entries<'a>;

    fn span(self) -> Span {
        self.tok().span
    }

    fn shape(self) -> Shape<'a, Self> {
        match self.tok().kind {
            Kind::Null => Shape::Null,
            Kind::Scalar => Shape::Scalar(self.scalar_text(), self.tok().style),
            Kind::Seq => Shape::Seq(self.children()),
            Kind::Map => Shape::Map(Entries(self.children())),
        }
    }
}
