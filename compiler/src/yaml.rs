//! YAML output: an object's compact JSON text written straight out as
//! block YAML, without building a tree or going through a serializer.
//!
//! Output is what `kubectl get -o yaml` users read: two-space indentation,
//! sequences inside a mapping at the key's indentation, `{}` and `[]` for
//! empty collections, every scalar on one line. A string is written plain
//! when no YAML reader — YAML 1.2 or the YAML 1.1 most Kubernetes tools
//! still resolve with — could take it for anything but that string (see
//! [`plain_safe`]); otherwise it is quoted: single quotes when it has a
//! double quote and nothing a single-quoted scalar cannot hold (PromQL stays
//! readable), double quotes with JSON escapes otherwise.
//!
//! A render writes every object as YAML, output that grows with the
//! repository; through serde-saphyr (transcoding the JSON) writing it cost
//! more than checking and compiling together, mostly in per-scalar quoting
//! analysis this writer does in one pass over the bytes.

use std::borrow::Cow;

/// `json` (compact JSON text of one value, as serde_json writes it) as a
/// YAML document, appended to `out`.
pub fn write(json: &str, out: &mut String) {
    let mut w = Writer {
        json,
        s: json.as_bytes(),
        i: 0,
        out,
    };
    // A document starts like a sequence item's content, at column 0.
    w.after_dash(0);
}

/// A YAML document of `json`.
pub fn to_string(json: &str) -> String {
    // Block YAML of an object is about as long as its compact JSON.
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    write(json, &mut out);
    out
}

struct Writer<'a> {
    json: &'a str,
    s: &'a [u8],
    i: usize,
    out: &'a mut String,
}

