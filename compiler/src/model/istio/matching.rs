//! HTTP match blocks, rewrites and redirects of a VirtualService route
//! (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest>).

use regex::Regex;
use serde_json::Value;

use super::Obj;
use crate::model::{ModelError, Problem, Redirect, Request};

/// A `StringMatch`: "exact string match", "prefix-based match", "RE2
/// style regex-based match"
/// (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#StringMatch>).
/// Envoy matches a regex against the whole value (the doc's query
/// example: `\d+$` "will only match values like `123` but not `a123`").
/// An empty match, or the regex `*`, checks presence ("If the value is
/// empty and only the name of header is specified, presence of the
/// header is checked", `HTTPMatchRequest.headers`).
#[derive(Debug)]
pub(super) enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present,
}

impl StringMatch {
    pub(super) fn parse(o: &Obj, v: Option<&Value>, at: &str) -> Result<Self, ModelError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Self::Present);
        };
        if !v.is_object() {
            return Err(o.invalid(format!("{at}: expected a StringMatch")));
        }
        let field = |k: &str| {
            o.text(v, k)
                // `{at}.{k}: …`: the field's path, joined as Istio writes it.
                .map_err(|e| o.invalid(format!("{at}.{}", e.problem)))
        };
        match (field("exact")?, field("prefix")?, field("regex")?) {
            (None, None, None) => Ok(Self::Present),
            (Some(e), None, None) => Ok(Self::Exact(e.to_owned())),
            (None, Some(p), None) => Ok(Self::Prefix(p.to_owned())),
            (None, None, Some("*")) => Ok(Self::Present),
            (None, None, Some(re)) => Regex::new(&format!("^(?:{re})$"))
                .map(Self::Regex)
                .map_err(|e| o.err(Problem::regex(format!("{at}.regex"), e))),
            _ => Err(o.invalid(format!("{at}: exact, prefix and regex exclude each other"))),
        }
    }

    /// Whether `value` (`None`: absent) matches; `ignore_case` is
    /// `ignoreUriCase`, which "will be ignored only in the case of
    /// `exact` and `prefix` URI matches".
    pub(super) fn matches(&self, value: Option<&str>, ignore_case: bool) -> bool {
        let Some(v) = value else {
            return false;
        };
        match self {
            Self::Present => true,
            Self::Exact(e) if ignore_case => v.eq_ignore_ascii_case(e),
            Self::Exact(e) => v == e,
            Self::Prefix(p) if ignore_case => v
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p)),
            // A plain string prefix: Istio gives Envoy `prefix`, not
            // `path_separated_prefix`, for mesh VirtualServices, so
            // `/api` also matches `/apis`.
            Self::Prefix(p) => v.starts_with(p.as_str()),
            Self::Regex(re) => re.is_match(v),
        }
    }
}

/// The header keys `HTTPMatchRequest.headers` ignores ("The keys `uri`,
/// `scheme`, `method`, and `authority` will be ignored").
const IGNORED_HEADER_KEYS: [&str; 4] = ["uri", "scheme", "method", "authority"];

/// The `:authority` a request carries.
pub(super) fn authority(r: &Request) -> String {
    r.headers
        .get(":authority")
        .or_else(|| r.headers.get("host"))
        .cloned()
        .unwrap_or_else(|| format!("{}.{}.svc.cluster.local", r.service, r.namespace))
}

