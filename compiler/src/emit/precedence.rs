//! First match on a mesh that picks the most specific match.
//!
//! Intents' routes are tried in order; Gateway API (HTTPRoute, "Matching
//! precedence" in `httproute_types.go`) chooses, among every matching
//! rule of a route, the match with the exact path, else the longest path
//! prefix, then a method, then the most headers, then the most query
//! parameters — and on a tie, the rule listed first. Linkerd's proxy
//! ranks the path by the characters it matches only (an exact `/a` ties a
//! prefix `/a`), then the same. "Outranks" below means under either.
//!
//! So a later route can win a request an earlier route also matches
//! (examples-repo's reviews: `end-user: jason` is route 1, an Android
//! `GET /reviews` route 2; jason on Android got route 2). To keep first
//! match, every earlier route also gets, for each later match that could
//! outrank one of its own, their **conjunction**: a match item that holds
//! exactly when both do, and that ranks at least as high as the later one
//! (it has its path, or a longer one, and all its other conditions). On a
//! tie the earlier rule wins, being listed first.
//!
//! # Guarantees
//!
//! For routes r₀ … rₙ given as `final(rᵢ) = own(rᵢ) ∪ { a ∧ b | a ∈
//! own(rᵢ), b ∈ final(rⱼ), j > i, a and b can both hold, b outranks a }`,
//! the highest-ranked matching item of any request belongs to the first
//! route that matches it: if it were b ∈ rⱼ with rᵢ (i < j) matching
//! through a, then a ∧ b ∈ rᵢ matches too and ranks ≥ b, and wins the tie.
//!
//! Where a conjunction cannot be written (two different regular
//! expressions on one value, two cookies through one `Cookie` header, a
//! longer path under a route that rewrites its path prefix), or
//! the items would exceed what one rule holds, order cannot be kept:
//! [`first_match`] says why and the emitter reports it (MP4002).

use std::collections::BTreeMap;

use meshplan_policy_lang::intent::service::{Match, StringMatch};

use crate::ir::Route;

/// Why first match cannot be kept on a target (the emitter reports it as
/// MP4002, its text after the service's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OrderError {
    /// Refused before any work: a route of the target could never hold
    /// them.
    #[error("{routes} routes; a route of this target holds at most {max} rules")]
    TooManyRoutes { routes: usize, max: usize },
    #[error("route `{route}` has {items} match items; a route of this target holds at most {max}")]
    TooManyItems {
        route: String,
        items: usize,
        max: usize,
    },
    /// An earlier route and a later, more specific one have no writable
    /// conjunction.
    #[error("route `{earlier}` comes before route `{later}`, and {why}: the target would pick the later, more specific one")]
    Outranked {
        earlier: String,
        later: String,
        #[source]
        why: Uncombinable,
    },
    /// The conjunctions a route needs exceed what one route holds.
    #[error("keeping route `{route}` ahead of the more specific routes after it takes more than {max} match items, all a route of this target holds")]
    Overflow { route: String, max: usize },
}

/// Why two match items have no conjunction that can be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Uncombinable {
    /// A prefix rewrite replaces the matched prefix: a longer path would
    /// change what it rewrites.
    #[error("route `{0}` rewrites its path prefix, which a longer path would change")]
    PrefixRewrite(String),
    #[error("both test cookies, which travel in one `Cookie` header")]
    Cookies,
    /// On a header (`what`: `header`) or query parameter named `key`.
    #[error("a regular expression and another condition cannot be combined on {what} `{key}`")]
    Regex { what: &'static str, key: String },
    #[error("a path regular expression and another path condition cannot be combined")]
    PathRegex,
}

