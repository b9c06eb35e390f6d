//! The Linkerd model (2.16+): routing as the client's outbound proxy does
//! it, and authorization as each destination pod's inbound proxy does it.
//!
//! Sources (linkerd/website `2-edge`/`2.16`, linkerd/linkerd2 policy
//! controller, linkerd/linkerd2-proxy):
//! - Reference "HTTPRoute" (parentReference, producer and consumer routes,
//!   httpRouteTimeouts) and "Timeouts", "Retries" (see [`policy`]);
//!   "Retries and Timeouts": "retries and timeouts are performed on the
//!   outbound (client) side ... the source of the traffic must be meshed".
//!   Routing is likewise the client proxy's (HTTPRoutes with a Service
//!   parent are outbound policy): a caller without a proxy
//!   ([`Source::Unauthenticated`]) reaches the Service's pods through
//!   kube-proxy, with no route, timeout or retry.
//! - Policy controller `outbound/index.rs` (producer routes apply to every
//!   client namespace, consumer routes to their own, both together),
//!   `index/http.rs` (`convert_gateway_filter`: RequestMirror, URLRewrite
//!   and ExtensionRef are "not supported" and fail the route's conversion,
//!   so the route is not used; `convert_backend`: a backend without port,
//!   of another kind, or naming no Service is invalid; a
//!   `gateway.networking.k8s.io` rule's `timeouts` is not read, a
//!   `policy.linkerd.io` rule's `timeouts.request` is, after the route's
//!   annotation), `grpc/src/outbound.rs` (GRPCRoutes, if any, replace the
//!   HTTPRoutes; routes sorted by creation time then name),
//!   `grpc/src/outbound/http.rs` (a rule without backends goes to the
//!   parent Service; a rule whose timeouts are unset uses the Service's; a
//!   rule without retry the Service's; an invalid backend answers 500;
//!   no route at all: a default route to the Service).
//! - Proxy `linkerd/http/route/src/lib.rs` (`find`: host match, then the
//!   best match of each rule, ties keep the first route and rule),
//!   `http/match.rs` (rank: path length, method, header count, query
//!   count), `http/match/path.rs` (Exact, Prefix and Regex compared by
//!   the characters matched only; a prefix matches whole segments; a regex
//!   must span the path), `grpc/match.rs` (POST only; service, method,
//!   headers), `http/filter/redirect.rs` (a redirect to the request's own
//!   location is ignored; ReplacePrefixMatch appends the rest after the
//!   matched prefix's length).
//!
//! Authorization is [`authz`]'s.

mod authz;
mod policy;

use self::policy::{Retry, ServicePolicy, Timeouts};
use super::httproute::{
    self, find_service, first_max, forward_to_backends, grpc_hit, http_hit, service_pods,
    sort_routes, weighted, Backend, Dialect, Filter, HttpHit, Match, PathMatch, PathModifier,
    RedirectSpec, Route, RouteKind, ServiceInfo, GATEWAY_GROUP, LINKERD_GROUP,
};
use super::{
    object_name, Answer, Cluster, Forward, KubeService, Model, ModelError, Problem, Redirect,
    Request, Routing, ServicePort, Source, NO_POD,
};
use crate::object::MeshObject;

#[derive(Debug)]
pub struct Linkerd;

impl Model for Linkerd {
    fn answer(
        &self,
        objects: &[MeshObject],
        cluster: &Cluster,
        request: &Request,
    ) -> Result<Answer, ModelError> {
        Ok(Answer {
            routing: Some(routing(objects, cluster, request)?),
            authorization: Some(authz::verdicts(objects, cluster, request)?),
        })
    }
}

/// How the proxy matches (`linkerd/http/route`): a regex's leftmost match
/// must span the value; every header match counts; a GRPCRoute
/// `RegularExpression` method match is compared as written (the
/// controller's `routes::grpc::try_match` keeps its strings); gRPC
/// matches need `POST`.
const DIALECT: Dialect = Dialect {
    regex_whole: false,
    first_header_of_name: false,
    grpc_regex: false,
    grpc_post_only: true,
};