impl<'a> Writer<'a> {
    /// The JSON text between two token boundaries. Slicing the `str`
    /// checks only that both ends are character boundaries (they are
    /// ASCII delimiters), not every byte again as decoding UTF-8 from
    /// bytes would (every token of every object passes here).
    fn text(&self, start: usize, end: usize) -> &'a str {
        self.json.get(start..end).unwrap_or_default()
    }

    fn peek(&self) -> u8 {
        self.s.get(self.i).copied().unwrap_or(b'n')
    }

    fn indent(&mut self, n: usize) {
        const SPACES: &str = "                                                                ";
        let mut n = n;
        while n > 0 {
            let k = n.min(SPACES.len());
            self.out.push_str(&SPACES[..k]);
            n -= k;
        }
    }

    /// Whether the collection starting here is empty (`{}` / `[]`).
    fn empty_collection(&self) -> bool {
        matches!(self.s.get(self.i + 1), Some(b'}' | b']'))
    }

    /// The members of the collection at the cursor (closed by `close`),
    /// each on a line of its own at `indent` — the first on the current
    /// line when `inline` (after `- `, or at the document's start) —
    /// written by `member`.
    fn members(&mut self, close: u8, indent: usize, inline: bool, member: fn(&mut Self, usize)) {
        self.i += 1; // '{' or '['
        let mut first = true;
        while self.peek() != close {
            if !first {
                self.i += 1; // ','
            }
            if !(first && inline) {
                self.indent(indent);
            }
            first = false;
            member(self, indent);
        }
        self.i += 1; // '}' or ']'
    }

    /// The entries of the mapping at the cursor, at `indent`.
    fn map(&mut self, indent: usize, inline: bool) {
        self.members(b'}', indent, inline, |w, indent| {
            w.string();
            w.i += 1; // ':'
            w.out.push(':');
            w.after_key(indent);
        });
    }

    /// The items of the sequence at the cursor, dashes at `indent`.
    fn seq(&mut self, indent: usize, inline: bool) {
        self.members(b']', indent, inline, |w, indent| {
            w.out.push_str("- ");
            w.after_dash(indent + 2);
        });
    }

    /// A mapping value, the cursor after `key:`.
    fn after_key(&mut self, indent: usize) {
        match self.peek() {
            b'{' | b'[' if !self.empty_collection() => {
                self.out.push('\n');
                if self.peek() == b'{' {
                    self.map(indent + 2, false);
                } else {
                    // Kubernetes style: a mapping's sequence is not indented.
                    self.seq(indent, false);
                }
            }
            _ => {
                self.out.push(' ');
                self.scalar();
                self.out.push('\n');
            }
        }
    }

    /// A sequence item, the cursor after `- ` (content at `indent`).
    fn after_dash(&mut self, indent: usize) {
        match self.peek() {
            b'{' if !self.empty_collection() => self.map(indent, true),
            b'[' if !self.empty_collection() => self.seq(indent, true),
            _ => {
                self.scalar();
                self.out.push('\n');
            }
        }
    }

    /// A scalar or an empty collection, as it appears in the JSON except
    /// strings.
    fn scalar(&mut self) {
        match self.peek() {
            b'"' => {
                self.string();
            }
            b'{' | b'[' => {
                let open = self.s[self.i];
                self.out.push_str(if open == b'{' { "{}" } else { "[]" });
                self.i += 2;
            }
            _ => {
                // A number, `true`, `false` or `null`: YAML spells them as
                // JSON does.
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']'))
                {
                    self.i += 1;
                }
                self.out.push_str(self.text(start, self.i));
            }
        }
    }

    /// The JSON string at the cursor, written as a YAML scalar.
    fn string(&mut self) {
        // Eight bytes at a time, one pass both finds the end (or an escape)
        // and sees whether every byte is printable ASCII other than a
        // space, so that only the string's ends decide whether it is plain
        // (nearly every key and value). Most are a few bytes long, where a
        // memchr call and then a second pass over the bytes cost more.
        let start = self.i + 1;
        let s = self.s;
        let mut j = start;
        let mut other = false;
        while let Some(chunk) = s.get(j..j + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            // Flags above the lowest are not exact (borrows), the lowest
            // is; a flag below the stop comes from a byte below it.
            let stop = zero_bytes(x ^ (ONES * u64::from(b'"')))
                | zero_bytes(x ^ (ONES * u64::from(b'\\')));
            let unusual = not_graphic(x);
            if stop == 0 {
                other |= unusual != 0;
                j += 8;
                continue;
            }
            let at = stop.trailing_zeros() / 8;
            other |= unusual & ((1u64 << (at * 8)) - 1) != 0;
            j += at as usize;
            break;
        }
        while let Some(&c) = s.get(j).filter(|c| !matches!(c, b'"' | b'\\')) {
            other |= !c.is_ascii_graphic();
            j += 1;
        }
        if s.get(j) == Some(&b'"') {
            self.i = j + 1;
            let text = self.text(start, j);
            let plain = match other {
                false => plain_ends(text),
                true => plain_safe(text),
            };
            return write_scalar(text, plain, self.out);
        }
        let text = self.escaped_string();
        write_string(&text, self.out);
    }

    /// The JSON string at the cursor, unescaped.
    fn escaped_string(&mut self) -> Cow<'a, str> {
        let (text, end) = json_string_at(self.json, self.i + 1);
        self.i = end + 1;
        text
    }
}

/// The contents of the JSON string literal starting at byte `start` (after
/// its opening quote) of `json`, unescaped, and where its closing quote
/// is. PromQL's quoted label values make escapes common: the usual ones
/// are undone as they are found (memchr's vectorised search: such strings
/// are long); `\u` escapes (control characters, which serde_json writes
/// so) go through serde_json.
fn json_string_at(json: &str, start: usize) -> (Cow<'_, str>, usize) {
    let s = json.as_bytes();
    let text = |from: usize, to: usize| json.get(from..to).unwrap_or_default();
    let mut j = start;
    // The text so far, once there is an escape; where the rest starts.
    let mut out: Option<String> = None;
    let mut from = start;
    let mut unicode = false;
    while let Some(k) = memchr::memchr2(b'"', b'\\', &s[j.min(s.len())..]) {
        j += k;
        if s[j] == b'"' {
            break;
        }
        let c = match s.get(j + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'n') => '\n',
            Some(b't') => '\t',
            Some(b'r') => '\r',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            _ => {
                unicode = true;
                '\u{0}'
            }
        };
        // A PromQL expression is a few hundred bytes.
        let o = out.get_or_insert_with(|| String::with_capacity(256));
        o.push_str(text(from, j));
        o.push(c);
        j += 2;
        from = j;
    }
    let end = j.min(s.len());
    let raw = text(start, end);
    let unescaped = match out {
        None => Cow::Borrowed(raw),
        // serde_json wrote it: a JSON string literal, quotes and all,
        // parses.
        Some(_) if unicode => {
            Cow::Owned(serde_json::from_str(&format!("\"{raw}\"")).unwrap_or_default())
        }
        Some(mut o) => {
            o.push_str(text(from, end));
            Cow::Owned(o)
        }
    };
    (unescaped, end)
}

