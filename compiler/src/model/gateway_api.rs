//! The Gateway API model in mesh mode (GAMMA): what a conformant mesh
//! does with a request to a Service, from the HTTPRoutes and GRPCRoutes
//! attached to it. Gateway API authorizes nothing (`authorization: None`).
//!
//! Sources (kubernetes-sigs/gateway-api):
//! - `site-src/mesh/index.md`, "Connecting routes and services" and
//!   "Request Flow": routes attach to a Service (`parentRef` kind
//!   `Service`); none attached, the request goes to the Service's own
//!   endpoints; routes attached but none matches, it is rejected (404,
//!   `HTTPRouteRule.Matches`).
//! - GEP-1426 "xRoutes Mesh Binding": "Ports" (no `port`: every port),
//!   "Route types" (a GRPCRoute wins over an HTTPRoute on one Service
//!   port), "Namespace boundaries" and "Multiple routes for a Service"
//!   (producer routes apply to every client; a namespace with consumer
//!   routes uses those instead), "`hostnames` field" (not used in mesh).
//! - `apis/v1/httproute_types.go`: `HTTPRouteRule.Matches` (precedence),
//!   `HTTPRouteRule.BackendRefs` (an invalid backend's share answers 500,
//!   one without endpoints 503; none: no forwarding), `BackendRef.Weight`,
//!   `HTTPRouteTimeouts`, `HTTPRouteRetry`, `HTTPPathModifier`
//!   (the ReplacePrefixMatch table), `HTTPRequestRedirectFilter`,
//!   `HTTPURLRewriteFilter`, `HTTPRequestMirrorFilter`.
//! - `apis/v1/grpcroute_types.go`: `GRPCRouteRule.Matches` precedence
//!   (characters of the matching service, then method, then header
//!   matches).
//!
//! Where the spec leaves a choice to the implementation, this model
//! takes: regular expressions match the whole value (RE2 full match); a
//! RegularExpression path ranks below every Exact and PathPrefix match;
//! a PathPrefix ranks by the characters of its value as written; a
//! `retry` without `attempts` retries nothing (the spec allows "none");
//! retries are reported on the listed `codes` only (the spec's SHOULD on
//! connection failures is left out); with several mirrors, the first is
//! reported; backendRef-level filters are ignored; `timeouts.backendRequest`
//! bounds each try, and the whole request when nothing is retried and no
//! `request` timeout is set.

use super::httproute::{
    self, find_service, first_max, forward_to_backends, grpc_hit, http_hit, replace_prefix,
    service_pods, sort_routes, status_conditions, weighted, Backend, Dialect, Filter, HttpHit,
    Match, PathMatch, PathModifier, Route, RouteKind, Rule, GATEWAY_GROUP,
};
use super::{
    object_name, Answer, Cluster, Forward, KubeService, Model, ModelError, Problem, Redirect,
    Request, Retries, Routing, ServicePort, Source,
};
use crate::object::MeshObject;

#[derive(Debug)]
pub struct GatewayApi;

impl Model for GatewayApi {
    fn answer(
        &self,
        objects: &[MeshObject],
        cluster: &Cluster,
        request: &Request,
    ) -> Result<Answer, ModelError> {
        Ok(Answer {
            routing: Some(routing(objects, cluster, request)?),
            authorization: None,
        })
    }
}

/// Regexes match whole values; of header matches naming one header only
/// the first counts (`HTTPHeaderMatch.Name`: "Subsequent entries with an
/// equivalent header name MUST be ignored").
const DIALECT: Dialect = Dialect {
    regex_whole: true,
    first_header_of_name: true,
    grpc_regex: true,
    grpc_post_only: false,
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
    let routes = attached(objects, svc, port, request)?;
    if routes.is_empty() {
        // Request Flow 3a: no route, the Service's own workload.
        let pods = service_pods(cluster, svc)
            .iter()
            .map(|p| p.id.clone())
            .collect();
        return Ok(Routing::Forward(Forward {
            pods: weighted(&[(1, pods)]),
            rule: format!("Service {}/{} (no route attached)", svc.namespace, svc.name),
            ..Forward::default()
        }));
    }
    match select(&routes, request)? {
        // Request Flow 3c; `HTTPRouteRule.Matches`: no match is a 404.
        None => Ok(Routing::NoRoute),
        Some(s) => apply(objects, cluster, request, &s),
    }
}