/// The match items to emit for each route (`routes` in order; a route
/// without matches matches everything and keeps none), or why first match
/// cannot be kept within `max_items` items per route and `max_routes`
/// routes (a target's route holds that many rules: more routes could never
/// be rendered, and are refused before any work).
pub(crate) fn first_match(
    routes: &[Route],
    max_items: usize,
    max_routes: usize,
) -> Result<Vec<Vec<Match>>, OrderError> {
    if routes.len() > max_routes {
        return Err(OrderError::TooManyRoutes {
            routes: routes.len(),
            max: max_routes,
        });
    }
    if let Some(r) = routes.iter().find(|r| r.matches.len() > max_items) {
        return Err(OrderError::TooManyItems {
            route: r.name.clone(),
            items: r.matches.len(),
            max: max_items,
        });
    }
    let own: Vec<Vec<Match>> = routes
        .iter()
        .map(|r| {
            if r.matches.is_empty() {
                vec![Match::default()]
            } else {
                r.matches.clone()
            }
        })
        .collect();
    let mut finals: Vec<Vec<Match>> = vec![Vec::new(); routes.len()];
    for i in (0..routes.len()).rev() {
        let mut items = own[i].clone();
        'later: for later in finals.iter().skip(i + 1) {
            for b in later {
                for a in &own[i] {
                    // A regular expression's rank is the implementation's
                    // own (Gateway API leaves it open): never assumed lower.
                    let outranks = rank(b) > rank(a) || linkerd_rank(b) > linkerd_rank(a);
                    if !outranks && !regex_path(a) && !regex_path(b) {
                        continue;
                    }
                    let rewrites = routes[i]
                        .rewrite
                        .as_ref()
                        .is_some_and(|r| r.path_prefix.is_some());
                    let Some(both) = conjunction(a, b)
                        .and_then(|c| match c {
                            // A prefix rewrite replaces the matched prefix: it
                            // must stay the route's own.
                            Some(c) if rewrites && c.path != a.path => {
                                Err(Uncombinable::PrefixRewrite(routes[i].name.clone()))
                            }
                            c => Ok(c),
                        })
                        .map_err(|why| OrderError::Outranked {
                            earlier: routes[i].name.clone(),
                            later: later_name(routes, &finals, b, i).to_owned(),
                            why,
                        })?
                    else {
                        continue;
                    };
                    if !items.contains(&both) {
                        items.push(both);
                    }
                    if items.len() > max_items {
                        break 'later;
                    }
                }
            }
        }
        if items.len() > max_items {
            return Err(OrderError::Overflow {
                route: routes[i].name.clone(),
                max: max_items,
            });
        }
        finals[i] = items;
    }
    // A route that matched everything keeps no items (the target's own
    // catch-all); its conjunctions are its routes' items.
    for (f, r) in finals.iter_mut().zip(routes) {
        if r.matches.is_empty() && f.len() == 1 {
            f.clear();
        }
    }
    Ok(finals)
}

fn later_name<'a>(routes: &'a [Route], finals: &[Vec<Match>], b: &Match, i: usize) -> &'a str {
    finals
        .iter()
        .enumerate()
        .skip(i + 1)
        .find(|(_, f)| f.contains(b))
        .map_or("", |(j, _)| routes[j].name.as_str())
}

/// Linkerd's proxy order (`RequestMatch`): the characters of the path a
/// match matches (an exact path no higher than a prefix of its length; no
/// path is the prefix `/`), then a method, headers, query parameters.
fn linkerd_rank(m: &Match) -> (usize, bool, usize, usize) {
    let len = match &m.path {
        None => 1,
        Some(p) => match (&p.exact, &p.prefix) {
            (Some(e), _) => e.len(),
            (None, Some(pre)) => pre.trim_end_matches('/').len().max(1),
            (None, None) => 0,
        },
    };
    let headers = m.headers.len() + usize::from(!m.cookies.is_empty());
    (len, m.method.is_some(), headers, m.query_params.len())
}

fn regex_path(m: &Match) -> bool {
    m.path.as_ref().is_some_and(|p| p.regex.is_some())
}

