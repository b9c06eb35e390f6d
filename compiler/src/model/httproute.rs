//! Route objects as Gateway API defines them, read for the GAMMA
//! ([`super::gateway_api`]) and Linkerd ([`super::linkerd`]) models:
//! `gateway.networking.k8s.io` HTTPRoute and GRPCRoute, and Linkerd's
//! `policy.linkerd.io` HTTPRoute (the same shape, per Linkerd's HTTPRoute
//! reference, "Linkerd and Gateway API HTTPRoutes").
//!
//! Reading applies the defaults the CRD schemas give a stored object
//! (`apis/v1/httproute_types.go`, `apis/v1/shared_types.go`;
//! `policy.linkerd.io` CRD `httproutes.policy.linkerd.io` v1beta3):
//! a rule without `matches` matches `PathPrefix /`, a path match is
//! `PathPrefix /`, header and query matches are `Exact`, a backend is a
//! core `Service` of weight 1, a redirect answers 302, a parentRef without
//! `group` is `gateway.networking.k8s.io` (`policy.linkerd.io` for
//! Linkerd's HTTPRoute) and without `kind` a `Gateway`.
//!
//! Matching follows the spec's match semantics (`HTTPRouteMatch`,
//! `HTTPPathMatch`, `GRPCRouteMatch`); which matching rule wins is each
//! mesh's precedence, computed by the models from the hits returned here.

mod parse;

use std::collections::BTreeMap;

use super::{
    object_name, Cluster, Forward, KubeService, ModelError, Pod, Problem, Request, ServicePort,
    NO_POD,
};
use crate::object::MeshObject;

pub(crate) use parse::{arr, routes, string, string_map};

pub(crate) const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
pub(crate) const LINKERD_GROUP: &str = "policy.linkerd.io";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteKind {
    Http,
    Grpc,
}

/// One HTTPRoute or GRPCRoute.
#[derive(Debug)]
pub(crate) struct Route<'a> {
    pub object: &'a MeshObject,
    pub kind: RouteKind,
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    /// `metadata.creationTimestamp` (emitted objects have none).
    pub created: Option<String>,
    pub parents: Vec<ParentRef>,
    pub hostnames: Vec<String>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParentRef {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub port: Option<u32>,
    pub section: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    /// HTTP: never empty (defaulted); gRPC: empty matches every request.
    pub matches: Vec<Match>,
    pub filters: Vec<Filter>,
    pub backends: Vec<Backend>,
    /// `timeouts.request` / `timeouts.backendRequest`, in ms (`0s` kept).
    pub request_timeout: Option<u64>,
    pub backend_request_timeout: Option<u64>,
    pub retry: Option<RetrySpec>,
}

/// `rules[].retry` (experimental channel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetrySpec {
    pub attempts: Option<u32>,
    pub codes: Vec<u32>,
}

#[derive(Debug)]
pub(crate) enum Match {
    Http(HttpMatch),
    Grpc(GrpcMatch),
}

#[derive(Debug, Default)]
pub(crate) struct HttpMatch {
    pub path: PathMatch,
    pub method: Option<String>,
    pub headers: Vec<ValueMatch>,
    pub query: Vec<ValueMatch>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix("/".into())
    }
}

#[derive(Debug)]
pub(crate) struct ValueMatch {
    /// Lower-case for headers.
    pub name: String,
    pub regex: bool,
    pub value: String,
}

#[derive(Debug, Default)]
pub(crate) struct GrpcMatch {
    pub service: Option<String>,
    pub method: Option<String>,
    pub regex: bool,
    pub headers: Vec<ValueMatch>,
}

#[derive(Debug)]
pub(crate) enum Filter {
    Redirect(RedirectSpec),
    Rewrite {
        host: Option<String>,
        path: Option<PathModifier>,
    },
    Mirror {
        backend: Backend,
        percent: f64,
    },
    /// `RequestHeaderModifier`: no bearing on where a request goes.
    RequestHeaders,
    /// `ResponseHeaderModifier`: the `Set-Cookie` header it sets or adds
    /// (`set` over `add`), if any — a sticky canary's cookie.
    ResponseHeaders {
        set_cookie: Option<String>,
    },
    /// Any other type (`ExtensionRef`, `CORS`, `ExternalAuth`, …).
    Other,
}