/// The routes that apply to `request` on `svc`'s `port`, in precedence
/// order (oldest, then `{namespace}/{name}`).
fn attached<'a>(
    objects: &'a [MeshObject],
    svc: &KubeService,
    port: &ServicePort,
    request: &Request,
) -> Result<Vec<Route<'a>>, ModelError> {
    let mut routes: Vec<Route<'a>> = httproute::routes(objects, &[GATEWAY_GROUP])?
        .into_iter()
        .filter(|r| {
            r.parents
                .iter()
                .any(|p| p.attaches(&svc.namespace, &svc.name, port, true))
        })
        .collect();
    // GEP-1426 "Multiple routes for a Service": requests from a namespace
    // with consumer routes use those; others the producer routes.
    let source_ns = match &request.source {
        Source::Workload { namespace, .. } => Some(namespace.as_str()),
        Source::Unauthenticated { namespace } => namespace.as_deref(),
    };
    let consumer =
        |r: &Route<'_>| r.namespace != svc.namespace && Some(r.namespace.as_str()) == source_ns;
    if routes.iter().any(consumer) {
        routes.retain(consumer);
    } else {
        routes.retain(|r| r.namespace == svc.namespace);
    }
    // GEP-1426 "Route types": GRPCRoute, then HTTPRoute; one type applies.
    if routes.iter().any(|r| r.kind == RouteKind::Grpc) {
        routes.retain(|r| r.kind == RouteKind::Grpc);
    }
    sort_routes(&mut routes);
    Ok(routes)
}

/// The matched rule, and the path match that matched (for prefix
/// rewrites).
struct Selected<'r, 'a> {
    route: &'r Route<'a>,
    rule: usize,
    path: Option<&'r PathMatch>,
}

/// The rule a request takes: the match of highest precedence across all
/// rules of all routes; ties keep the first route (in precedence order),
/// then the first rule, per `HTTPRouteRule.Matches`.
fn select<'r, 'a>(
    routes: &'r [Route<'a>],
    request: &Request,
) -> Result<Option<Selected<'r, 'a>>, ModelError> {
    let mut found = Vec::new();
    for route in routes {
        for (i, rule) in route.rules.iter().enumerate() {
            let err = |p: Problem| p.at(format!("rules[{i}]")).of(object_name(route.object));
            let at = |path| Selected {
                route,
                rule: i,
                path,
            };
            if rule.matches.is_empty() {
                // `GRPCRouteRule.Matches`: none matches every request.
                found.push(([0; 5], at(None)));
            }
            for m in &rule.matches {
                match m {
                    Match::Http(h) => {
                        if let Some(hit) = http_hit(h, request, DIALECT).map_err(err)? {
                            found.push((http_rank(&hit), at(Some(hit.path))));
                        }
                    }
                    Match::Grpc(g) => {
                        if let Some(hit) = grpc_hit(g, request, DIALECT).map_err(err)? {
                            found.push(([hit.service, hit.method, hit.headers, 0, 0], at(None)));
                        }
                    }
                }
            }
        }
    }
    Ok(first_max(found).map(|(_, s)| s))
}

/// `HTTPRouteRule.Matches` precedence: Exact path; PathPrefix with the
/// most characters; method; most header matches; most query matches.
fn http_rank(hit: &HttpHit<'_>) -> [usize; 5] {
    let (class, chars) = match hit.path {
        PathMatch::Exact(_) => (2, 0),
        PathMatch::Prefix(p) => (1, p.len()),
        PathMatch::Regex(_) => (0, 0),
    };
    [
        class,
        chars,
        usize::from(hit.method),
        hit.headers,
        hit.query,
    ]
}