/// `s` as a YAML scalar: plain, single- or double-quoted.
fn write_string(s: &str, out: &mut String) {
    write_scalar(s, plain_safe(s), out);
}

/// `s` as a YAML scalar: plain when `plain` (what [`plain_safe`] says of
/// it), else single- or double-quoted.
fn write_scalar(s: &str, plain: bool, out: &mut String) {
    if plain {
        out.push_str(s);
    } else if s.contains('"') && single_quotable(s) {
        out.push('\'');
        for c in s.chars() {
            if c == '\'' {
                out.push('\'');
            }
            out.push(c);
        }
        out.push('\'');
    } else {
        // A JSON string is a YAML double-quoted scalar; serialising a &str
        // cannot fail. JSON leaves DEL, the C1 controls, the line and
        // paragraph separators and the BOM as they are; inside double
        // quotes YAML 1.1 readers fold NEL and the separators to a space
        // and a terminal may act on a C1 control: escaped, as YAML allows.
        let json = serde_json::to_string(s).unwrap_or_default();
        if json.chars().any(needs_escape) {
            for c in json.chars() {
                if needs_escape(c) {
                    out.push_str(&format!("\\u{:04X}", u32::from(c)));
                } else {
                    out.push(c);
                }
            }
        } else {
            out.push_str(&json);
        }
    }
}

/// Characters a double-quoted scalar writes as `\uXXXX` beyond JSON's.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
    )
}

/// A single-quoted scalar holds any printable text on one line (`'` is
/// doubled); line breaks would fold, so those go double-quoted.
fn single_quotable(s: &str) -> bool {
    s.chars().all(|c| {
        (c == ' ' || !c.is_control())
            && c != '\u{feff}'
            && c != '\u{2028}'
            && c != '\u{2029}'
            && c != '\u{85}'
    })
}

/// Whether `s` may be written as a plain scalar in block context: made of
/// characters that mean nothing to YAML where they stand, and not a string a YAML 1.1 or
/// 1.2 reader resolves to something else (null, a boolean, a number, a
/// timestamp, a merge key). Conservative: a string it refuses is quoted,
/// which is always correct.
pub fn plain_safe(s: &str) -> bool {
    plain_ends(s) && plain_bytes(s.as_bytes())
}

/// What [`plain_safe`] asks of a string beside its bytes one by one: how
/// it starts and ends, and that it reads as nothing but a string.
fn plain_ends(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    // Indicators (`-?:,[]{}#&*!|>'"%@` and backquote) may not start a plain
    // scalar; `=` and `<<` are YAML 1.1 value and merge keys; `~` is null.
    if !(first.is_ascii_alphanumeric()
        || matches!(first, b'/' | b'.' | b'_' | b'$' | b'(' | b'^' | b'+'))
    {
        return false;
    }
    if last == b' ' || last == b':' || s.starts_with("...") {
        return false;
    }
    !resolves_to_other_type(s)
}

#[derive(Clone, Copy)]
enum Plain {
    /// Printable ASCII other than a space.
    Text,
    /// A space: plain unless after `:` or before `#`.
    Space,
    /// Control characters, DEL and every byte of a non-ASCII character.
    Never,
}

const PLAIN: [Plain; 256] = {
    let mut t = [Plain::Never; 256];
    let mut c = b'!';
    while c <= b'~' {
        t[c as usize] = Plain::Text;
        c += 1;
    }
    t[b' ' as usize] = Plain::Space;
    t
};

