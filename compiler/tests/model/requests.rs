//! Requests worth asking about a repository: for every service and port,
//! one satisfying each route's match, one satisfying two routes' matches
//! at once (where order decides), path boundaries (`/api`, `/api/x`,
//! `/apix`), the default request, and for every allow rule each caller,
//! path and method it names and one it does not — from callers it names,
//! an unnamed workload and an unauthenticated one. Requests to a gRPC port
//! are gRPC calls (`POST /package.Service/Method`, `content-type:
//! application/grpc`) unless a route or rule names another path.

use std::collections::BTreeMap;

use meshplan_compiler::model::{intent, Cluster, Request, Source};
use meshplan_policy_lang::intent::service::{Match, StringMatch};
use meshplan_policy_lang::intent::{workloads, Caller, Protocol, ServiceIntent};
use meshplan_policy_lang::parse::Repository;
use meshplan_policy_lang::resolve::ServiceIndex;

/// At most this many requests per service port: generated repositories
/// stay fast, hand-written ones are covered whole.
const PER_PORT: usize = 400;

/// Every request of `repo` worth asking.
pub fn requests(repo: &Repository, cluster: &Cluster) -> Vec<Request> {
    let index = ServiceIndex::new(repo);
    let mut out = Vec::new();
    for loaded in &repo.services {
        let s = &loaded.value;
        let sources = sources(repo, &index, cluster, s);
        for port in &s.spec.ports {
            let grpc = port.protocol == Protocol::Grpc;
            let base = Request {
                source: sources[0].clone(),
                namespace: repo.namespace_of(s).to_owned(),
                service: workloads::host(s).to_owned(),
                port: port.port,
                method: if grpc { "POST" } else { "GET" }.into(),
                path: if grpc { "/demo.v1.Demo/Call" } else { "/" }.into(),
                headers: if grpc {
                    BTreeMap::from([("content-type".into(), "application/grpc".into())])
                } else {
                    BTreeMap::new()
                },
                query: BTreeMap::new(),
            };
            let mut shapes = vec![base.clone()];
            if port.protocol.is_l7() {
                shapes.extend(route_shapes(s, &base));
                shapes.extend(access_shapes(s, &base));
            }
            let mut mine = Vec::new();
            for shape in &shapes {
                for src in &sources {
                    mine.push(Request {
                        source: src.clone(),
                        ..shape.clone()
                    });
                }
            }
            mine.sort();
            mine.dedup();
            mine.truncate(PER_PORT);
            out.extend(mine);
        }
    }
    out
}

/// Callers named by `s`'s allow list, then workloads it does not name and
/// an unauthenticated caller.
fn sources(
    repo: &Repository,
    index: &ServiceIndex<'_>,
    cluster: &Cluster,
    s: &ServiceIntent,
) -> Vec<Source> {
    let ns = repo.namespace_of(s);
    let mut out = Vec::new();
    for rule in s.spec.access.iter().flat_map(|a| a.allow.iter()) {
        for c in &rule.from {
            out.extend(source_of(index, cluster, ns, c));
        }
    }
    out.push(Source::Workload {
        namespace: "stranger".into(),
        service_account: "stranger".into(),
        labels: BTreeMap::from([("app".into(), "stranger".into())]),
    });
    // A pod of the same namespace the allow list does not name.
    out.push(Source::Workload {
        namespace: ns.to_owned(),
        service_account: "neighbour".into(),
        labels: BTreeMap::from([("app".into(), "neighbour".into())]),
    });
    out.push(Source::Unauthenticated { namespace: None });
    out.dedup();
    out
}

fn source_of(
    index: &ServiceIndex<'_>,
    cluster: &Cluster,
    from_ns: &str,
    c: &Caller,
) -> Option<Source> {
    if let Some(svc) = &c.service {
        let (intent, ns) = index.resolve(from_ns, svc).ok()?;
        let prefix = format!("{ns}/{}", intent.metadata.name);
        let pod = cluster
            .pods
            .iter()
            .find(|p| p.id == prefix || p.id.starts_with(&format!("{prefix}/")))?;
        return cluster.source(&pod.id);
    }
    if let Some((ns, sa)) = c.service_account.as_deref().and_then(|x| x.split_once('/')) {
        // A pod of the repository runs as it, or an unknown workload does.
        let known = cluster
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.service_account == sa);
        return Some(match known {
            Some(p) => cluster.source(&p.id)?,
            None => Source::Workload {
                namespace: ns.into(),
                service_account: sa.into(),
                labels: BTreeMap::from([("app".into(), sa.into())]),
            },
        });
    }
    let ns = match c.namespace.as_deref()? {
        "*" => "elsewhere",
        ns => ns,
    };
    Some(Source::Workload {
        namespace: ns.into(),
        service_account: "caller".into(),
        labels: BTreeMap::from([("app".into(), "caller".into())]),
    })
}