#[derive(Debug)]
pub(crate) struct RedirectSpec {
    pub status: u32,
    pub host: Option<String>,
    pub path: Option<PathModifier>,
    /// `scheme` or `port` set: the location changes beyond path and host.
    pub scheme_or_port: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathModifier {
    Full(String),
    Prefix(String),
}

#[derive(Debug)]
pub(crate) struct Backend {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub port: Option<u32>,
    pub weight: u32,
    pub filters: Vec<Filter>,
}

impl Backend {
    /// A core Service (`group` `""`, or `core` as Linkerd also accepts).
    pub fn is_service(&self) -> bool {
        self.kind == "Service" && is_core(&self.group)
    }
}

impl ParentRef {
    /// A core Service parent (GAMMA, GEP-1426: `kind: Service`, group `""`
    /// or `core` as the GAMMA docs write it).
    pub fn is_service(&self) -> bool {
        self.kind == "Service" && is_core(&self.group)
    }

    /// Whether this parentRef attaches to port `port` of Service
    /// `ns/name` (GEP-1426 "Ports": no `port`, every port).
    pub fn attaches(&self, ns: &str, name: &str, port: &ServicePort, sections: bool) -> bool {
        self.is_service()
            && self.namespace == ns
            && self.name == name
            && self.port.is_none_or(|p| p == port.port)
            && (!sections || self.section.as_ref().is_none_or(|s| *s == port.name))
    }
}

fn is_core(group: &str) -> bool {
    group.is_empty() || group == "core"
}

/// Where a rule's backends send requests: each pod's share (`weighted`),
/// and the `Set-Cookie` header the answers of each pod with a share get.
pub(crate) fn forward_to_backends(
    rule: &Rule,
    mut pods_of: impl FnMut(&Backend) -> Result<Vec<String>, ModelError>,
    f: &mut Forward,
) -> Result<(), ModelError> {
    let mut parts = Vec::new();
    for b in &rule.backends {
        let pods = pods_of(b)?;
        if let Some(c) = set_cookie(&rule.filters, &b.filters).filter(|_| b.weight > 0) {
            f.set_cookie
                .extend(pods.iter().map(|p| (p.clone(), c.to_owned())));
        }
        parts.push((b.weight, pods));
    }
    f.pods = weighted(&parts);
    Ok(())
}

/// The `Set-Cookie` header answers of `backend` get: its own
/// `ResponseHeaderModifier` (`HTTPBackendRef.filters`: "executed if and
/// only if the request is being forwarded to the backend defined here"),
/// else the rule's.
fn set_cookie<'f>(rule: &'f [Filter], backend: &'f [Filter]) -> Option<&'f str> {
    let of = |fs: &'f [Filter]| {
        fs.iter().find_map(|f| match f {
            Filter::ResponseHeaders { set_cookie } => set_cookie.as_deref(),
            _ => None,
        })
    };
    of(backend).or_else(|| of(rule))
}

/// Sorts routes oldest first (no timestamp last), then by
/// `{namespace}/{name}`: the spec's tie-break across routes
/// (`HTTPRouteRule.Matches`), and Linkerd's `timestamp_then_name`.
pub(crate) fn sort_routes(routes: &mut [Route<'_>]) {
    routes.sort_by(|a, b| {
        (a.created.is_none(), &a.created, &a.namespace, &a.name).cmp(&(
            b.created.is_none(),
            &b.created,
            &b.namespace,
            &b.name,
        ))
    });
}

/// How a mesh reads the parts of a match the spec leaves to it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dialect {
    /// `true`: a regex must match the whole value (`^(?:re)$`); `false`:
    /// Linkerd's proxy, whose leftmost-first match must span the value.
    pub regex_whole: bool,
    /// Only the first of several header matches naming one header counts
    /// (`HTTPHeaderMatch.Name`).
    pub first_header_of_name: bool,
    /// A GRPCRoute `RegularExpression` method match is a regex (Linkerd
    /// compares the strings as written).
    pub grpc_regex: bool,
    /// A gRPC match requires `POST` (Linkerd's `grpc/match.rs`).
    pub grpc_post_only: bool,
}

