//! The [`Node`] tree of a YAML stream built from the events of
//! `libyaml-safer`: anchors and aliases, duplicate and complex keys, tags
//! refused, the [`MAX_NODES`] and [`MAX_DEPTH`] limits, syntax errors with
//! a position, and parser panics turned into errors.
//!
//! Kept apart from `node.rs` because it is one of the tree's two readers
//! (with `fast.rs`) and the only code that knows libyaml: the tree itself
//! does not depend on how it was read. Imports run one way, from here to
//! `node`.

use libyaml_safer::{Event, EventData, MappingStyle, Mark, Parser, ScalarStyle, SequenceStyle};

use super::node::{
    scalar_value, Document, Node, Style, TreeError, TreeErrorKind, Value, MAX_DEPTH, MAX_NODES,
};
use crate::source::{Pos, Span};

/// Parses every document of `text` with libyaml.
pub(super) fn with_libyaml(text: &str) -> (Vec<Document>, Vec<TreeError>) {
    // libyaml-safer still has `panic!("TODO")`s on a few malformed inputs
    // (a tag followed by `,` in a flow collection: `{!,`). Bad input must
    // be a diagnostic, never a crash: such a panic becomes a syntax error
    // at the start of the file, and is kept off stderr (`quiet_panics`).
    quiet_panics::install();
    let result = std::panic::catch_unwind(|| quiet_panics::during(|| parse_events(text)));
    result.unwrap_or_else(|_| {
        (
            Vec::new(),
            vec![TreeError {
                kind: TreeErrorKind::Syntax,
                span: Span::on_line(Pos::new(1, 1), 1),
                message: "the YAML parser cannot read this file (it fails on a construct \
                          such as a tag inside a flow collection); check its syntax with a \
                          YAML linter"
                    .into(),
            }],
        )
    })
}

/// A panic hook that stays silent for panics caught while parsing on this
/// thread, and defers to the previous hook for every other panic.
mod quiet_panics {
    use std::cell::Cell;
    use std::sync::Once;

    thread_local! {
        static PARSING: Cell<bool> = const { Cell::new(false) };
    }

    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !PARSING.with(Cell::get) {
                    previous(info);
                }
            }));
        });
    }

    pub fn during<T>(f: impl FnOnce() -> T) -> T {
        struct Reset(bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                PARSING.with(|p| p.set(self.0));
            }
        }
        let _reset = Reset(PARSING.with(|p| p.replace(true)));
        f()
    }
}

fn parse_events(text: &str) -> (Vec<Document>, Vec<TreeError>) {
    let mut input = text.as_bytes();
    let mut parser = Parser::new();
    parser.set_input_string(&mut input);
    let mut builder = Builder {
        parser,
        anchors: Vec::new(),
        nodes: 0,
        depth: 0,
        errors: Vec::new(),
    };
    let mut docs = Vec::new();
    loop {
        match builder.next() {
            Ok(Event {
                data: EventData::DocumentStart { .. },
                ..
            }) => match builder.node_or_end() {
                // An empty document (a trailing `---`) holds nothing.
                Ok(Some(root)) if root.value == Value::Null => builder.anchors.clear(),
                Ok(Some(root)) => {
                    let index = docs.len();
                    docs.push(Document { root, index });
                    builder.anchors.clear();
                }
                Ok(None) => {}
                Err(e) => {
                    builder.errors.push(e);
                    break;
                }
            },
            Ok(Event {
                data: EventData::StreamEnd,
                ..
            }) => break,
            Ok(_) => {}
            Err(e) => {
                builder.errors.push(e);
                break;
            }
        }
    }
    // libyaml's reader reports a character YAML forbids without saying
    // where: point at the first one.
    for e in &mut builder.errors {
        if e.message.contains("control characters") {
            if let Some(at) = first_forbidden(text) {
                e.span = Span::on_line(at, 1);
            }
        }
    }
    (docs, builder.errors)
}

/// Where the first character YAML does not allow in a stream stands: C0
/// controls but tab and line breaks, DEL, C1 controls but NEL, and the
/// two non-characters.
fn first_forbidden(text: &str) -> Option<Pos> {
    let (mut line, mut col) = (1u32, 1u32);
    for c in text.chars() {
        let forbidden = matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}');
        if forbidden {
            return Some(Pos::new(line, col));
        }
        if c == '\n' {
            (line, col) = (line.saturating_add(1), 1);
        } else {
            col = col.saturating_add(1);
        }
    }
    None
}

