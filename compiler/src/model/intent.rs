//! The reference: what the intents mean, as docs/intents.md defines it,
//! read from the repository (not from the IR the emitters read).
//!
//! - Routes are tried in order; the first whose match holds wins (a match
//!   holds when any of its items does, an item when all its conditions
//!   do); a request no route matches takes the default route: the
//!   rollout's stable/canary weights at its position, else the default
//!   version. An A/B test's match, or a preview's, is tried after the
//!   service's routes while the rollout is under way (before promotion):
//!   a request it holds for goes to the canary.
//! - Sticky canaries (`sessionAffinity`), while a `canary` or `mirror`
//!   rollout is at a step giving the canary a share: the canary's answers
//!   on the default route (http ports) set `<cookie>=<canary>;
//!   Max-Age=<maxAge>; Path=/`, and a request carrying that cookie, tried
//!   after the preview, goes to the canary. A route to this service from another takes its default
//!   route's weights (the canary's answers set the cookie there too, but
//!   the cookie decides only on this service's own routing).
//! - A path prefix matches whole path segments: `/api` matches `/api`,
//!   `/api/` and `/api/v1`, not `/apis`; a trailing `/` is ignored.
//! - Timeouts: the route's, else the service's. Faults and the mirror: the
//!   route's, else the service's (the rollout's mirror while a `mirror`
//!   rollout copies traffic). A route that already sends a share of its
//!   requests to the mirror's version copies nothing (that would double the
//!   version's load). Retries are the service's. Routing is what meshed
//!   callers see: a caller without a sidecar is not routed by the mesh.
//! - Access: with an allow list and `defaultDeny` (the default), a
//!   request is admitted only when a rule names its caller, port, method
//!   and path (allow-list paths are exact, or a glob prefix ending in `*`:
//!   `/cart*` admits `/cartoon`); STRICT mTLS refuses callers without an
//!   identity; with `mtls: unmanaged` the mesh's own mTLS settings decide
//!   whether such a caller gets in (no answer).

use std::collections::BTreeMap;

use meshplan_policy_lang::intent::rollout::{SessionAffinity, Strategy};
use meshplan_policy_lang::intent::service::{Match, MtlsMode, StringMatch};
use meshplan_policy_lang::intent::{workloads, Caller, PortRef, Rollout, ServiceIntent};
use meshplan_policy_lang::parse::Repository;
use meshplan_policy_lang::resolve::ServiceIndex;

use super::{
    Answer, Cluster, Fault, Forward, Redirect, Request, Retries, Routing, Source, Verdict,
};
use crate::ir::{Position, Positions};

/// The intents' answer to `request`.
pub fn answer(
    repo: &Repository,
    positions: &Positions,
    cluster: &Cluster,
    request: &Request,
) -> Answer {
    let Some(intent) = repo.services.iter().map(|l| &l.value).find(|s| {
        repo.namespace_of(s) == request.namespace && workloads::host(s) == request.service
    }) else {
        return Answer {
            routing: Some(Routing::NoRoute),
            authorization: None,
        };
    };
    Answer {
        routing: Some(routing(repo, positions, intent, request)),
        authorization: authorization(repo, cluster, intent, request),
    }
}

/// The pod of `version` of `s` (no version: the pod of a service that
/// declares none).
fn pod_id(repo: &Repository, s: &ServiceIntent, version: &str) -> String {
    match version {
        "" => format!("{}/{}", repo.namespace_of(s), s.metadata.name),
        v => format!("{}/{}/{v}", repo.namespace_of(s), s.metadata.name),
    }
}