/// Whether `pattern` matches `value`, as `dialect` reads regexes.
pub(crate) fn regex_matches(pattern: &str, value: &str, d: Dialect) -> Result<bool, Problem> {
    let invalid = |e| Problem::regex(format!("invalid regular expression `{pattern}`"), e);
    if d.regex_whole {
        let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(invalid)?;
        return Ok(re.is_match(value));
    }
    let re = regex::Regex::new(pattern).map_err(invalid)?;
    Ok(re
        .find(value)
        .is_some_and(|m| m.start() == 0 && m.end() == value.len()))
}

/// A PathPrefix match: whole path elements, a trailing `/` of either
/// ignored (`PathMatchPathPrefix`: `/abc` matches `/abc`, `/abc/`,
/// `/abc/def`, not `/abcd`).
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path.trim_end_matches('/')
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What an HTTP match matched, for a mesh's precedence.
#[derive(Clone, Debug)]
pub(crate) struct HttpHit<'r> {
    pub path: &'r PathMatch,
    pub method: bool,
    pub headers: usize,
    pub query: usize,
}

/// The hit of `m` on `req`, if it matches (conditions ANDed,
/// `HTTPRouteMatch`).
pub(crate) fn http_hit<'r>(
    m: &'r HttpMatch,
    req: &Request,
    d: Dialect,
) -> Result<Option<HttpHit<'r>>, Problem> {
    if m.method.as_ref().is_some_and(|x| *x != req.method) {
        return Ok(None);
    }
    let path_ok = match &m.path {
        PathMatch::Exact(p) => *p == req.path,
        PathMatch::Prefix(p) => prefix_matches(p, &req.path),
        PathMatch::Regex(re) => regex_matches(re, &req.path, d)?,
    };
    if !path_ok {
        return Ok(None);
    }
    let Some(headers) = headers_hit(&m.headers, req, d)? else {
        return Ok(None);
    };
    for q in &m.query {
        let ok = match req.query.get(&q.name) {
            Some(v) if q.regex => regex_matches(&q.value, v, d)?,
            Some(v) => *v == q.value,
            None => false,
        };
        if !ok {
            return Ok(None);
        }
    }
    Ok(Some(HttpHit {
        path: &m.path,
        method: m.method.is_some(),
        headers,
        query: m.query.len(),
    }))
}

/// How many header matches `ms` counts, if all hold.
fn headers_hit(ms: &[ValueMatch], req: &Request, d: Dialect) -> Result<Option<usize>, Problem> {
    let mut seen: Vec<&str> = Vec::new();
    for h in ms {
        if d.first_header_of_name && seen.contains(&h.name.as_str()) {
            continue;
        }
        seen.push(&h.name);
        let ok = match req.headers.get(&h.name) {
            Some(v) if h.regex => regex_matches(&h.value, v, d)?,
            Some(v) => *v == h.value,
            None => false,
        };
        if !ok {
            return Ok(None);
        }
    }
    Ok(Some(if d.first_header_of_name {
        seen.len()
    } else {
        ms.len()
    }))
}

/// What a gRPC match matched: characters of service and method, header
/// matches (`GRPCRouteRule.Matches` precedence).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct GrpcHit {
    pub service: usize,
    pub method: usize,
    pub headers: usize,
}