/// An item's precedence: path (exact above prefix; a longer prefix above
/// a shorter one; no path is the prefix `/`), method, header count, query
/// parameter count. Cookies travel as one header.
fn rank(m: &Match) -> (u8, usize, bool, usize, usize) {
    let (kind, len) = match &m.path {
        None => (1, 1),
        Some(p) => match (&p.exact, &p.prefix) {
            (Some(e), _) => (2, e.len()),
            (None, Some(pre)) => (1, pre.trim_end_matches('/').len().max(1)),
            // A regular expression ranks by no length of its own.
            (None, None) => (0, 0),
        },
    };
    let headers = m.headers.len() + usize::from(!m.cookies.is_empty());
    (kind, len, m.method.is_some(), headers, m.query_params.len())
}

/// The item holding exactly when both do; `Ok(None)` when no request
/// satisfies both, `Err` when it cannot be written.
fn conjunction(a: &Match, b: &Match) -> Result<Option<Match>, Uncombinable> {
    let method = match (&a.method, &b.method) {
        (Some(x), Some(y)) if !x.eq_ignore_ascii_case(y) => return Ok(None),
        (x, y) => x.clone().or_else(|| y.clone()),
    };
    let path = match (&a.path, &b.path) {
        (Some(x), Some(y)) => match path_both(x, y)? {
            Some(p) => Some(p),
            None => return Ok(None),
        },
        (x, y) => x.clone().or_else(|| y.clone()),
    };
    let Some(headers) = maps_both(&a.headers, &b.headers, "header")? else {
        return Ok(None);
    };
    let Some(query_params) = maps_both(&a.query_params, &b.query_params, "query parameter")? else {
        return Ok(None);
    };
    let cookies = match (a.cookies.is_empty(), b.cookies.is_empty()) {
        (true, _) => b.cookies.clone(),
        (_, true) => a.cookies.clone(),
        _ if a.cookies == b.cookies => a.cookies.clone(),
        _ => return Err(Uncombinable::Cookies),
    };
    Ok(Some(Match {
        headers,
        cookies,
        path,
        method,
        query_params,
    }))
}