/// After the first character, any printable ASCII: output is block style
/// only, where flow indicators (`,[]{}`) and quotes are plain text; but `: `
/// would start a mapping value and ` #` a comment.
fn plain_bytes(b: &[u8]) -> bool {
    // Eight bytes at a time: a word of printable ASCII other than a space
    // (nearly all) needs no more look; one with anything else is looked at
    // byte by byte. Every plain scalar of the output passes here, so one
    // byte at a time it was a visible part of a render.
    let mut at = 0;
    for chunk in b.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if not_graphic(u64::from_le_bytes(word)) != 0 && !plain_bytes_in(b, at, at + 8) {
            return false;
        }
        at += 8;
    }
    plain_bytes_in(b, at, b.len())
}

pub(crate) const ONES: u64 = u64::MAX / 255;
const HIGH: u64 = ONES * 0x80;

/// The high bit of each byte of `x` that is zero (exact for the lowest;
/// a borrow may flag bytes above it).
pub(crate) fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGH
}

/// The high bit of each byte of `x` below `n` (at most 0x80; exact for
/// the lowest, a borrow may flag bytes above it).
pub(crate) fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
}

/// Flags bytes of `x` that are not printable ASCII other than a space:
/// below `!` (0x21) or above `~` (0x7e), non-ASCII included. Exact for the
/// lowest flag; a borrow or carry may flag bytes above it.
fn not_graphic(x: u64) -> u64 {
    let below = below(x, 0x21);
    // Adding 1 to each byte sets the high bit of 0x7f (DEL) and keeps it
    // on bytes above; nothing below 0x7f reaches it.
    let above = (x.wrapping_add(ONES) | x) & HIGH;
    below | above
}

/// [`plain_bytes`] for `b[from..to]`, one table lookup a byte; only a space
/// looks at its neighbours.
fn plain_bytes_in(b: &[u8], from: usize, to: usize) -> bool {
    (from..to).all(|i| match PLAIN[usize::from(b[i])] {
        Plain::Text => true,
        Plain::Never => false,
        Plain::Space => !((i > 0 && b[i - 1] == b':') || b.get(i + 1) == Some(&b'#')),
    })
}

/// YAML 1.1 and 1.2 implicit types a plain scalar of these characters could
/// resolve to (null, bool, int, float, timestamp).
fn resolves_to_other_type(s: &str) -> bool {
    const WORDS: [&str; 14] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", ".inf", "+.inf", "-.inf",
        ".nan", "~",
    ];
    let b = s.as_bytes();
    // Most short strings (`name`, `port`, `GET`…) start with none of the
    // words' first characters: looked at no further.
    let word_start = matches!(
        b[0].to_ascii_lowercase(),
        b'n' | b't' | b'f' | b'y' | b'o' | b'.' | b'+' | b'-' | b'~'
    );
    if s.len() <= 5 && word_start && WORDS.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        return true;
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let u = unsigned.as_bytes();
    if !matches!(b[0], b'0'..=b'9' | b'+' | b'-' | b'.') {
        return false;
    }
    // 0x, 0o, 0b integers (Go's reader takes a sign after the prefix too).
    if u.len() > 2 && u[0] == b'0' {
        let rest = &u[2..];
        let rest = rest
            .strip_prefix(b"+")
            .or(rest.strip_prefix(b"-"))
            .unwrap_or(rest);
        let digit: Option<fn(&u8) -> bool> = match u[1] {
            b'x' | b'X' => Some(u8::is_ascii_hexdigit),
            b'o' | b'O' => Some(|c| matches!(c, b'0'..=b'7')),
            b'b' | b'B' => Some(|c| matches!(c, b'0' | b'1')),
            _ => None,
        };
        if let Some(digit) = digit {
            return rest.iter().all(|c| digit(c) || *c == b'_');
        }
    }
    // Timestamps (YAML 1.1): `YYYY-M-D` and anything longer from there.
    if b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        return true;
    }
    // Decimal ints and floats, sexagesimal (`1:20`), with `_` separators
    // and an exponent; YAML 1.1 even reads `.` as a float.
    let digits = |x: &[u8]| {
        x.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'_' | b':'))
    };
    match u.iter().position(|c| matches!(c, b'e' | b'E')) {
        None => digits(u),
        Some(e) => {
            let exp = &u[e + 1..];
            digits(&u[..e])
                && digits(
                    exp.strip_prefix(b"+")
                        .or(exp.strip_prefix(b"-"))
                        .unwrap_or(exp),
                )
        }
    }
}

#[cfg(test)]
mod tests;