/// The hit of `m` on `req` (`/<service>/<method>`), if it matches.
pub(crate) fn grpc_hit(
    m: &GrpcMatch,
    req: &Request,
    d: Dialect,
) -> Result<Option<GrpcHit>, Problem> {
    if d.grpc_post_only && req.method != "POST" {
        return Ok(None);
    }
    let mut parts = req.path.split('/');
    let (Some(""), Some(service), Some(method)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    let part = |want: &Option<String>, got: &str| -> Result<Option<usize>, Problem> {
        match want {
            None => Ok(Some(0)),
            Some(w) if m.regex && d.grpc_regex => {
                Ok(regex_matches(w, got, d)?.then_some(got.len()))
            }
            Some(w) => Ok((w == got).then_some(w.len())),
        }
    };
    let (Some(s), Some(me)) = (part(&m.service, service)?, part(&m.method, method)?) else {
        return Ok(None);
    };
    let Some(headers) = headers_hit(&m.headers, req, d)? else {
        return Ok(None);
    };
    Ok(Some(GrpcHit {
        service: s,
        method: me,
        headers,
    }))
}

/// The first of the greatest keys (ties keep the first, as the spec's "FIRST
/// matching rule" and Linkerd's `first_max` do).
pub(crate) fn first_max<K: Ord, T>(items: impl IntoIterator<Item = (K, T)>) -> Option<(K, T)> {
    items
        .into_iter()
        .reduce(|a, b| if a.0 >= b.0 { a } else { b })
}

/// The path after replacing the matched prefix, per the table of
/// `HTTPPathModifier.ReplacePrefixMatch` (`/foo/bar`, `/foo`, `/xyz/` →
/// `/xyz/bar`; `/foo`, `/foo`, `` → `/`).
pub(crate) fn replace_prefix(prefix: &str, path: &str, with: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.get(prefix.len()..).unwrap_or_default();
    let with = with.trim_end_matches('/');
    match (with.is_empty(), rest.is_empty()) {
        (true, true) => "/".to_owned(),
        (true, false) => rest.to_owned(),
        (false, _) => format!("{with}{rest}"),
    }
}

/// A Service: the application's (from the cluster) or one the objects
/// define (`v1 Service`, the per-version backends), with its annotations.
#[derive(Clone, Debug)]
pub(crate) struct ServiceInfo {
    pub svc: KubeService,
    pub annotations: BTreeMap<String, String>,
}

/// The Service `ns/name`: an emitted one first (the object applied), else
/// the cluster's.
pub(crate) fn find_service(
    objects: &[MeshObject],
    cluster: &Cluster,
    ns: &str,
    name: &str,
) -> Result<Option<ServiceInfo>, ModelError> {
    let emitted = objects.iter().find(|o| {
        o.kind == "Service"
            && o.group().is_empty()
            && o.namespace.as_deref() == Some(ns)
            && o.name == name
    });
    if let Some(o) = emitted {
        return parse::service(o)
            .map(Some)
            .map_err(|p| p.of(object_name(o)));
    }
    Ok(cluster.service(ns, name).map(|svc| ServiceInfo {
        svc: svc.clone(),
        annotations: BTreeMap::new(),
    }))
}

/// The pods a Service's selector selects (none without a selector: such a
/// Service has no endpoints unless they are written by hand).
pub(crate) fn service_pods<'c>(cluster: &'c Cluster, svc: &KubeService) -> Vec<&'c Pod> {
    if svc.selector.is_empty() {
        return Vec::new();
    }
    cluster.select(&svc.namespace, &svc.selector).collect()
}

/// Percent per pod of weighted parts, each split equally among its pods;
/// a part without pods (an invalid backend: 500; no endpoints: 503) goes
/// to [`NO_POD`]. All weights zero: nothing is forwarded anywhere.
pub(crate) fn weighted(parts: &[(u32, Vec<String>)]) -> BTreeMap<String, f64> {
    let total: u64 = parts.iter().map(|(w, _)| u64::from(*w)).sum();
    let mut out = BTreeMap::new();
    if total == 0 {
        out.insert(NO_POD.to_owned(), 100.0);
        return out;
    }
    for (w, pods) in parts.iter().filter(|(w, _)| *w > 0) {
        let share = f64::from(*w) * 100.0 / total as f64;
        if pods.is_empty() {
            *out.entry(NO_POD.to_owned()).or_insert(0.0) += share;
        }
        for p in pods {
            *out.entry(p.clone()).or_insert(0.0) += share / pods.len() as f64;
        }
    }
    out
}

/// Retried status codes as the intent language names them: all of
/// 500–599 is `5xx`, else 502–504 is `gateway-error`, any other code its
/// number (`409`); sorted.
pub(crate) fn status_conditions(codes: impl IntoIterator<Item = u32>) -> Vec<String> {
    let mut codes: std::collections::BTreeSet<u32> = codes.into_iter().collect();
    let mut out = Vec::new();
    if (500..=599).all(|c| codes.contains(&c)) {
        codes.retain(|c| !(500..=599).contains(c));
        out.push("5xx".to_owned());
    } else if (502..=504).all(|c| codes.contains(&c)) {
        codes.retain(|c| !(502..=504).contains(c));
        out.push("gateway-error".to_owned());
    }
    out.extend(codes.iter().map(u32::to_string));
    out.sort();
    out
}

#[cfg(test)]
pub(crate) mod tests;
