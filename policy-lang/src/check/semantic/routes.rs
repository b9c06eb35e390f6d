//! MP2006: a route that can never match, because an earlier route matches
//! every request it would (first match wins, on every target).
//!
//! Earlier routes' match items are indexed by their path condition, so a
//! later item is compared only with the items whose path can cover its own
//! (no path, the same exact path or regex, or a prefix of whole segments
//! above it): thousands of routes on distinct paths are checked in linear
//! time. Items that share a path condition are compared pairwise, within a
//! budget; past it the rest of the intent's routes are left unchecked, and
//! a warning says so.

use std::collections::{BTreeSet, HashMap};

use super::warn;
use crate::diagnostic::{Code, Diagnostic};
use crate::intent::service::{Match, StringMatch};
use crate::intent::ServiceIntent;
use crate::parse::Loaded;
use crate::yaml::Path;

/// Up to this many routes, every pair is compared.
const FEW: usize = 32;

/// Most comparisons of two match items for one intent.
const BUDGET: usize = 2_000_000;

/// What an item's path condition is, as the index files it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key<'a> {
    Any,
    Exact(&'a str),
    /// Without its trailing `/` (`/` itself is the empty prefix).
    Prefix(&'a str),
    Regex(&'a str),
}

pub(super) fn shadowed(s: &Loaded<ServiceIntent>, out: &mut Vec<Diagnostic>) {
    let rs = &s.value.spec.routes;
    // Most services have a few routes: compared pairwise, nothing built.
    if rs.len() <= FEW {
        for (j, later) in rs.iter().enumerate() {
            let by = rs[..j].iter().position(|earlier| {
                earlier.matches.is_empty()
                    || (!later.matches.is_empty()
                        && later
                            .matches
                            .iter()
                            .all(|b| earlier.matches.iter().any(|a| match_covers(a, b))))
            });
            if let Some(i) = by {
                report(s, out, i, j);
            }
        }
        return;
    }
    // Earlier items by key: (route, item).
    let mut index: HashMap<Key<'_>, Vec<(usize, &Match)>> = HashMap::new();
    let mut catch_all: Option<usize> = None;
    let mut spent = 0usize;
    for (j, later) in rs.iter().enumerate() {
        let covered = match later.matches.is_empty() {
            true => None,
            false => {
                let mut common: Option<BTreeSet<usize>> = None;
                for b in &later.matches {
                    let mut covering = BTreeSet::new();
                    for key in candidates(b) {
                        for (i, a) in index.get(&key).into_iter().flatten() {
                            spent += 1;
                            if match_covers(a, b) {
                                covering.insert(*i);
                            }
                        }
                    }
                    common = Some(match common {
                        None => covering,
                        Some(c) => c.intersection(&covering).copied().collect(),
                    });
                    if common.as_ref().is_some_and(BTreeSet::is_empty) {
                        break;
                    }
                }
                common.and_then(|c| c.first().copied())
            }
        };
        // The first route that covers it: a catch-all covers everything.
        let by = match (catch_all, covered) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(i) = by {
            report(s, out, i, j);
        }
        if spent > BUDGET {
            let path = format!("spec.routes[{j}]");
            warn(out, s, Code::ShadowedRoute, &path,
                format!("routes after `{}` were not checked for shadowing: too many routes share their conditions", later.name),
                "split the service's routes, or give them distinct paths");
            return;
        }
        if later.matches.is_empty() {
            catch_all.get_or_insert(j);
        }
        for a in &later.matches {
            index.entry(key(a)).or_default().push((j, a));
        }
    }
}

fn report(s: &Loaded<ServiceIntent>, out: &mut Vec<Diagnostic>, i: usize, j: usize) {
    let rs = &s.value.spec.routes;
    let line = s
        .locate(&Path::parse(&format!("spec.routes[{i}]")))
        .span
        .start
        .line;
    // Every target keeps first-match order (Gateway API and Linkerd too:
    // the compiler gives the earlier route the later one's specificity),
    // so the later route is dead everywhere.
    warn(out, s, Code::ShadowedRoute, &format!("spec.routes[{j}].match"),
        format!("route `{}` can never match: route `{}` (line {line}) comes first and matches every request it would", rs[j].name, rs[i].name),
        "move it above the broader route, or remove it");
}

fn key(m: &Match) -> Key<'_> {
    match &m.path {
        None => Key::Any,
        Some(p) => match (&p.exact, &p.prefix, &p.regex) {
            (Some(e), _, _) => Key::Exact(e),
            (_, Some(p), _) => Key::Prefix(trimmed(p)),
            (_, _, Some(r)) => Key::Regex(r),
            _ => Key::Any,
        },
    }
}

/// The keys of the items that may cover `b`: no path, and what covers
/// `b`'s path.
fn candidates(b: &Match) -> Vec<Key<'_>> {
    let mut keys = vec![Key::Any];
    let Some(p) = &b.path else {
        return keys;
    };
    let under = match (&p.exact, &p.prefix, &p.regex) {
        (Some(e), _, _) => {
            keys.push(Key::Exact(e));
            Some(e.as_str())
        }
        (_, Some(q), _) => Some(q.as_str()),
        (_, _, Some(r)) => {
            keys.push(Key::Regex(r));
            None
        }
        _ => None,
    };
    if let Some(path) = under {
        // Every whole-segment prefix of the path: "", "/a", "/a/b".
        let path = trimmed(path);
        keys.push(Key::Prefix(""));
        keys.extend(
            path.match_indices('/')
                .map(|(i, _)| &path[..i])
                .filter(|p| !p.is_empty())
                .map(Key::Prefix),
        );
        if !path.is_empty() {
            keys.push(Key::Prefix(path));
        }
    }
    keys
}

