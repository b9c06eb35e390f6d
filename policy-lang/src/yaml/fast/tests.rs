//! The fast reader against libyaml.

use super::super::events::with_libyaml;
use proptest::prelude::*;

/// The contract: whatever this reader accepts, libyaml reads without
/// error into the same documents, spans included. Returns whether the
/// fast reader accepted the text.
fn agrees(text: &str) -> bool {
    let Some(fast) = super::parse(text) else {
        return false;
    };
    let (slow, errors) = with_libyaml(text);
    assert!(
        errors.is_empty(),
        "accepted what libyaml refuses ({errors:?}):\n{text}"
    );
    assert_eq!(fast, slow, "a different tree for:\n{text}");
    true
}

#[test]
fn reads_generated_repositories_like_libyaml() {
    for (name, text) in &crate::generate::repository(20).files {
        assert!(agrees(text), "{name} left to libyaml");
    }
}

/// Every YAML file of the project (examples, fixtures, snapshots).
#[test]
fn reads_the_projects_yaml_like_libyaml() {
    let files = crate::yaml::project_yaml_files();
    let mut fast = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("utf-8");
        fast += usize::from(agrees(&text));
    }
    // Most of them are plain block YAML: the fast reader is used.
    assert!(files.len() > 50, "{} files", files.len());
    assert!(
        fast * 2 > files.len(),
        "{fast} of {} read fast",
        files.len()
    );
}

#[test]
fn leaves_everything_else_to_libyaml() {
    for text in [
        "a: |\n  text\n",
        "a: &x 1\nb: *x\n",
        "a: !tag 1\n",
        "a:\n\tb: 1\n",
        "a: caf\u{e9}\n",
        "a: 1\r\nb: 2\r\n",
        "a: one\n  two\n",
        "a: [1,\n  2]\n",
        "a:\nb: 1\n",
        "a: 1\na: 2\n",
        "a: \"x\\ty\"\n",
        "a: 'open\n",
        "? a\n: 1\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: 1\n...\n",
        "--- a\n",
        "a: b: c\n",
        "a: [b, ]\n",
        "- a\nb: 1\n",
        "a: 1\n- b\n",
        "a:\n  - b\n - c\n",
    ] {
        assert!(super::parse(text).is_none(), "read fast: {text:?}");
    }
}

/// The character check reads 32 bytes at a time: a tab, `\r`, DEL or a
/// non-ASCII byte is refused wherever it stands, inside a block or in
/// the tail after the last whole block.
#[test]
fn refuses_a_control_or_non_ascii_character_wherever_it_stands() {
    for len in 1..80 {
        let clean: String = (0..len)
            .map(|i| if i % 10 == 9 { '\n' } else { 'a' })
            .collect();
        assert!(super::plain_ascii(clean.as_bytes()), "{len}");
        for at in 0..len {
            for bad in ["\t", "\r", "\u{7f}", "\u{1}", "\u{e9}"] {
                let mut text = clean.clone();
                text.replace_range(at..=at, bad);
                assert!(
                    !super::plain_ascii(text.as_bytes()),
                    "{bad:?} at {at} of {len}"
                );
                assert!(super::parse(&text).is_none(), "{bad:?} at {at} of {len}");
            }
        }
    }
}

#[test]
fn reads_the_usual_shapes_like_libyaml() {
    for text in [
        "a: 1\n",
        "# c\n---\na: 1 # c\nb:   'it''s'  \n---\n---\nc: \"q\"\n",
        "a:\n- 1\n- two\nb: x\n",
        "- a: 1\n  b: [x, 'y', \"z\", {}, []]\n- - p\n  - q\n-\n  k: v\n",
        "m: { a: 1, b: { c: [d] }, e: http://h:90 }\n",
        "deep:\n    x:\n        - y\n    z: ~\nnull: Null\n",
        "  indented: 1\n  root: 2\n",
        "scalar\n",
        "a: -1\nb: -x\nc: a#b\nd: x,y[z]{w}\n",
    ] {
        assert!(agrees(text), "left to libyaml: {text:?}");
    }
}