fn routing(
    objects: &[MeshObject],
    cluster: &Cluster,
    request: &Request,
) -> Result<Routing, ModelError> {
    let Some(info) = find_service(objects, cluster, &request.namespace, &request.service)? else {
        return Ok(Routing::NoRoute);
    };
    let svc = &info.svc;
    let Some(port) = svc.ports.iter().find(|p| p.port == request.port) else {
        return Ok(Routing::NoRoute);
    };
    let Source::Workload {
        namespace: client_ns,
        ..
    } = &request.source
    else {
        return Ok(Routing::Forward(Forward {
            pods: own_pods(cluster, svc),
            rule: format!(
                "Service {}/{} via kube-proxy (unmeshed client)",
                svc.namespace, svc.name
            ),
            ..Forward::default()
        }));
    };
    let defaults = ServicePolicy::of(&info.annotations);
    let routes = outbound_routes(objects, svc, port, client_ns)?;
    if routes.is_empty() {
        let mut f = Forward {
            pods: own_pods(cluster, svc),
            rule: format!("Service {}/{} (default route)", svc.namespace, svc.name),
            ..Forward::default()
        };
        settle(&mut f, &defaults.timeouts, defaults.http_retry.as_ref());
        return Ok(Routing::Forward(f));
    }
    let refs: Vec<&Route<'_>> = routes.iter().map(|o| &o.route).collect();
    match select(&refs, request)? {
        // No route matches: the proxy answers 404.
        None => Ok(Routing::NoRoute),
        Some(c) => apply(
            objects,
            cluster,
            request,
            &routes[c.route],
            &c,
            &info,
            &defaults,
        ),
    }
}

fn own_pods(cluster: &Cluster, svc: &KubeService) -> std::collections::BTreeMap<String, f64> {
    let pods = service_pods(cluster, svc)
        .iter()
        .map(|p| p.id.clone())
        .collect();
    weighted(&[(1, pods)])
}

/// A route the controller converted, with its annotations read.
struct Outbound<'a> {
    route: Route<'a>,
    timeouts: Timeouts,
    retry: Option<Retry>,
}

/// The outbound routes of `svc:port` for a client in `client_ns`, in the
/// controller's order.
fn outbound_routes<'a>(
    objects: &'a [MeshObject],
    svc: &KubeService,
    port: &ServicePort,
    client_ns: &str,
) -> Result<Vec<Outbound<'a>>, ModelError> {
    let mut routes = httproute::routes(objects, &[GATEWAY_GROUP, LINKERD_GROUP])?;
    routes.retain(|r| {
        r.parents
            .iter()
            .any(|p| p.attaches(&svc.namespace, &svc.name, port, false))
            && (r.namespace == svc.namespace || r.namespace == client_ns)
    });
    sort_routes(&mut routes);
    let mut out: Vec<Outbound<'a>> = routes.into_iter().filter_map(convert).collect();
    if out.iter().any(|o| o.route.kind == RouteKind::Grpc) {
        out.retain(|o| o.route.kind == RouteKind::Grpc);
    }
    Ok(out)
}

/// The route as the controller converts it, or `None` when conversion
/// fails (an unsupported filter, an invalid regex or annotation): such a
/// route is not served.
fn convert(route: Route<'_>) -> Option<Outbound<'_>> {
    if !servable(&route) {
        return None;
    }
    let timeouts = policy::timeouts(&route.annotations).ok()?;
    let retry = match route.kind {
        RouteKind::Http => policy::http_retry(&route.annotations).ok()?,
        RouteKind::Grpc => policy::grpc_retry(&route.annotations).ok()?,
    };
    Some(Outbound {
        route,
        timeouts,
        retry,
    })
}

/// Whether the controller accepts a route's rules: only header modifiers
/// and redirects as filters, and regexes that compile.
fn servable(route: &Route<'_>) -> bool {
    let re_ok = |re: &str| regex::Regex::new(re).is_ok();
    route.rules.iter().all(|rule| {
        rule.filters.iter().all(supported)
            && rule.matches.iter().all(|m| match m {
                Match::Http(h) => {
                    !matches!(&h.path, PathMatch::Regex(re) if !re_ok(re))
                        && h.headers
                            .iter()
                            .chain(&h.query)
                            .all(|v| !v.regex || re_ok(&v.value))
                }
                Match::Grpc(g) => g.headers.iter().all(|v| !v.regex || re_ok(&v.value)),
            })
    })
}

fn supported(f: &Filter) -> bool {
    matches!(
        f,
        Filter::Redirect(_) | Filter::RequestHeaders | Filter::ResponseHeaders { .. }
    )
}

/// The route and rule a request takes, and the path match that matched.
struct Chosen<'r> {
    route: usize,
    rule: usize,
    path: Option<&'r PathMatch>,
}