fn trimmed(p: &str) -> &str {
    p.trim_end_matches('/')
}

/// Whether every request `b` matches is matched by `a` (conservative:
/// regexes only cover identical regexes).
fn match_covers(a: &Match, b: &Match) -> bool {
    let maps = |x: &std::collections::BTreeMap<String, StringMatch>,
                y: &std::collections::BTreeMap<String, StringMatch>| {
        x.iter()
            .all(|(k, xm)| y.get(k).is_some_and(|ym| string_covers(xm, ym, false)))
    };
    let path = match (&a.path, &b.path) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(x), Some(y)) => string_covers(x, y, true),
    };
    path && (a.method.is_none() || a.method == b.method)
        && maps(&a.headers, &b.headers)
        && maps(&a.cookies, &b.cookies)
        && maps(&a.query_params, &b.query_params)
}

/// Whether `a` matches every value `b` does; path prefixes match whole
/// segments (`/p9` does not match `/p99`), other prefixes characters.
fn string_covers(a: &StringMatch, b: &StringMatch, path: bool) -> bool {
    let prefix_of = |p: &str, v: &str| match path {
        false => v.starts_with(p),
        true => {
            let (p, v) = (trimmed(p), trimmed(v));
            p.is_empty() || v == p || v.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'))
        }
    };
    match (&a.exact, &a.prefix, &a.regex) {
        (Some(e), _, _) => b.exact.as_ref() == Some(e),
        (_, Some(p), _) => {
            b.exact.as_ref().is_some_and(|e| prefix_of(p, e))
                || b.prefix.as_ref().is_some_and(|q| prefix_of(p, q))
        }
        (_, _, Some(r)) => b.regex.as_ref() == Some(r),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> StringMatch {
        StringMatch {
            prefix: Some(p.into()),
            ..StringMatch::default()
        }
    }

    #[test]
    fn path_prefixes_cover_whole_segments() {
        assert!(string_covers(&prefix("/p9"), &prefix("/p9/x"), true));
        assert!(string_covers(&prefix("/p9/"), &prefix("/p9"), true));
        assert!(string_covers(&prefix("/"), &prefix("/anything"), true));
        assert!(!string_covers(&prefix("/p9"), &prefix("/p99"), true));
        // A header's prefix is a string prefix.
        assert!(string_covers(&prefix("p9"), &prefix("p99"), false));
    }
}
