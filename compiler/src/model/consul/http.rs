//! HTTP match criteria: a ServiceRouter route's `match.http` and an
//! intention permission's `http`, as Consul hands them to Envoy.
//!
//! - One of `pathExact`, `pathPrefix`, `pathRegex` at most; the exact and
//!   prefix forms "start with '/'" (service-router reference,
//!   `Routes[].Match{}.HTTP{}`; config-entry validation). Envoy's `prefix`
//!   is a plain string prefix (`/api` matches `/apis`); regular
//!   expressions are RE2 and match the whole path
//!   (<https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto>,
//!   RouteMatch `safe_regex`); paths are matched without the query string.
//! - `methods`: "If unspecified all HTTP methods are matched"; Consul
//!   upper-cases them and matches `:method` against their alternation.
//! - `header`: exactly one of `present`, `exact`, `prefix`, `suffix`,
//!   `regex`, with `invert`; all must match. Envoy: a header that is
//!   absent matches only an inverted presence test (HeaderMatcher
//!   `invert_match`).
//! - `queryParam` (routes only): exactly one of `present`, `exact`,
//!   `regex`.

use regex::Regex;
use serde_json::Value;

use crate::model::{Problem, Request};

#[derive(Debug)]
enum Path {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
enum StrMatch {
    Present,
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

impl StrMatch {
    fn test(&self, v: &str) -> bool {
        match self {
            StrMatch::Present => true,
            StrMatch::Exact(x) => v == x,
            StrMatch::Prefix(x) => v.starts_with(x.as_str()),
            StrMatch::Suffix(x) => v.ends_with(x.as_str()),
            StrMatch::Regex(re) => re.is_match(v),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct HttpMatch {
    path: Option<Path>,
    methods: Vec<String>,
    headers: Vec<(String, StrMatch, bool)>,
    query: Vec<(String, StrMatch)>,
}

fn full(re: &str) -> Result<Regex, Problem> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| Problem::regex(format!("bad regex {re:?}"), e))
}

fn field<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The one string match of a header or query parameter criterion.
fn one_of(v: &Value, kinds: &[&str]) -> Result<StrMatch, Problem> {
    let mut found = Vec::new();
    if v.get("present").and_then(Value::as_bool) == Some(true) {
        found.push(StrMatch::Present);
    }
    for kind in kinds {
        if let Some(x) = field(v, kind) {
            found.push(match *kind {
                "exact" => StrMatch::Exact(x.to_owned()),
                "prefix" => StrMatch::Prefix(x.to_owned()),
                "suffix" => StrMatch::Suffix(x.to_owned()),
                _ => StrMatch::Regex(full(x)?),
            });
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        _ => Err(Problem::invalid(format!(
            "should only contain one of present, {}",
            kinds.join(", ")
        ))),
    }
}

impl HttpMatch {
    /// Parses a `match.http` (route) or permission `http` object.
    pub(super) fn parse(v: Option<&Value>, query_params: bool) -> Result<HttpMatch, Problem> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(HttpMatch::default());
        };
        let mut m = HttpMatch::default();
        let mut paths = Vec::new();
        if let Some(p) = field(v, "pathExact") {
            paths.push(Path::Exact(p.to_owned()));
        }
        if let Some(p) = field(v, "pathPrefix") {
            paths.push(Path::Prefix(p.to_owned()));
        }
        if let Some(p) = field(v, "pathRegex") {
            paths.push(Path::Regex(full(p)?));
        }
        if paths.len() > 1 {
            return Err(Problem::invalid(
                "should only contain at most one of pathExact, pathPrefix, or pathRegex",
            ));
        }
        m.path = paths.pop();
        if let Some(Path::Exact(p) | Path::Prefix(p)) = &m.path {
            if !p.starts_with('/') {
                return Err(Problem::invalid(format!(
                    "path {p:?} doesn't start with '/'"
                )));
            }
        }
        for method in v
            .get("methods")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let method = method
                .as_str()
                .ok_or_else(|| Problem::invalid("methods are strings"))?
                .to_ascii_uppercase();
            const VALID: &[&str] = &[
                "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
            ];
            if !VALID.contains(&method.as_str()) || m.methods.contains(&method) {
                return Err(Problem::invalid(format!(
                    "invalid or repeated method {method:?}"
                )));
            }
            m.methods.push(method);
        }
        for h in v
            .get("header")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = field(h, "name")
                .ok_or_else(|| Problem::invalid("header: missing required name"))?;
            let kind = one_of(h, &["exact", "prefix", "suffix", "regex"])?;
            let invert = h.get("invert").and_then(Value::as_bool).unwrap_or(false);
            m.headers.push((name.to_ascii_lowercase(), kind, invert));
        }
        if query_params {
            for q in v
                .get("queryParam")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = field(q, "name")
                    .ok_or_else(|| Problem::invalid("queryParam: missing required name"))?;
                m.query
                    .push((name.to_owned(), one_of(q, &["exact", "regex"])?));
            }
        }
        Ok(m)
    }

    /// Whether the match has a path criterion that a prefix rewrite can
    /// replace: the prefix (or whole exact path).
    pub(super) fn rewritable(&self) -> Option<&str> {
        match &self.path {
            Some(Path::Exact(p) | Path::Prefix(p)) => Some(p),
            _ => None,
        }
    }

    pub(super) fn matches(&self, r: &Request) -> bool {
        let path_ok = match &self.path {
            None => true,
            Some(Path::Exact(p)) => r.path == *p,
            Some(Path::Prefix(p)) => r.path.starts_with(p.as_str()),
            Some(Path::Regex(re)) => re.is_match(&r.path),
        };
        path_ok
            && (self.methods.is_empty() || self.methods.contains(&r.method))
            && self
                .headers
                .iter()
                .all(|(name, kind, invert)| match r.headers.get(name) {
                    Some(v) => kind.test(v) != *invert,
                    None => matches!(kind, StrMatch::Present) && *invert,
                })
            && self
                .query
                .iter()
                .all(|(name, kind)| r.query.get(name).is_some_and(|v| kind.test(v)))
    }
}