/// Requests for the routes: each match item alone, path boundaries, and
/// each pair of items from different routes together.
fn route_shapes(s: &ServiceIntent, base: &Request) -> Vec<Request> {
    let mut items: Vec<(usize, &Match)> = Vec::new();
    for (i, r) in s.spec.routes.iter().enumerate() {
        items.extend(r.matches.iter().map(|m| (i, m)));
    }
    if let Some(ab) = s.spec.rollout.as_ref().and_then(|r| r.ab_test.as_ref()) {
        items.extend(ab.matches.iter().map(|m| (usize::MAX, m)));
    }
    if let Some(p) = s.spec.rollout.as_ref().and_then(|r| r.preview.as_ref()) {
        items.extend(p.matches.iter().map(|m| (usize::MAX - 1, m)));
    }
    // The sticky canary's cookie (and, below, with each route's match).
    let sticky = s.spec.rollout.as_ref().and_then(|r| {
        let sa = r.session_affinity.as_ref()?;
        Some(sa.sticky_match(&base.namespace, &s.metadata.name, &r.canary))
    });
    if let Some(m) = &sticky {
        items.push((usize::MAX - 2, m));
    }
    let mut out = Vec::new();
    for (_, m) in &items {
        if let Some(r) = satisfy(m, base.clone()) {
            out.extend(path_boundaries(m, &r));
            out.push(r);
        }
    }
    for (a, (i, m)) in items.iter().enumerate() {
        for (j, n) in items.iter().skip(a + 1) {
            if i == j {
                continue;
            }
            let Some(r) = satisfy(m, base.clone()).and_then(|r| satisfy(n, r)) else {
                continue;
            };
            // Both must still hold (the second may have overwritten the first).
            if intent::holds(std::slice::from_ref(m), &r)
                && intent::holds(std::slice::from_ref(n), &r)
            {
                out.push(r);
            }
        }
    }
    out
}

/// `/api` prefix: `/api`, `/api/`, `/api/x` and `/apix`.
fn path_boundaries(m: &Match, r: &Request) -> Vec<Request> {
    let Some(p) = m.path.as_ref().and_then(|p| p.prefix.as_deref()) else {
        return Vec::new();
    };
    let bare = p.trim_end_matches('/');
    [
        bare.to_owned(),
        format!("{bare}/"),
        format!("{bare}/x"),
        format!("{bare}x"),
    ]
    .into_iter()
    .filter(|x| x.starts_with('/'))
    .map(|path| Request { path, ..r.clone() })
    .collect()
}

/// `r` changed to satisfy `m`, when a value can be found for each
/// condition.
fn satisfy(m: &Match, mut r: Request) -> Option<Request> {
    if let Some(p) = &m.path {
        r.path = match &p.prefix {
            Some(prefix) => format!("{}/x", prefix.trim_end_matches('/')),
            None => value(p)?,
        };
    }
    if let Some(method) = &m.method {
        r.method = method.to_ascii_uppercase();
    }
    for (k, v) in &m.headers {
        r.headers.insert(k.to_ascii_lowercase(), value(v)?);
    }
    if !m.cookies.is_empty() {
        let mut jar: Vec<String> = Vec::new();
        for (k, v) in &m.cookies {
            jar.push(format!("{k}={}", value(v)?));
        }
        r.headers.insert("cookie".into(), jar.join("; "));
    }
    for (k, v) in &m.query_params {
        r.query.insert(k.clone(), value(v)?);
    }
    Some(r)
}

/// A value `m` matches: the exact value, the prefix and a suffix, or the
/// first of a few candidates a regex matches.
fn value(m: &StringMatch) -> Option<String> {
    if let Some(e) = &m.exact {
        return Some(e.clone());
    }
    if let Some(p) = &m.prefix {
        return Some(format!("{p}x"));
    }
    let re = regex::Regex::new(&format!("^(?:{})$", m.regex.as_deref()?)).ok()?;
    let literal: String = m
        .regex
        .as_deref()?
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "/-_".contains(*c))
        .collect();
    let candidates = [
        "1",
        "true",
        "on",
        "yes",
        "a",
        "",
        "/",
        "Mozilla/5.0 (Linux; Android 14)",
        literal.as_str(),
    ];
    let found = candidates.iter().find(|c| re.is_match(c));
    found.map(|c| (*c).to_owned())
}

/// Requests for the allow list: each path and method a rule names, the
/// path's boundaries, and a method none names.
fn access_shapes(s: &ServiceIntent, base: &Request) -> Vec<Request> {
    let mut out = Vec::new();
    for rule in s.spec.access.iter().flat_map(|a| a.allow.iter()) {
        let mut paths: Vec<String> = Vec::new();
        for p in &rule.paths {
            match p.strip_suffix('*') {
                Some(prefix) => {
                    paths.push(format!("{prefix}x"));
                    paths.push(prefix.to_owned());
                    paths.push(prefix.trim_end_matches('/').to_owned());
                }
                None => {
                    paths.push(p.clone());
                    paths.push(format!("{p}/x"));
                }
            }
        }
        if paths.is_empty() {
            paths.push(base.path.clone());
        }
        let mut methods: Vec<String> = rule
            .methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        methods.push("DELETE".into());
        for path in paths.iter().filter(|p| p.starts_with('/')) {
            for method in &methods {
                out.push(Request {
                    method: method.clone(),
                    path: path.clone(),
                    ..base.clone()
                });
            }
        }
    }
    out
}
