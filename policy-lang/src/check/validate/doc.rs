//! Diagnostics of one document, and the paths they point at: written
//! out only when a diagnostic needs one.

use std::collections::BTreeMap;
use std::fmt::{self, Display};

use super::is_dns_label;
use crate::diagnostic::{Code, Diagnostic};
use crate::parse::Loaded;
use crate::source::Location;
use crate::yaml::Path;

/// Diagnostics of one document.
pub(super) struct Doc<'a, T> {
    pub(super) doc: &'a Loaded<T>,
    pub(super) out: &'a mut Vec<Diagnostic>,
}

impl<T> Doc<'_, T> {
    // Paths are `impl Display`, written out only when a diagnostic needs
    // one: every item of every list has a path, and nearly all are valid
    // (formatting them all was most of validation's work).
    pub(super) fn error(
        &mut self,
        code: Code,
        path: impl Display,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let loc = self.doc.locate(&Path::parse(&path.to_string()));
        self.push(code, loc, message)
    }

    pub(super) fn error_key(
        &mut self,
        code: Code,
        path: impl Display,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let loc = self.doc.locate_key(&Path::parse(&path.to_string()));
        self.push(code, loc, message)
    }

    fn push(&mut self, code: Code, loc: Location, message: impl Into<String>) -> &mut Diagnostic {
        self.out.push(Diagnostic::error(code, message).at(loc));
        self.out.last_mut().expect("just pushed")
    }

    /// A DNS-1123 label (Kubernetes object and port names).
    pub(super) fn name(&mut self, path: impl Display, what: &str, name: &str) {
        if !is_dns_label(name) {
            self.error(
                Code::InvalidName,
                path,
                format!("{what} `{name}` is not a valid name: use at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit"),
            );
        }
    }

    /// Reports the second and later of `items` with the same key, at
    /// `list[i].field`.
    pub(super) fn unique<'i, I, K: Ord + Display>(
        &mut self,
        what: &str,
        list: &str,
        field: &str,
        items: &'i [I],
        key: impl Fn(&'i I) -> K,
    ) {
        let path = |i: usize| format!("{list}[{i}].{field}");
        // Lists are short: each key is compared with those before it, no
        // map is built unless the list is long.
        let mut seen: BTreeMap<K, usize> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let k = key(item);
            let first = match items.len() <= 16 {
                true => items[..i].iter().position(|x| key(x) == k),
                false => seen.get(&k).copied(),
            };
            match first {
                Some(first) => {
                    let first_line = self.doc.locate(&Path::parse(&path(first))).span.start.line;
                    self.error(
                        Code::DuplicateName,
                        path(i),
                        format!("duplicate {what} `{k}` (first defined at line {first_line})"),
                    );
                }
                None if items.len() > 16 => {
                    seen.insert(k, i);
                }
                None => {}
            }
        }
    }

    pub(super) fn percent(&mut self, path: impl Display, what: &str, v: f64) {
        if !(0.0..=100.0).contains(&v) || v.is_nan() {
            self.error(
                Code::OutOfRange,
                path,
                format!("{what} is {v}: a percentage must be between 0 and 100"),
            );
        }
    }
}

/// `list[i]`, the path of a list's item.
#[derive(Clone, Copy)]
pub(super) struct Item<L>(pub(super) L, pub(super) usize);

impl<L: Display> Display for Item<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// `base.field`.
#[derive(Clone, Copy)]
pub(super) struct Field<B>(pub(super) B, pub(super) &'static str);

impl<B: Display> Display for Field<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}
