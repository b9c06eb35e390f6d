use proptest::prelude::*;
use regex::Regex;
use serde_json::{json, Value};

use super::*;

fn yaml_of(v: &Value) -> String {
    to_string(&serde_json::to_string(v).unwrap())
}

/// What a YAML reader makes of `text`.
fn read(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn lays_out_blocks_as_kubectl_does() {
    let v = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"}, "annotations": {}},
        "spec": {
            "list": [1, "two", {"a": 1, "b": [true, null]}, [3, [4]], [], {}],
            "empty": [],
            "nested": {"deep": {"er": 1.5}},
        }
    });
    assert_eq!(
        yaml_of(&v),
        "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
  labels:
    app.kubernetes.io/name: x
  annotations: {}
spec:
  list:
  - 1
  - two
  - a: 1
    b:
    - true
    - null
  - - 3
    - - 4
  - []
  - {}
  empty: []
  nested:
    deep:
      er: 1.5
"
    );
}

#[test]
fn quotes_strings_a_reader_would_take_for_something_else() {
    let v = json!({
        "a": ["", "*", "true", "\"x\" said", "a: \"b\"", "-1", "!tag", "&a", "|", ">", "[x]", "{x}", "#c", "`b", "a #b", "No", "on", "y", "~", "null", "1", "1.5", "0x1f", "1e3",
              "1:20", "2001-12-14", "1e-3", "-1_000.5", "0b101", "0o17", "0x1_F", ".", "+", "- x", "a: b", "a #b", "@type", "<<", "=",
              "x:", " lead", "trail ", "8080", "..."],
    });
    let text = yaml_of(&v);
    assert_eq!(read(&text), v);
    for line in text.lines().skip(2) {
        assert!(
            line.starts_with("- \"") || line.starts_with("- '"),
            "{line}"
        );
    }
}

#[test]
fn writes_plain_what_reads_back_as_the_same_string() {
    let v = json!([
        "svc-0",
        "1h",
        "30d",
        "k8s:io.kubernetes.pod.namespace",
        "/api/v1",
        "team-9/svc-9999.yaml:1",
        "ISTIO_MUTUAL",
        "a b c",
        "5xx,reset",
        "1-24",
        "0bef723aa616e1e9",
        r"^(?:.*;\s*)?beta=on(?:;.*)?$",
        "a#b"
    ]);
    let text = yaml_of(&v);
    assert_eq!(read(&text), v);
    assert_eq!(
        text,
        "- svc-0\n- 1h\n- 30d\n- k8s:io.kubernetes.pod.namespace\n- /api/v1\n\
         - team-9/svc-9999.yaml:1\n- ISTIO_MUTUAL\n- a b c\n- 5xx,reset\n- 1-24\n- 0bef723aa616e1e9\n\
         - ^(?:.*;\\s*)?beta=on(?:;.*)?$\n- a#b\n"
    );
}

#[test]
fn keeps_promql_readable() {
    let q =
        r#"sum(rate(istio_requests_total{reporter="destination",code=~"5.."}[5m])) or vector(0)"#;
    assert_eq!(yaml_of(&json!({ "expr": q })), format!("expr: {q}\n"));
    // Quoted where it must be: single quotes keep its double quotes as is.
    let it = r#""it's" x"#;
    assert_eq!(yaml_of(&json!(it)), "'\"it''s\" x'\n");
    assert_eq!(read(&yaml_of(&json!(it))), json!(it));
}

#[test]
fn escapes_line_breaks_and_control_characters() {
    let v = json!({"lua": "a\nb\t\"c\"\u{1}\\", "ü": "snow ☃"});
    let text = yaml_of(&v);
    assert_eq!(read(&text), v);
    assert_eq!(text.lines().count(), 2);
}

/// NEL, the line and paragraph separators, the BOM, DEL and the C1
/// controls are escaped: raw inside double quotes a YAML 1.1 reader folds
/// NEL to a space, and a terminal may act on a C1 control.
#[test]
fn escapes_what_json_leaves_raw() {
    let v = json!({"a": "x\u{85}y\u{2028}z\u{2029}\u{feff}\u{7f}\u{9b}31m"});
    let text = yaml_of(&v);
    assert_eq!(
        text,
        "a: \"x\\u0085y\\u2028z\\u2029\\uFEFF\\u007F\\u009B31m\"\n"
    );
    assert_eq!(read(&text), v);
    assert_eq!(read_with_libyaml(&text), v);
}