/// A tiny deterministic generator of YAML-ish text: valid-looking
/// documents in random styles, then randomly damaged.
struct Gen(u64, bool);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    fn scalar(&mut self) -> String {
        let usual = [
            "a", "b c", "8080", "http", "5xx", "99.9", "svc-1", "true", "x.y/z", "-1",
        ];
        let s = if !self.1 || self.below(10) > 0 {
            self.pick(&usual)
        } else {
            self.pick(&[
                "a",
                "b c",
                "null",
                "~",
                "-1",
                "x:y",
                "x: y",
                "http://h:1",
                "a,b",
                "#x",
                "x #y",
                "it's",
                "q\"q",
                "",
                " ",
                "-",
                "?x",
                "[a]",
                "{a}",
                "1.5",
                "a  b",
                "*x",
                "&x",
                "!x",
                "|",
                ">",
                "%x",
                "@x",
                "-x",
                "a'",
                "true",
            ])
        };
        match self.below(4) {
            0 => format!("'{}'", s.replace('\'', "''")),
            1 => format!("\"{s}\""),
            _ => s.to_string(),
        }
    }

    fn key(&mut self) -> &'static str {
        if !self.1 || self.below(12) > 0 {
            self.pick(&["a", "b", "name", "x.y", "a-b", "k_1", "port", "1"])
        } else {
            self.pick(&["null", "~", "a b", "-k", "a:b", "'q'", "\"q\"", "? a"])
        }
    }

    fn flow(&mut self, depth: usize, out: &mut String) {
        match if depth > 2 { 0 } else { self.below(3) } {
            0 => out.push_str(&self.scalar()),
            1 => {
                out.push('[');
                for i in 0..self.below(3) {
                    if i > 0 {
                        out.push_str(self.pick(&[",", ", ", " , "]));
                    }
                    self.flow(depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push_str(self.pick(&["{", "{ "]));
                let mut used = Vec::new();
                for i in 0..self.below(3) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(self.fresh_key(&mut used));
                    out.push_str(if self.1 {
                        self.pick(&[": ", ":", ":  "])
                    } else {
                        ": "
                    });
                    self.flow(depth + 1, out);
                }
                out.push_str(self.pick(&["}", " }"]));
            }
        }
    }

    /// A value after `key:` or `-` (the cursor is on that line); `entry`
    /// after `-`, where a sequence must be deeper.
    fn value(&mut self, indent: usize, entry: bool, depth: usize, out: &mut String) {
        let last = if self.1 { 20 } else { 19 };
        match if depth > 2 { 0 } else { self.below(last) } {
            0..=4 => {
                out.push(' ');
                self.flow(depth, out);
                self.end_line(out);
            }
            5..=7 => {
                self.end_line(out);
                let n = indent + 1 + self.below(3);
                self.map(n, depth + 1, out);
            }
            8..=18 => {
                self.end_line(out);
                let n = indent + usize::from(entry) + self.below(3);
                self.seq(n, depth + 1, out);
            }
            _ => self.end_line(out),
        }
    }

    fn end_line(&mut self, out: &mut String) {
        let rare = self.1 && self.below(40) == 0;
        out.push_str(if rare {
            "#c"
        } else {
            self.pick(&["", "", "", " ", " # c", "  #c"])
        });
        out.push('\n');
        if self.below(6) == 0 {
            let n = self.below(6);
            out.push_str(&" ".repeat(n));
            out.push_str(self.pick(&["", "# note"]));
            out.push('\n');
        }
    }

    /// A key not yet used in its mapping (duplicates only when weird).
    fn fresh_key(&mut self, used: &mut Vec<&'static str>) -> &'static str {
        let mut k = self.key();
        while !self.1 && used.contains(&k) {
            k = self.key();
        }
        used.push(k);
        k
    }

    fn map(&mut self, indent: usize, depth: usize, out: &mut String) {
        let mut used = Vec::new();
        for _ in 0..1 + self.below(3) {
            out.push_str(&" ".repeat(indent));
            out.push_str(self.fresh_key(&mut used));
            out.push(':');
            self.value(indent, false, depth, out);
        }
    }

    fn seq(&mut self, indent: usize, depth: usize, out: &mut String) {
        for _ in 0..1 + self.below(3) {
            out.push_str(&" ".repeat(indent));
            out.push('-');
            if self.below(3) == 0 && depth < 3 {
                // A mapping starting on the entry's line.
                out.push(' ');
                let n = indent + 2;
                out.push_str("first:");
                self.value(n, false, depth + 1, out);
                if self.below(2) == 0 {
                    self.map(n, depth + 1, out);
                }
            } else {
                self.value(indent, true, depth, out);
            }
        }
    }

    fn document(&mut self) -> String {
        let mut out = String::new();
        for d in 0..1 + self.below(3) {
            if d > 0 || self.below(2) == 0 {
                out.push_str("---\n");
            }
            match self.below(3) {
                0 => {
                    let n = self.below(2);
                    self.seq(n, 0, &mut out)
                }
                _ => {
                    let n = self.below(2);
                    self.map(n, 0, &mut out)
                }
            }
        }
        out
    }

    fn damage(&mut self, text: &mut String) {
        let at = self.below(text.len() + 1);
        let at = (0..=at)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        let piece = self.pick(&[
            " ", ":", "-", "#", "\n", "'", "\"", "[", "]", "{", "}", ",", "a", "  ", "---\n", "\t",
        ]);
        if self.below(2) == 0 && at < text.len() {
            text.remove(at);
        } else {
            text.insert_str(at, piece);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn agrees_with_libyaml_on_generated_and_damaged_documents(
        seed in 1u64..,
        damage in 0usize..4,
    ) {
        let mut g = Gen(seed, seed % 3 == 0);
        let mut text = g.document();
        for _ in 0..damage {
            g.damage(&mut text);
        }
        agrees(&text);
    }
}