fn routing(
    repo: &Repository,
    positions: &Positions,
    s: &ServiceIntent,
    request: &Request,
) -> Routing {
    let spec = &s.spec;
    let Some(port) = spec.ports.iter().find(|p| p.port == request.port) else {
        return Routing::NoRoute;
    };
    let key = format!("{}/{}", repo.namespace_of(s), s.metadata.name);
    let position = positions
        .by_service
        .get(&key)
        .copied()
        .unwrap_or(Position::NotStarted);
    if port.protocol.is_l7() {
        for (i, r) in spec.routes.iter().enumerate() {
            if !holds(&r.matches, request) {
                continue;
            }
            if let Some(rd) = &r.redirect {
                return Routing::Redirect(Redirect {
                    code: rd.code.unwrap_or(302),
                    path: rd.path.clone(),
                    host: rd.host.clone(),
                });
            }
            let Some(d) = &r.destination else {
                return Routing::NoRoute;
            };
            let (to, weights, at): (&ServiceIntent, Vec<(String, u32)>, Position) =
                match (&d.service, &d.version) {
                    (Some(other), _) => match other_default(repo, positions, s, other) {
                        Some(hit) => hit,
                        None => return Routing::NoRoute,
                    },
                    (None, Some(v)) => (s, vec![(v.clone(), 100)], position),
                    (None, None) => (
                        s,
                        d.weights
                            .iter()
                            .map(|w| (w.version.clone(), w.weight))
                            .collect(),
                        position,
                    ),
                };
            let mut f = forward_settings(repo, s, true);
            if let Some(faults) = &r.faults {
                f.fault = Some(fault(faults));
            }
            if let Some(m) = &r.mirror {
                f.mirror = Some((
                    vec![pod_id(repo, s, &m.version)],
                    m.percentage.unwrap_or(100.0),
                ));
            }
            if std::ptr::eq(to, s) {
                drop_self_mirror(repo, s, &weights, &mut f);
            }
            f.pods = shares(repo, to, &weights);
            if !std::ptr::eq(to, s) {
                set_sticky_cookie(repo, to, at, &mut f);
            }
            f.timeout_ms = r
                .timeout
                .or(spec.resilience.as_ref().and_then(|x| x.timeout))
                .map(|t| t.as_millis());
            f.rule = format!("route {i} `{}`", r.name);
            if let Some(rw) = &r.rewrite {
                f.rewritten_host = rw.host.clone();
                f.rewritten_path = rw
                    .path_prefix
                    .as_ref()
                    .and_then(|p| rewrite_prefix(&r.matches, request, p));
            }
            return Routing::Forward(f);
        }
        if let Some(ab) = spec.rollout.as_ref().filter(|r| {
            r.strategy == Strategy::AbTest
                && matches!(position, Position::Shadow | Position::Step(_))
        }) {
            if let Some(t) = ab.ab_test.as_ref().filter(|t| holds(&t.matches, request)) {
                let _ = t;
                return canary_route(repo, s, &ab.canary, "the A/B test's match");
            }
        }
        if let Some(r) = spec.rollout.as_ref().filter(|r| {
            r.strategy != Strategy::AbTest
                && matches!(position, Position::Shadow | Position::Step(_))
        }) {
            if r.preview
                .as_ref()
                .is_some_and(|p| holds(&p.matches, request))
            {
                return canary_route(repo, s, &r.canary, "the rollout's preview");
            }
        }
        if let Some((r, sa)) = sticky(s, position) {
            if cookies(request).get(sa.cookie(repo.namespace_of(s), &s.metadata.name).as_str())
                == Some(&r.canary.as_str())
            {
                return canary_route(repo, s, &r.canary, "the sticky canary's cookie");
            }
        }
    }
    let mut f = forward_settings(repo, s, port.protocol.is_l7());
    let weights = default_weights(s, position);
    f.timeout_ms = spec
        .resilience
        .as_ref()
        .and_then(|x| x.timeout)
        .filter(|_| port.protocol.is_l7())
        .map(|t| t.as_millis());
    if let (Some(r), Position::Shadow) = (&spec.rollout, position) {
        if r.strategy == Strategy::Mirror {
            if let Some(m) = &r.mirror {
                f.mirror = Some((vec![pod_id(repo, s, &r.canary)], m.percentage));
            }
        }
    }
    drop_self_mirror(repo, s, &weights, &mut f);
    f.pods = shares(repo, s, &weights);
    if port.protocol.is_l7() {
        set_sticky_cookie(repo, s, position, &mut f);
    }
    f.rule = "the default route".into();
    Routing::Forward(f)
}