/// Whether an `HTTPMatchRequest` holds for `r` (its port and source
/// conditions are checked when the rules are built): every condition of
/// the block holds.
pub(super) fn block_matches(o: &Obj, block: &Value, r: &Request) -> Result<bool, ModelError> {
    let ignore_case = block
        .get("ignoreUriCase")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(uri) = Obj::get(block, "uri") {
        if !StringMatch::parse(o, Some(uri), "match.uri")?.matches(Some(&r.path), ignore_case) {
            return Ok(false);
        }
    }
    let authority = authority(r);
    for (key, value) in [
        ("method", r.method.as_str()),
        ("authority", authority.as_str()),
        ("scheme", "http"),
    ] {
        if let Some(m) = Obj::get(block, key) {
            let at = format!("match.{key}");
            if !StringMatch::parse(o, Some(m), &at)?.matches(Some(value), false) {
                return Ok(false);
            }
        }
    }
    for (name, m) in o.map(block, "headers")?.into_iter().flatten() {
        let name = name.to_ascii_lowercase();
        if IGNORED_HEADER_KEYS.contains(&name.as_str()) {
            continue;
        }
        let m = StringMatch::parse(o, Some(m), &format!("match.headers.{name}"))?;
        if !m.matches(r.headers.get(&name).map(String::as_str), false) {
            return Ok(false);
        }
    }
    // "If a header is matched with a matching rule among withoutHeader,
    // the traffic becomes not matched one"; a missing header counts as
    // empty unless the rule checks presence.
    for (name, m) in o.map(block, "withoutHeaders")?.into_iter().flatten() {
        let name = name.to_ascii_lowercase();
        let m = StringMatch::parse(o, Some(m), &format!("match.withoutHeaders.{name}"))?;
        let value = r.headers.get(&name).map(String::as_str);
        let value = value.or(if matches!(m, StringMatch::Present) {
            None
        } else {
            Some("")
        });
        if m.matches(value, false) {
            return Ok(false);
        }
    }
    for (name, m) in o.map(block, "queryParams")?.into_iter().flatten() {
        let m = StringMatch::parse(o, Some(m), &format!("match.queryParams.{name}"))?;
        if !m.matches(r.query.get(name).map(String::as_str), false) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// How many leading bytes of `path` the block's URI condition matched:
/// the prefix of a prefix match, the whole path of an exact or regex
/// match, and `/` when the block has no URI condition (Istio then
/// matches the prefix `/`).
fn matched_len(o: &Obj, block: Option<&Value>, path: &str) -> Result<usize, ModelError> {
    let uri = block.and_then(|b| Obj::get(b, "uri"));
    Ok(match uri {
        None => usize::from(path.starts_with('/')),
        Some(u) => match StringMatch::parse(o, Some(u), "match.uri")? {
            StringMatch::Prefix(p) => p.len(),
            StringMatch::Present => usize::from(path.starts_with('/')),
            StringMatch::Exact(_) | StringMatch::Regex(_) => path.len(),
        },
    })
}

fn replace_matched(
    o: &Obj,
    block: Option<&Value>,
    path: &str,
    with: &str,
) -> Result<String, ModelError> {
    let n = matched_len(o, block, path)?;
    Ok(format!("{with}{}", path.get(n..).unwrap_or_default()))
}

/// The path the destination sees under `rewrite`: `uri` "will replace
/// the corresponding matched prefix" when the URI was matched on a
/// prefix (the whole path otherwise; with no URI condition the matched
/// prefix is `/`), `uriRegexRewrite` substitutes every match
/// (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRewrite>).
pub(super) fn rewritten_path(
    o: &Obj,
    rewrite: &Value,
    block: Option<&Value>,
    path: &str,
) -> Result<Option<String>, ModelError> {
    if let Some(rr) = Obj::get(rewrite, "uriRegexRewrite") {
        let (Some(pattern), Some(with)) = (o.text(rr, "match")?, o.text(rr, "rewrite")?) else {
            return Err(o.invalid("rewrite.uriRegexRewrite: match and rewrite are required"));
        };
        let re = Regex::new(pattern)
            .map_err(|e| o.err(Problem::regex("rewrite.uriRegexRewrite.match", e)))?;
        return Ok(Some(
            re.replace_all(path, re2_substitution(with)).into_owned(),
        ));
    }
    match o.text(rewrite, "uri")?.filter(|u| !u.is_empty()) {
        Some(uri) => replace_matched(o, block, path, uri).map(Some),
        None => Ok(None),
    }
}

/// An RE2 substitution (`\1`) in the `regex` crate's syntax (`${1}`).
fn re2_substitution(with: &str) -> String {
    let mut out = String::new();
    let mut chars = with.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let d = chars.next().unwrap_or('0');
                out.push_str(&format!("${{{d}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// A redirect: `uri` replaces "the entire path ... irrespective of the
/// request URI being matched as an exact path or prefix", `prefixRewrite`
/// the matched prefix, `authority` the host, and the code defaults to
/// `MOVED_PERMANENTLY (301)`; Istio supports 301, 302, 303, 307 and 308
/// (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRedirect>).
pub(super) fn redirect(
    o: &Obj,
    rd: &Value,
    block: Option<&Value>,
    path: &str,
) -> Result<Redirect, ModelError> {
    let code = match o.int(rd, "redirectCode")?.unwrap_or(0) {
        0 | 301 => 301,
        c @ (302 | 303 | 307 | 308) => c as u32,
        c => return Err(o.invalid(format!("redirect.redirectCode: Istio does not support {c}"))),
    };
    let path = match (
        o.text(rd, "uri")?.filter(|u| !u.is_empty()),
        o.text(rd, "prefixRewrite")?,
    ) {
        (Some(uri), _) => Some(uri.to_owned()),
        (None, Some(prefix)) => Some(replace_matched(o, block, path, prefix)?),
        (None, None) => None,
    };
    let host = o
        .text(rd, "authority")?
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    Ok(Redirect { code, path, host })
}