struct Builder<'r, 'b> {
    parser: Parser<&'b mut &'r [u8]>,
    anchors: Vec<(String, Node)>,
    nodes: usize,
    /// Collections open around the current node.
    depth: usize,
    errors: Vec<TreeError>,
}

fn pos(m: Mark) -> Pos {
    Pos::new(
        u32::try_from(m.line + 1).unwrap_or(u32::MAX),
        u32::try_from(m.column + 1).unwrap_or(u32::MAX),
    )
}

fn span(ev: &Event) -> Span {
    Span::new(pos(ev.start_mark), pos(ev.end_mark))
}

fn syntax_error(e: &libyaml_safer::Error) -> TreeError {
    let p = e.problem_mark().map(pos).unwrap_or(Pos::new(1, 1));
    let message = match e.context() {
        Some(context) => format!("{context}, {}", e.problem()),
        None => e.problem().to_string(),
    };
    TreeError {
        kind: TreeErrorKind::Syntax,
        span: Span::on_line(p, 1),
        message,
    }
}

impl Builder<'_, '_> {
    fn next(&mut self) -> Result<Event, TreeError> {
        self.parser.parse().map_err(|e| syntax_error(&e))
    }

    /// The document's root node, or `None` for an empty document.
    fn node_or_end(&mut self) -> Result<Option<Node>, TreeError> {
        let ev = self.next()?;
        if matches!(ev.data, EventData::DocumentEnd { .. }) {
            return Ok(None);
        }
        let node = self.node(ev)?;
        // Consume the DocumentEnd.
        let ev = self.next()?;
        match ev.data {
            EventData::DocumentEnd { .. } | EventData::StreamEnd => {}
            _ => {
                return Err(TreeError {
                    kind: TreeErrorKind::Syntax,
                    span: span(&ev),
                    message: "unexpected content after the document".into(),
                })
            }
        }
        Ok(Some(node))
    }