fn maps_both(
    a: &BTreeMap<String, StringMatch>,
    b: &BTreeMap<String, StringMatch>,
    what: &'static str,
) -> Result<Option<BTreeMap<String, StringMatch>>, Uncombinable> {
    let mut out = a.clone();
    for (k, y) in b {
        let both = match a.get(k) {
            None => Some(y.clone()),
            Some(x) => string_both(x, y, what, k)?,
        };
        match both {
            Some(m) => {
                out.insert(k.clone(), m);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// Two conditions on the value of the `what` (header, query parameter)
/// named `key`.
fn string_both(
    x: &StringMatch,
    y: &StringMatch,
    what: &'static str,
    key: &str,
) -> Result<Option<StringMatch>, Uncombinable> {
    let exact = |v: &str| StringMatch {
        exact: Some(v.to_owned()),
        ..StringMatch::default()
    };
    let prefix = |v: &str| StringMatch {
        prefix: Some(v.to_owned()),
        ..StringMatch::default()
    };
    match ((&x.exact, &x.prefix), (&y.exact, &y.prefix)) {
        ((Some(e), _), (Some(f), _)) => Ok((e == f).then(|| exact(e))),
        ((Some(e), _), (_, Some(p))) | ((_, Some(p)), (Some(e), _)) => {
            Ok(e.starts_with(p.as_str()).then(|| exact(e)))
        }
        ((_, Some(p)), (_, Some(q))) => Ok(if p.starts_with(q.as_str()) {
            Some(prefix(p))
        } else if q.starts_with(p.as_str()) {
            Some(prefix(q))
        } else {
            None
        }),
        _ if x == y => Ok(Some(x.clone())),
        _ => Err(Uncombinable::Regex {
            what,
            key: key.to_owned(),
        }),
    }
}

/// Two path conditions: prefixes match whole segments.
fn path_both(x: &StringMatch, y: &StringMatch) -> Result<Option<StringMatch>, Uncombinable> {
    let under = |path: &str, prefix: &str| {
        let prefix = prefix.trim_end_matches('/');
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.is_empty())
    };
    match ((&x.exact, &x.prefix), (&y.exact, &y.prefix)) {
        ((Some(e), _), (Some(f), _)) => Ok((e == f).then(|| x.clone())),
        ((Some(e), _), (_, Some(p))) => Ok(under(e, p).then(|| x.clone())),
        ((_, Some(p)), (Some(e), _)) => Ok(under(e, p).then(|| y.clone())),
        ((_, Some(p)), (_, Some(q))) => Ok(if under(p, q) {
            Some(x.clone())
        } else if under(q, p) {
            Some(y.clone())
        } else {
            None
        }),
        _ if x == y => Ok(Some(x.clone())),
        _ => Err(Uncombinable::PathRegex),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::RouteAction;

    fn route(name: &str, matches: Vec<Match>) -> Route {
        Route {
            name: name.into(),
            matches,
            action: RouteAction::Forward(vec![]),
            rewrite: None,
            timeout: None,
            faults: None,
            mirror: None,
        }
    }

    fn m(yaml: &str) -> Match {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn an_earlier_route_gets_its_conjunction_with_a_more_specific_later_one() {
        let routes = [
            route("jason", vec![m("headers: { end-user: { exact: jason } }")]),
            route(
                "android",
                vec![m("path: { prefix: /reviews }\nmethod: GET")],
            ),
            route("default", vec![]),
        ];
        let f = first_match(&routes, 8, 16).unwrap();
        assert_eq!(f[0].len(), 2);
        assert_eq!(
            f[0][1],
            m("headers: { end-user: { exact: jason } }\npath: { prefix: /reviews }\nmethod: GET")
        );
        assert_eq!(f[1].len(), 1);
        assert!(f[2].is_empty());
    }

    #[test]
    fn disjoint_or_already_outranking_routes_are_left_alone() {
        let routes = [
            route("a", vec![m("path: { prefix: /a/b }")]),
            route("b", vec![m("path: { prefix: /a }")]),
            route("c", vec![m("method: POST")]),
            route("d", vec![m("method: GET\npath: { exact: /x }")]),
        ];
        let f = first_match(&routes, 8, 16).unwrap();
        // `/a/b` outranks `/a`; `/a/b` and a POST: the conjunction is
        // needed only where the later outranks: `c` ranks below `a`.
        assert_eq!(f[0].len(), 1);
        // b (prefix /a) vs d (exact /x): disjoint paths.
        assert_eq!(f[1].len(), 1);
        // c (POST) vs d (GET): disjoint methods.
        assert_eq!(f[2].len(), 1);
    }

    #[test]
    fn uncombinable_conditions_are_refused() {
        let routes = [
            route("a", vec![m("headers: { x: { regex: 'a.*' } }")]),
            route(
                "b",
                vec![m("headers: { x: { regex: 'b.*' } }\nmethod: GET")],
            ),
        ];
        assert!(first_match(&routes, 8, 16)
            .unwrap_err()
            .to_string()
            .contains("regular expression"));
    }

    #[test]
    fn more_routes_than_a_target_holds_are_refused_before_any_work() {
        // 20,000 routes would be 2·10⁸ comparisons; no HTTPRoute holds them.
        let routes: Vec<Route> = (0..20_000)
            .map(|i| {
                route(
                    &format!("r{i}"),
                    vec![m(&format!("headers: {{ x: {{ exact: \"{i}\" }} }}"))],
                )
            })
            .collect();
        assert!(first_match(&routes, 1024, 16)
            .unwrap_err()
            .to_string()
            .contains("20000 routes"));
        let wide = [route(
            "wide",
            (0..2_000)
                .map(|i| {
                    m(&format!(
                        "method: GET\nheaders: {{ x: {{ exact: \"{i}\" }} }}"
                    ))
                })
                .collect(),
        )];
        assert!(first_match(&wide, 1024, 16)
            .unwrap_err()
            .to_string()
            .contains("2000 match items"));
    }
}