/// The proxy's `find`: the greatest (host match, request match) over every
/// match of every rule of every route, the first kept on ties.
fn select<'r>(
    routes: &[&'r Route<'_>],
    request: &Request,
) -> Result<Option<Chosen<'r>>, ModelError> {
    let mut found = Vec::new();
    for (ri, route) in routes.iter().enumerate() {
        let Some(host) = host_rank(route, request) else {
            continue;
        };
        for (i, rule) in route.rules.iter().enumerate() {
            let err = |p: Problem| p.of(object_name(route.object));
            let at = |path| Chosen {
                route: ri,
                rule: i,
                path,
            };
            if rule.matches.is_empty() {
                // No match in the list: the rule's implicit default match.
                found.push(((host, [0; 4]), at(None)));
            }
            for m in &rule.matches {
                match m {
                    Match::Http(h) => {
                        if let Some(hit) = http_hit(h, request, DIALECT).map_err(err)? {
                            found.push(((host, http_rank(&hit, request)), at(Some(hit.path))));
                        }
                    }
                    Match::Grpc(g) => {
                        if let Some(hit) = grpc_hit(g, request, DIALECT).map_err(err)? {
                            found.push((
                                (host, [hit.service, hit.method, hit.headers, 0]),
                                at(None),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(first_max(found).map(|(_, c)| c))
}

/// `RequestMatch`'s order: characters of the path matched (`PathMatch`
/// compares lengths only: Exact gets no precedence of its own), method,
/// header count, query count.
fn http_rank(hit: &HttpHit<'_>, request: &Request) -> [usize; 4] {
    let path = match hit.path {
        PathMatch::Exact(p) => p.len(),
        PathMatch::Prefix(p) if p == "/" => 1,
        PathMatch::Prefix(p) => p.trim_end_matches('/').len(),
        PathMatch::Regex(_) => request.path.len(),
    };
    [path, usize::from(hit.method), hit.headers, hit.query]
}

/// A route's host match (`hostnames` against the request's `host`
/// header, port stripped): `None` when it has hostnames and none matches;
/// no hostnames rank below any host match. Exact names rank above
/// wildcards, longer above shorter.
fn host_rank(route: &Route<'_>, request: &Request) -> Option<(usize, usize)> {
    if route.hostnames.is_empty() {
        return Some((0, 0));
    }
    let host = request
        .headers
        .get("host")?
        .split(':')
        .next()?
        .to_ascii_lowercase();
    route
        .hostnames
        .iter()
        .filter_map(|h| match h.strip_prefix("*.") {
            Some(suffix) => host
                .ends_with(&format!(".{suffix}"))
                .then_some((1, suffix.len())),
            None => h.eq_ignore_ascii_case(&host).then_some((2, h.len())),
        })
        .max()
}

fn apply(
    objects: &[MeshObject],
    cluster: &Cluster,
    request: &Request,
    o: &Outbound<'_>,
    c: &Chosen<'_>,
    parent: &ServiceInfo,
    defaults: &ServicePolicy,
) -> Result<Routing, ModelError> {
    let rule = &o.route.rules[c.rule];
    let label = format!(
        "{} {}/{} rule {}",
        o.route.object.kind, o.route.namespace, o.route.name, c.rule
    );
    for f in &rule.filters {
        if let Filter::Redirect(r) = f {
            match redirect(r, c.path, request) {
                Ok(Some(to)) => return Ok(Routing::Redirect(to)),
                Ok(None) => {}
                // `InvalidRedirect::ReplacePrefix`: the request fails (5xx).
                Err(()) => {
                    return Ok(Routing::Forward(Forward {
                        pods: [(NO_POD.to_owned(), 100.0)].into(),
                        rule: format!("{label} (invalid redirect)"),
                        ..Forward::default()
                    }));
                }
            }
        }
    }
    let mut f = Forward {
        rule: label,
        ..Forward::default()
    };
    if rule.backends.is_empty() {
        f.pods = own_pods(cluster, &parent.svc);
    } else {
        forward_to_backends(rule, |b| backend_pods(objects, cluster, b), &mut f)?;
    }
    let mut t = o.timeouts.clone();
    if o.route.object.group() == LINKERD_GROUP && t.request.is_none() {
        // "if both the field and the annotation are specified, the
        // annotation will take priority"; zero means no timeout (GEP-1742).
        t.request = rule.request_timeout.filter(|ms| *ms > 0);
    }
    if t.is_unset() {
        t = defaults.timeouts.clone();
    }
    let service_retry = match o.route.kind {
        RouteKind::Http => defaults.http_retry.as_ref(),
        RouteKind::Grpc => defaults.grpc_retry.as_ref(),
    };
    settle(&mut f, &t, o.retry.as_ref().or(service_retry));
    Ok(Routing::Forward(f))
}

/// Timeout and retries of a forwarded request: the request timeout (zero:
/// none); without one, the response timeout bounds a request that is not
/// retried.
fn settle(f: &mut Forward, t: &Timeouts, retry: Option<&Retry>) {
    f.retries = retry.and_then(Retry::performed);
    let response = t.response.filter(|ms| *ms > 0 && f.retries.is_none());
    f.timeout_ms = t.request.filter(|ms| *ms > 0).or(response);
}

/// The pods a backendRef reaches; none for an invalid backend (500) or a
/// Service without endpoints on the port.
fn backend_pods(
    objects: &[MeshObject],
    cluster: &Cluster,
    b: &Backend,
) -> Result<Vec<String>, ModelError> {
    // `convert_backend`: an unsupported backend filter invalidates it.
    let Some(port) = b
        .port
        .filter(|_| b.is_service() && b.filters.iter().all(supported))
    else {
        return Ok(Vec::new());
    };
    let Some(info) = find_service(objects, cluster, &b.namespace, &b.name)? else {
        return Ok(Vec::new());
    };
    if !info.svc.ports.iter().any(|p| p.port == port) {
        return Ok(Vec::new());
    }
    Ok(service_pods(cluster, &info.svc)
        .iter()
        .map(|p| p.id.clone())
        .collect())
}

/// The proxy's `RedirectRequest::apply`: `Ok(None)` when the location is
/// the request's own; `Err` for a prefix replacement without a prefix
/// match.
fn redirect(
    r: &RedirectSpec,
    matched: Option<&PathMatch>,
    request: &Request,
) -> Result<Option<Redirect>, ()> {
    let path = match &r.path {
        None => None,
        Some(PathModifier::Full(p)) => Some(p.clone()),
        Some(PathModifier::Prefix(with)) => match matched {
            Some(PathMatch::Prefix(p)) => Some(linkerd_prefix(p, &request.path, with)),
            _ => return Err(()),
        },
    };
    let same_path = path
        .as_ref()
        .is_none_or(|p| *p == request.path && request.query.is_empty());
    let same_host = r
        .host
        .as_ref()
        .is_none_or(|h| request.headers.get("host") == Some(h));
    if same_path && same_host && !r.scheme_or_port {
        return Ok(None);
    }
    Ok(Some(Redirect {
        code: r.status,
        path,
        host: r.host.clone(),
    }))
}

/// ReplacePrefixMatch as the proxy does it: the replacement, then what
/// follows the matched prefix's length (a `/` put between when missing).
/// Unlike the spec's table, a replacement ending in `/` keeps it
/// (`/xyz/` for `/foo/bar` gives `/xyz//bar`).
fn linkerd_prefix(prefix: &str, path: &str, with: &str) -> String {
    let len = match prefix {
        "/" => 1,
        p => p.trim_end_matches('/').len(),
    };
    let rest = path.get(len..).unwrap_or_default();
    let mut out = with.to_owned();
    if !rest.is_empty() && !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