/// What the project's own reader (libyaml's structure, the YAML 1.2 core
/// schema for plain scalars) makes of `text`.
#[test]
fn unescapes_what_serde_json_escapes() {
    for s in [
        "",
        "plain",
        r#"a{b="c",d=~"5.."}"#,
        "\\ / \n \t \r \u{8} \u{c} \u{1} \u{1f} é ✓ \"\"",
        "ends with \\",
    ] {
        // In a map, as the writer meets it.
        let json = format!("{{{}:1}}", serde_json::to_string(s).unwrap());
        let (text, end) = super::json_string_at(&json, 2);
        assert_eq!((text.as_ref(), &json[end..]), (s, "\":1}"));
    }
    // `\/` and `\uXXXX` (surrogate pairs too) are JSON that serde_json
    // reads though it does not write them.
    let (text, _) = super::json_string_at(r#""a\/b\u00e9\ud83d\ude00""#, 1);
    assert_eq!(text, "a/bé😀");
}

fn read_with_libyaml(text: &str) -> Value {
    use meshplan_policy_lang::yaml::{self as y, Style};
    fn convert(n: &y::Node) -> Value {
        match &n.value {
            y::Value::Null => Value::Null,
            y::Value::Scalar(s, Style::Plain) => match &**s {
                "null" | "~" => Value::Null,
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                s => serde_json::from_str::<serde_json::Number>(s)
                    .map(Value::Number)
                    .unwrap_or_else(|_| Value::String(s.to_owned())),
            },
            y::Value::Scalar(s, _) => Value::String(s.to_string()),
            y::Value::Seq(items) => Value::Array(items.iter().map(convert).collect()),
            y::Value::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| match &k.value {
                        y::Value::Scalar(k, _) => (k.to_string(), convert(v)),
                        other => panic!("key {other:?}"),
                    })
                    .collect(),
            ),
        }
    }
    let (docs, errors) = y::parse(text);
    assert!(errors.is_empty(), "{errors:?}\n{text}");
    assert_eq!(docs.len(), 1, "{text}");
    convert(&docs[0].root)
}

/// The implicit types of YAML 1.1 (the 2005 type repository, which
/// Kubernetes' go-yaml follows) and of the YAML 1.2 core schema.
fn implicit_types() -> Vec<Regex> {
    [
        r"^(~|null|Null|NULL|)$",
        r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
        r"^[-+]?0b[0-1_]+$",
        r"^[-+]?0[0-7_]+$",
        r"^[-+]?(0|[1-9][0-9_]*)$",
        r"^[-+]?0x[0-9a-fA-F_]+$",
        r"^[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+$",
        r"^[-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)?$",
        r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*$",
        r"^[-+]?\.(inf|Inf|INF)$",
        r"^\.(nan|NaN|NAN)$",
        r"^[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?([Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](\.[0-9]*)?(([ \t]*)Z|[-+][0-9][0-9]?(:[0-9][0-9])?)?$",
        r"^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]$",
        r"^(<<|=)$",
        r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$",
        r"^0o[0-7]+$",
        r"^0x[0-9a-fA-F]+$",
    ]
    .iter()
    .map(|r| Regex::new(r).unwrap())
    .collect()
}

#[test]
fn words_and_bytes_agree_on_every_byte_at_every_place() {
    // 17 bytes: two words and a tail; the second template puts spaces next
    // to `:` and `#` across word boundaries.
    for template in [
        "abcdefghijklmnopq",
        "abcdefg: #ijklm#o",
        "a: b #c d:e f# gh",
    ] {
        for at in 0..template.len() {
            for c in 0..=u8::MAX {
                let mut b = template.as_bytes().to_vec();
                b[at] = c;
                assert_eq!(plain_bytes(&b), plain_bytes_in(&b, 0, b.len()), "{b:?}");
            }
        }
    }
}

#[test]
fn strings_are_written_as_write_string_decides_wherever_a_character_stands() {
    // The word-at-a-time scan of a JSON string must decide as `plain_safe`
    // does for every character at every place, across word boundaries.
    for template in ["abcdefghijklmnopq", "a: b #c d:e f# g", "x", "12345678", ""] {
        for at in 0..=template.len() {
            for c in (0..0x80u8).map(char::from).chain(['é', '😀', '\u{2028}']) {
                let mut s = template.to_owned();
                s.insert(at, c);
                let mut scalar = String::new();
                write_string(&s, &mut scalar);
                // As a value and as a key, with text after it (the scan
                // reads whole words past the string's end).
                let v = json!({"a": s, "b": "x"});
                assert_eq!(yaml_of(&v), format!("a: {scalar}\nb: x\n"), "{s:?}");
                let mut m = serde_json::Map::new();
                m.insert(s.clone(), json!(1));
                m.insert("after".into(), json!(1));
                let v = Value::Object(m);
                assert_eq!(yaml_of(&v), format!("{scalar}: 1\nafter: 1\n"), "{s:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn plain_strings_are_never_another_implicit_type(s in "[-+.0-9a-fA-FxoObBeEnNyYtT_: ~<=]{0,8}") {
        if plain_safe(&s) {
            for r in implicit_types() {
                prop_assert!(!r.is_match(&s), "{s:?} is plain but matches {r}");
            }
        }
    }

    #[test]
    fn any_value_reads_back_as_itself(v in value()) {
        let text = yaml_of(&v);
        prop_assert_eq!(&read(&text), &v, "{}", text);
        prop_assert_eq!(read_with_libyaml(&text), v, "{}", text);
    }
}

/// JSON values with strings made of the characters YAML cares about.
fn value() -> impl Strategy<Value = Value> {
    let string = "[-a-z0-9 :#'\"{}\\[\\],&*!|>%@`?~.+=_/\\\\\n\t\r\u{1}\u{8}\u{c}é]{0,12}";
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1000i32..1000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        string.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((string, inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}