    fn count(&mut self, sp: Span) -> Result<(), TreeError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(TreeError {
                kind: TreeErrorKind::TooLarge,
                span: sp,
                message: format!(
                    "document expands to more than {MAX_NODES} nodes (alias expansion?)"
                ),
            });
        }
        Ok(())
    }

    /// A collection's node: built one level deeper, within [`MAX_DEPTH`].
    fn nested(&mut self, ev: Event) -> Result<Node, TreeError> {
        if self.depth >= MAX_DEPTH {
            return Err(TreeError {
                kind: TreeErrorKind::TooDeep,
                span: span(&ev),
                message: format!("collections nested more than {MAX_DEPTH} deep"),
            });
        }
        self.depth += 1;
        let node = self.node(ev);
        self.depth -= 1;
        node
    }

    fn node(&mut self, ev: Event) -> Result<Node, TreeError> {
        let start = span(&ev);
        match ev.data {
            EventData::Scalar { tag: Some(tag), .. }
            | EventData::SequenceStart { tag: Some(tag), .. }
            | EventData::MappingStart { tag: Some(tag), .. } => Err(TreeError {
                kind: TreeErrorKind::Syntax,
                span: start,
                // A tag would change what a value is (`!!str 80` is the
                // string "80") where meshplan reads it by its field.
                message: format!(
                    "YAML tags are not supported (`{tag}`): write the value as its field expects, quoted for a string"
                ),
            }),
            EventData::Scalar {
                value,
                style,
                anchor,
                ..
            } => {
                self.count(start)?;
                let style = match style {
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                    _ => Style::Plain,
                };
                let node = Node {
                    span: start,
                    value: scalar_value(value, style),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            EventData::SequenceStart { anchor, style, .. } => {
                self.count(start)?;
                let mut items = Vec::new();
                let end = loop {
                    let ev = self.next()?;
                    if matches!(ev.data, EventData::SequenceEnd) {
                        break ev;
                    }
                    items.push(self.nested(ev)?);
                };
                let end = collection_end(style == SequenceStyle::Flow, &end, items.last());
                let node = Node {
                    span: Span::new(start.start, end),
                    value: Value::Seq(items.into_boxed_slice()),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            EventData::MappingStart { anchor, style, .. } => {
                self.count(start)?;
                let mut entries: Vec<(Node, Node)> = Vec::new();
                let mut keys = Keys::default();
                let end = loop {
                    let ev = self.next()?;
                    if matches!(ev.data, EventData::MappingEnd) {
                        break ev;
                    }
                    let key = self.nested(ev)?;
                    let ev = self.next()?;
                    let value = self.nested(ev)?;
                    match &key.value {
                        Value::Scalar(..) | Value::Null => {}
                        _ => {
                            self.errors.push(TreeError {
                                kind: TreeErrorKind::ComplexKey,
                                span: key.span,
                                message: "mapping keys must be plain strings".into(),
                            });
                            continue;
                        }
                    }
                    let name = key.as_str().unwrap_or("");
                    if let Some(first) = keys.first(name, &entries) {
                        self.errors.push(TreeError {
                            kind: TreeErrorKind::DuplicateKey,
                            span: key.span,
                            message: format!(
                                "duplicate key `{name}` (first defined at line {})",
                                entries[first].0.span.start.line
                            ),
                        });
                        continue;
                    }
                    entries.push((key, value));
                    keys.added(&entries);
                };
                let end = collection_end(
                    style == MappingStyle::Flow,
                    &end,
                    entries.last().map(|(_, v)| v),
                );
                let node = Node {
                    span: Span::new(start.start, end),
                    value: Value::Map(entries.into_boxed_slice()),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            EventData::Alias { anchor } => {
                let Some(node) = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == anchor)
                    .map(|(_, n)| n.clone())
                else {
                    return Err(TreeError {
                        kind: TreeErrorKind::Syntax,
                        span: start,
                        message: format!("alias `*{anchor}` names no anchor defined before it"),
                    });
                };
                // An alias costs as many nodes as it expands to.
                let n = count_nodes(&node);
                self.nodes += n.saturating_sub(1);
                self.count(start)?;
                Ok(node)
            }
            _ => Err(TreeError {
                kind: TreeErrorKind::Syntax,
                span: start,
                message: "unexpected YAML event".into(),
            }),
        }
    }

    fn remember(&mut self, anchor: Option<String>, node: &Node) {
        if let Some(anchor) = anchor {
            self.anchors.push((anchor, node.clone()));
        }
    }
}

/// The keys of one mapping, to find a duplicate: scanned while they are
/// few, hashed beyond, so that a mapping of 100,000 keys is checked in
/// linear time.
#[derive(Default)]
struct Keys {
    hashed: Option<std::collections::HashMap<Box<str>, usize>>,
}

impl Keys {
    const SCANNED: usize = 16;

    /// The index of the entry that has `name` already.
    fn first(&self, name: &str, entries: &[(Node, Node)]) -> Option<usize> {
        match &self.hashed {
            Some(h) => h.get(name).copied(),
            None => entries
                .iter()
                .position(|(k, _)| k.as_str().unwrap_or("") == name),
        }
    }

    /// Takes in the last of `entries` (all distinct).
    fn added(&mut self, entries: &[(Node, Node)]) {
        let name = |k: &Node| -> Box<str> { k.as_str().unwrap_or("").into() };
        match &mut self.hashed {
            Some(h) => {
                if let Some((i, (k, _))) = entries.iter().enumerate().next_back() {
                    h.insert(name(k), i);
                }
            }
            None if entries.len() > Self::SCANNED => {
                let all = entries.iter().enumerate().map(|(i, (k, _))| (name(k), i));
                self.hashed = Some(all.collect());
            }
            None => {}
        }
    }
}

/// Where a collection ends: a flow collection at its closing bracket; a
/// block collection with its last item (the parser marks a block's end at
/// whatever follows it, possibly lines further down).
fn collection_end(flow: bool, end: &Event, last: Option<&Node>) -> Pos {
    let closing = pos(end.end_mark);
    match last {
        Some(last) if !flow => last.span.end,
        Some(last) => closing.max(last.span.end),
        None => closing,
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(e) => {
            1 + e
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// Through [`crate::yaml::parse`], so the fast reader is held to the same
/// answers wherever it reads the input itself.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::node::tests::one;
    use crate::yaml::{parse, Path};

    #[test]
    fn reports_duplicate_keys_at_the_second_key() {
        let (_, errs) = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].kind, TreeErrorKind::DuplicateKey);
        assert_eq!(errs[0].span.start, Pos::new(3, 1));
    }

    #[test]
    fn keeps_every_document_of_a_stream() {
        let (docs, errs) = parse("a: 1\n---\nb: 2\n---\n");
        assert!(errs.is_empty());
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].root.get("b").and_then(Node::as_str), Some("2"));
    }

    #[test]
    fn reports_syntax_errors_with_a_position() {
        let (_, errs) = parse("a: [1, 2\nb: 3\n");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].kind, TreeErrorKind::Syntax);
    }

    #[test]
    fn stops_alias_bombs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (_, errs) = parse(&text);
        assert!(
            errs.iter().any(|e| e.kind == TreeErrorKind::TooLarge),
            "{errs:?}"
        );
    }

    #[test]
    fn a_parser_panic_is_a_syntax_error_not_a_crash() {
        for text in ["{!,", "a: [!, b]\n"] {
            let (docs, errs) = parse(text);
            assert!(docs.is_empty());
            assert_eq!(errs.len(), 1, "{text}: {errs:?}");
            assert_eq!(errs[0].kind, TreeErrorKind::Syntax);
            assert!(
                errs[0].message.contains("cannot read this file"),
                "{errs:?}"
            );
        }
        // Other panics on this thread still reach the hook chain.
        assert!(std::panic::catch_unwind(|| panic!("elsewhere")).is_err());
    }

    /// Nesting is bounded in both readers, block and flow: an error at the
    /// first collection too deep, never a stack overflow.
    #[test]
    fn nesting_deeper_than_the_limit_is_an_error() {
        let flow = "[".repeat(10_000);
        let nested_maps = format!("spec: {}1{}\n", "{a: ".repeat(10_000), "}".repeat(10_000));
        let block: String = (0..10_000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>()
            + &" ".repeat(10_000)
            + "v\n";
        for text in [flow, nested_maps, block] {
            let (_, errs) = parse(&text);
            let deep = errs.iter().find(|e| e.kind == TreeErrorKind::TooDeep);
            let deep = deep.unwrap_or_else(|| panic!("{errs:?}"));
            assert!(deep.message.contains("64"), "{deep:?}");
        }
        // At the limit, a document reads.
        let at_limit = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&at_limit).1.is_empty());
    }

    /// Past the keys compared one by one, duplicates are still found (by
    /// hashing), in both readers.
    #[test]
    fn duplicate_keys_are_found_in_large_mappings() {
        let mut text: String = (0..1_000).map(|i| format!("k{i}: v\n")).collect();
        text.push_str("k3: again\n");
        let flow: Vec<String> = (0..1_000).map(|i| format!("k{i}: v")).collect();
        let flow = format!("{}\n{{{}, k3: again}}\n", "\n".repeat(999), flow.join(", "));
        for text in [text, flow] {
            let (_, errs) = parse(&text);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].kind, TreeErrorKind::DuplicateKey);
            assert_eq!(errs[0].span.start.line, 1_001);
            assert!(errs[0].message.contains("`k3`"), "{errs:?}");
        }
        let distinct: String = (0..1_000).map(|i| format!("k{i}: v\n")).collect();
        assert_eq!(one(&distinct).get("k999").and_then(Node::as_str), Some("v"));
    }

    /// A character YAML forbids is reported where it stands.
    #[test]
    fn a_forbidden_character_is_reported_where_it_stands() {
        for (text, at) in [
            ("a: 1\nb\u{1b}[31m: 2\n", Pos::new(2, 2)),
            ("\u{0}kind: x\n", Pos::new(1, 1)),
        ] {
            let (_, errs) = parse(text);
            assert_eq!(errs[0].span.start, at, "{errs:?}");
        }
    }

    /// A tag would make a value something its field does not say.
    #[test]
    fn tags_are_refused() {
        for text in ["port: !!str 80\n", "a: !!map { b: 1 }\n", "- !custom [1]\n"] {
            let (_, errs) = parse(text);
            assert!(
                errs[0].message.contains("tags are not supported"),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let root = one("é: [ä, x]\n");
        let x = root.locate(&Path::parse("é[1]"));
        assert_eq!(x.as_str(), Some("x"));
        assert_eq!(x.span.start, Pos::new(1, 8));
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let root = one("a: &p { port: 80 }\nb: *p\n");
        let port = root.locate(&Path::parse("b.port"));
        assert_eq!(port.as_str(), Some("80"));
        let (_, errs) = parse("a: *nothing\n");
        assert!(errs[0].message.contains("*nothing"), "{errs:?}");
    }

    #[test]
    fn a_block_collection_ends_with_its_last_item_and_a_flow_one_at_its_bracket() {
        let root = one("a:\n  b: 1\n\n# later\nz: [1, 2 ]\n");
        assert_eq!(root.locate(&Path::parse("a")).span.end, Pos::new(2, 7));
        assert_eq!(root.locate(&Path::parse("z")).span.end, Pos::new(5, 11));
    }
}