/// The sticky cookie on the canary's answers of `s`'s default route (its
/// pods already in `f`), while weight shifts.
fn set_sticky_cookie(repo: &Repository, s: &ServiceIntent, position: Position, f: &mut Forward) {
    if let Some((r, sa)) = sticky(s, position) {
        let canary = pod_id(repo, s, &r.canary);
        if f.pods.contains_key(&canary) {
            let cookie = sa.set_cookie(repo.namespace_of(s), &s.metadata.name, &r.canary);
            f.set_cookie.insert(canary, cookie);
        }
    }
}

/// The rollout and its session affinity while weight shifts (a `canary`
/// or `mirror` rollout at a step that gives the canary a share): the
/// canary's answers on the default route set the cookie, and a request
/// carrying it goes to the canary.
fn sticky(s: &ServiceIntent, position: Position) -> Option<(&Rollout, &SessionAffinity)> {
    let r = s.spec.rollout.as_ref()?;
    let shifting = matches!(r.strategy, Strategy::Canary | Strategy::Mirror);
    let sa = r.session_affinity.as_ref()?;
    let shared = default_weights(s, position)
        .iter()
        .any(|(v, w)| *v == r.canary && *w > 0);
    (shifting && matches!(position, Position::Step(_)) && shared).then_some((r, sa))
}

/// A service a route reaches, the weights of its versions, and where its
/// rollout stands.
type Reached<'r> = (&'r ServiceIntent, Vec<(String, u32)>, Position);

/// A route to another service: that service, its default route's
/// weights at its own position (its own routes do not apply), and that
/// position.
fn other_default<'r>(
    repo: &'r Repository,
    positions: &Positions,
    s: &ServiceIntent,
    reference: &str,
) -> Option<Reached<'r>> {
    let (other, ns) = ServiceIndex::new(repo)
        .resolve(repo.namespace_of(s), reference)
        .ok()?;
    let position = positions
        .by_service
        .get(&format!("{ns}/{}", other.metadata.name))
        .copied()
        .unwrap_or(Position::NotStarted);
    Some((other, default_weights(other, position), position))
}

/// The rollout's own route to its canary (the A/B test's match, the
/// preview): all of it to the canary, the service's timeout, faults and
/// mirror.
fn canary_route(repo: &Repository, s: &ServiceIntent, canary: &str, rule: &str) -> Routing {
    let mut f = forward_settings(repo, s, true);
    let weights = [(canary.to_owned(), 100)];
    drop_self_mirror(repo, s, &weights, &mut f);
    f.pods = shares(repo, s, &weights);
    f.timeout_ms = s
        .spec
        .resilience
        .as_ref()
        .and_then(|x| x.timeout)
        .map(|t| t.as_millis());
    f.rule = rule.into();
    Routing::Forward(f)
}

