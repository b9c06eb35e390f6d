use super::*;
use crate::yaml::parse;
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct T {
    name: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    tags: Vec<String>,
}

fn de(text: &str) -> (Result<T, DeError>, Vec<DeError>) {
    let (docs, errs) = parse(text);
    assert!(errs.is_empty());
    let sink = RefCell::new(Vec::new());
    let r = from_node(&docs[0].root, &sink);
    let tree = (r, sink.into_inner());
    // Read from the fast reader's tape: the same value, the same errors.
    let mut tape = crate::yaml::Tape::default();
    assert!(crate::yaml::read(text, &mut tape).is_some(), "{text}");
    let sink = RefCell::new(Vec::new());
    let r = from_node(tape.root(text, 0).expect("a document"), &sink);
    assert_eq!((r, sink.into_inner()), tree, "{text}");
    tree
}

#[test]
fn keeps_plain_scalars_as_written_for_strings() {
    let (r, _) = de("name: 1.10\n");
    assert_eq!(r.unwrap().name, "1.10");
}

#[test]
fn rejects_a_quoted_number_where_an_integer_is_expected() {
    let (r, _) = de("name: x\ncount: \"3\"\n");
    let e = r.unwrap_err();
    assert_eq!(e.kind, DeErrorKind::WrongType);
    assert_eq!(e.span.unwrap().start.line, 2);
}

#[test]
fn collects_every_unknown_field_with_a_hint() {
    let (r, unknown) = de("name: x\ncont: 1\ntagz: []\n");
    assert!(r.is_ok());
    assert_eq!(unknown.len(), 2);
    assert_eq!(unknown[0].hint.as_deref(), Some("did you mean `count`?"));
    assert_eq!(unknown[1].span.unwrap().start.line, 3);
}

#[test]
fn reports_integers_out_of_range() {
    let (r, _) = de("name: x\ncount: 99999999999\n");
    assert_eq!(r.unwrap_err().kind, DeErrorKind::InvalidValue);
}

#[test]
fn suggests_only_close_names() {
    assert_eq!(
        did_you_mean("retires", &["retries", "timeout"]).as_deref(),
        Some("did you mean `retries`?")
    );
    assert_eq!(
        did_you_mean("per_try_timeout", &["perTryTimeout"]).as_deref(),
        Some("did you mean `perTryTimeout`?")
    );
    assert_eq!(did_you_mean("banana", &["retries", "timeout"]), None);
}