fn apply(
    objects: &[MeshObject],
    cluster: &Cluster,
    request: &Request,
    s: &Selected<'_, '_>,
) -> Result<Routing, ModelError> {
    let rule = &s.route.rules[s.rule];
    let err = |p: Problem| {
        p.at(format!("rules[{}]", s.rule))
            .of(object_name(s.route.object))
    };
    // `HTTPRequestRedirectFilter`: the response is the redirect.
    if let Some(r) = rule.filters.iter().find_map(|f| match f {
        Filter::Redirect(r) => Some(r),
        _ => None,
    }) {
        return Ok(Routing::Redirect(Redirect {
            code: r.status,
            path: modified_path(r.path.as_ref(), s.path, request).map_err(err)?,
            host: r.host.clone(),
        }));
    }
    // `HTTPRouteRule.BackendRefs`: "If unspecified, the rule performs no
    // forwarding".
    if rule.backends.is_empty() {
        return Ok(Routing::NoRoute);
    }
    let mut f = Forward {
        rule: format!(
            "{} {}/{} rule {}",
            s.route.object.kind, s.route.namespace, s.route.name, s.rule
        ),
        ..Forward::default()
    };
    forward_to_backends(rule, |b| backend_pods(objects, cluster, b), &mut f)?;
    for filter in &rule.filters {
        match filter {
            Filter::Rewrite { host, path } => {
                f.rewritten_host = host.clone();
                f.rewritten_path = modified_path(path.as_ref(), s.path, request).map_err(err)?;
            }
            Filter::Mirror { backend, percent } if f.mirror.is_none() => {
                f.mirror = Some((backend_pods(objects, cluster, backend)?, *percent));
            }
            _ => {}
        }
    }
    resilience(rule, &mut f);
    Ok(Routing::Forward(f))
}

/// The path a redirect or rewrite gives (`HTTPPathModifier`).
fn modified_path(
    m: Option<&PathModifier>,
    matched: Option<&PathMatch>,
    request: &Request,
) -> Result<Option<String>, Problem> {
    match (m, matched) {
        (None, _) => Ok(None),
        (Some(PathModifier::Full(p)), _) => Ok(Some(p.clone())),
        (Some(PathModifier::Prefix(with)), Some(PathMatch::Prefix(p))) => {
            Ok(Some(replace_prefix(p, &request.path, with)))
        }
        (Some(PathModifier::Prefix(_)), _) => Err(Problem::invalid(
            "ReplacePrefixMatch is only compatible with a PathPrefix match",
        )),
    }
}

/// The pods a backendRef reaches. An invalid one (not a core Service, no
/// `port`, no such Service or port) reaches none: its share answers 500
/// (`HTTPBackendRef`); a Service without endpoints answers 503.
fn backend_pods(
    objects: &[MeshObject],
    cluster: &Cluster,
    b: &Backend,
) -> Result<Vec<String>, ModelError> {
    let Some(port) = b.port.filter(|_| b.is_service()) else {
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

/// Timeouts (`HTTPRouteTimeouts`: a zero duration disables one) and
/// retries (`HTTPRouteRetry`: attempts after the first try, on `codes`;
/// an explicit zero disables).
fn resilience(rule: &Rule, f: &mut Forward) {
    let request = rule.request_timeout.filter(|t| *t > 0);
    let backend = rule.backend_request_timeout.filter(|t| *t > 0);
    f.retries = rule.retry.as_ref().and_then(|r| {
        let attempts = r.attempts.unwrap_or(0);
        (attempts > 0).then(|| Retries {
            attempts,
            per_try_timeout_ms: backend,
            on: status_conditions(r.codes.iter().copied()),
        })
    });
    f.timeout_ms = request.or(backend.filter(|_| f.retries.is_none()));
}

#[cfg(test)]
mod tests;