/// The settings every forwarded request of `s` gets: retries, faults and
/// the mirror (http ports only).
fn forward_settings(repo: &Repository, s: &ServiceIntent, l7: bool) -> Forward {
    if !l7 {
        return Forward::default();
    }
    let spec = &s.spec;
    let retries = spec
        .resilience
        .as_ref()
        .and_then(|r| r.retries.as_ref())
        .filter(|r| r.attempts > 0)
        .map(|r| {
            let mut on: Vec<String> = r
                .retry_on
                .iter()
                .map(|c| {
                    serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect();
            on.sort();
            on.dedup();
            Retries {
                attempts: r.attempts,
                per_try_timeout_ms: r.per_try_timeout.map(|t| t.as_millis()),
                on,
            }
        });
    let fault = spec.faults.as_ref().map(fault);
    Forward {
        retries,
        fault,
        mirror: spec.mirror.as_ref().map(|m| {
            (
                vec![pod_id(repo, s, &m.version)],
                m.percentage.unwrap_or(100.0),
            )
        }),
        ..Forward::default()
    }
}

fn fault(f: &meshplan_policy_lang::intent::service::Faults) -> Fault {
    Fault {
        delay: f
            .delay
            .as_ref()
            .map(|d| (d.percentage, d.delay.as_millis())),
        abort: f.abort.as_ref().map(|a| (a.percentage, a.http_status)),
    }
}

/// No copy to a version the route already sends requests to.
fn drop_self_mirror(
    repo: &Repository,
    s: &ServiceIntent,
    weights: &[(String, u32)],
    f: &mut Forward,
) {
    let sends = |pod: &String| {
        weights
            .iter()
            .any(|(v, w)| *w > 0 && pod_id(repo, s, v) == *pod)
    };
    if f.mirror
        .as_ref()
        .is_some_and(|(pods, _)| pods.iter().any(sends))
    {
        f.mirror = None;
    }
}

/// The default route's weights at `position`.
fn default_weights(s: &ServiceIntent, position: Position) -> Vec<(String, u32)> {
    let spec = &s.spec;
    let Some(r) = &spec.rollout else {
        let v = spec
            .default_version
            .clone()
            .or_else(|| spec.versions.first().map(|v| v.name.clone()))
            .unwrap_or_default();
        return vec![(v, 100)];
    };
    let canary = match position {
        Position::NotStarted | Position::Shadow => 0,
        Position::Promoted => 100,
        // Blue/green and A/B move no weight before promotion.
        Position::Step(_) if matches!(r.strategy, Strategy::BlueGreen | Strategy::AbTest) => 0,
        Position::Step(i) => r
            .steps
            .iter()
            .take(i + 1)
            .filter_map(|s| s.weight)
            .next_back()
            .unwrap_or(0)
            .min(100),
    };
    vec![(r.stable.clone(), 100 - canary), (r.canary.clone(), canary)]
}

fn shares(
    repo: &Repository,
    s: &ServiceIntent,
    weights: &[(String, u32)],
) -> BTreeMap<String, f64> {
    let mut pods = BTreeMap::new();
    for (v, w) in weights.iter().filter(|(_, w)| *w > 0) {
        *pods.entry(pod_id(repo, s, v)).or_insert(0.0) += f64::from(*w);
    }
    pods
}

/// Whether any of `matches` holds (none: every request).
pub fn holds(matches: &[Match], r: &Request) -> bool {
    matches.is_empty() || matches.iter().any(|m| item_holds(m, r))
}

fn item_holds(m: &Match, r: &Request) -> bool {
    let cookies = cookies(r);
    m.path.as_ref().is_none_or(|p| path_matches(p, &r.path))
        && m.method
            .as_ref()
            .is_none_or(|x| x.eq_ignore_ascii_case(&r.method))
        && m.headers.iter().all(|(k, v)| {
            r.headers
                .get(&k.to_ascii_lowercase())
                .is_some_and(|h| string_matches(v, h))
        })
        && m.cookies.iter().all(|(k, v)| {
            cookies
                .get(k.as_str())
                .is_some_and(|c| string_matches(v, c))
        })
        && m.query_params
            .iter()
            .all(|(k, v)| r.query.get(k).is_some_and(|q| string_matches(v, q)))
}

fn cookies(r: &Request) -> BTreeMap<&str, &str> {
    r.headers
        .get("cookie")
        .map(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .collect()
        })
        .unwrap_or_default()
}

fn string_matches(m: &StringMatch, v: &str) -> bool {
    if let Some(e) = &m.exact {
        return v == e;
    }
    if let Some(p) = &m.prefix {
        return v.starts_with(p.as_str());
    }
    m.regex
        .as_ref()
        .and_then(|re| regex::Regex::new(&format!("^(?:{re})$")).ok())
        .is_some_and(|re| re.is_match(v))
}

/// A path condition: a prefix matches whole segments.
fn path_matches(m: &StringMatch, path: &str) -> bool {
    match &m.prefix {
        Some(p) => segment_prefix(p, path),
        None => string_matches(m, path),
    }
}

/// Whether `prefix` matches `path` segment by segment (a trailing `/` of
/// either ignored).
pub fn segment_prefix(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// The path after replacing the matched prefix with `with`: the matching
/// item's path prefix, or `/` for an item without a path condition.
fn rewrite_prefix(matches: &[Match], r: &Request, with: &str) -> Option<String> {
    let prefix = if matches.is_empty() {
        "/".to_owned()
    } else {
        let m = matches.iter().find(|m| item_holds(m, r))?;
        match &m.path {
            None => "/".to_owned(),
            Some(p) => p.prefix.clone()?,
        }
    };
    let rest = &r.path[prefix.trim_end_matches('/').len()..];
    let with = with.trim_end_matches('/');
    Some(match (with.is_empty(), rest.is_empty()) {
        (true, true) => "/".to_owned(),
        (true, false) => rest.to_owned(),
        (false, _) => format!("{with}{rest}"),
    })
}

/// The verdict at each of the service's pods; `None` when the intents
/// leave it to the mesh (`mtls: unmanaged` and a caller without identity).
fn authorization(
    repo: &Repository,
    cluster: &Cluster,
    s: &ServiceIntent,
    r: &Request,
) -> Option<BTreeMap<String, Verdict>> {
    let ns = repo.namespace_of(s);
    let default_mtls = repo
        .config
        .as_ref()
        .and_then(|c| c.value.defaults.as_ref())
        .and_then(|d| d.mtls)
        .unwrap_or(MtlsMode::Strict);
    let mtls = s.spec.mtls.unwrap_or(default_mtls);
    if mtls == MtlsMode::Unmanaged && matches!(r.source, Source::Unauthenticated { .. }) {
        return None;
    }
    let verdict = if mtls == MtlsMode::Strict && matches!(r.source, Source::Unauthenticated { .. })
    {
        Verdict::Deny {
            by: "STRICT mTLS".into(),
        }
    } else {
        match s.spec.access.as_ref().filter(|a| a.default_deny) {
            None => Verdict::Allow { by: None },
            Some(a) => {
                let index = ServiceIndex::new(repo);
                match a.allow.iter().position(|rule| {
                    rule.from
                        .iter()
                        .any(|c| caller_is(&index, ns, c, &r.source))
                        && (rule.ports.is_empty()
                            || rule.ports.iter().any(|p| port_is(s, p, r.port)))
                        && (rule.methods.is_empty()
                            || rule
                                .methods
                                .iter()
                                .any(|m| m.eq_ignore_ascii_case(&r.method)))
                        && (rule.paths.is_empty()
                            || rule.paths.iter().any(|p| allow_path(p, &r.path)))
                }) {
                    Some(i) => Verdict::Allow {
                        by: Some(format!("spec.access.allow[{i}]")),
                    },
                    None => Verdict::Deny {
                        by: "the allow list".into(),
                    },
                }
            }
        }
    };
    let pods = cluster.pods.iter().filter(|p| {
        p.id.starts_with(&format!("{ns}/{}/", s.metadata.name))
            || p.id == format!("{ns}/{}", s.metadata.name)
    });
    Some(pods.map(|p| (p.id.clone(), verdict.clone())).collect())
}

/// An allow-list path: exact, or a glob prefix ending in `*`.
pub fn allow_path(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == pattern,
    }
}

fn port_is(s: &ServiceIntent, p: &PortRef, port: u32) -> bool {
    s.spec.ports.iter().any(|x| {
        x.port == port
            && match p {
                PortRef::Number(n) => x.port == *n || x.target_port == Some(*n),
                PortRef::Name(n) => &x.name == n,
            }
    })
}

fn caller_is(index: &ServiceIndex<'_>, from_ns: &str, c: &Caller, source: &Source) -> bool {
    if c.anyone == Some(true) {
        return true;
    }
    let Source::Workload {
        namespace,
        service_account,
        ..
    } = source
    else {
        return false;
    };
    if let Some(svc) = &c.service {
        return index.resolve(from_ns, svc).is_ok_and(|(intent, ns)| {
            ns == namespace && workloads::service_account(intent) == service_account
        });
    }
    if let Some(sa) = &c.service_account {
        return sa.split_once('/') == Some((namespace.as_str(), service_account.as_str()));
    }
    match c.namespace.as_deref() {
        Some("*") => true,
        Some(ns) => ns == namespace,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_prefix_matches_whole_segments() {
        assert!(segment_prefix("/api", "/api"));
        assert!(segment_prefix("/api", "/api/v1"));
        assert!(segment_prefix("/api/", "/api"));
        assert!(!segment_prefix("/api", "/apis"));
        assert!(segment_prefix("/", "/anything"));
    }

    #[test]
    fn an_allow_list_glob_is_a_string_prefix() {
        assert!(allow_path("/cart*", "/cartoon"));
        assert!(!allow_path("/api/*", "/api"));
        assert!(allow_path("/api/*", "/api/x"));
        assert!(allow_path("/login", "/login"));
    }
}
