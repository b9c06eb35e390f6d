//! Gateway API in GAMMA (mesh) mode: routes attached to the Service itself.
//!
//! Per service:
//! - a backend **Service** per version (`<host>-<version>`), since Gateway
//!   API splits traffic between Services, not pod subsets;
//! - an **HTTPRoute** per http/http2 port, or a **GRPCRoute** per grpc
//!   port (`<name>`, or `<name>-<port>` when there are several), whose
//!   `parentRefs` name the Service and port: matches, weighted
//!   `backendRefs`, redirect/rewrite and RequestMirror filters, timeouts,
//!   and `retry` when the experimental channel is installed.
//!
//! Gateway API orders rules by match precedence (exact path, longest
//! prefix, method, headers, query parameters), not by position; meshplan's
//! routes are tried in order. Where the two disagree, `check` warns.
//!
//! Not expressible here (reported, never dropped): fault injection, local
//! rate limits, circuit breaking, connection pools, consistent hashing, mTLS
//! mode, allow lists (pair gateway-api with a policy target: istio,
//! linkerd, consul, cilium or networkpolicy), traffic splits on tcp ports.

use meshplan_policy_lang::intent::service::{Match, Redirect, RetryOn, StringMatch};
use meshplan_policy_lang::intent::{Protocol, Target};

use super::precedence::first_match;
use super::{
    backend_name, backend_service_name, backend_services, cookie_regex, gateway_duration,
    l7_routes, regex_escape, EmitError, Emitter, Feature, Support,
};
use crate::api::gateway_networking_k8s_io::{
    BackendRef, Filter, Fraction, GrpcRouteMatch, Header, HeaderModifier, HttpRouteMatch,
    MatchType, ParentRef, PathMatch, PathModifier, RequestMirror, RequestRedirect, Retry,
    RouteRule, RouteSpec, Timeouts, UrlRewrite, ValueMatch,
};
use crate::ir::{Backend, Ir, Port, Route, RouteAction, Service};
use crate::object::MeshObject;

const NAME: &str = "gateway-api";
const API: &str = "gateway.networking.k8s.io/v1";
/// Matches per HTTPRoute/GRPCRoute rule, and rules per route, the schema
/// allows.
const MAX_MATCHES: usize = 64;
const MAX_RULES: usize = 16;

#[derive(Debug)]
pub struct GatewayApi;

impl Emitter for GatewayApi {
    fn target(&self) -> Target {
        Target::GatewayApi
    }

    fn support(&self, f: Feature) -> Support {
        use super::features::{L7_POLICY, METRICS, MTLS, POLICY};
        match f {
            Feature::TcpSplit => Support::No("TCPRoute is not part of GAMMA"),
            Feature::Rewrite => Support::Partial(
                "a path-prefix rewrite only when every match of the route is a path prefix; none on a GRPCRoute: reported",
            ),
            Feature::Timeout => {
                Support::Partial("GRPCRoute has no timeouts: reported on grpc ports")
            }
            Feature::Retries => Support::Partial(
                "HTTPRoute `retry` needs the experimental channel and retries on the status codes every implementation honours (500, 502, 503, 504; 409): all of `5xx`, resets and failed connections are reported; GRPCRoute has none: reported",
            ),
            Feature::PerTryTimeout => Support::Partial(
                "the `backendRequest` timeout, with retries (experimental channel)",
            ),
            Feature::CircuitBreaker
            | Feature::ConnectionPool
            | Feature::LoadBalancing
            | Feature::SessionAffinity
            | Feature::FaultInjection
            | Feature::Failover
            | Feature::RateLimit => Support::No(""),
            Feature::StrictMtls => {
                Support::Elsewhere(MTLS, "GAMMA routes; the mesh underneath authenticates")
            }
            Feature::AllowList => Support::Elsewhere(
                POLICY,
                "GAMMA has no authorization: render a policy target alongside",
            ),
            Feature::AllowListL7 => Support::Elsewhere(L7_POLICY, ""),
            Feature::SloRules => Support::Elsewhere(
                METRICS,
                "SLO rules are written against a mesh's standard metrics",
            ),
            Feature::RouteOrder => Support::Partial(super::ROUTE_ORDER_NOTE),
            Feature::ServiceRoute => Support::Partial(
                "a service of the same namespace; another namespace's needs a ReferenceGrant there, which meshplan does not emit: reported",
            ),
            Feature::WeightedSplit
            | Feature::HeaderMatch
            | Feature::CookieMatch
            | Feature::PathMatch
            | Feature::MethodMatch
            | Feature::QueryMatch
            | Feature::Redirect
            | Feature::Mirroring
            | Feature::StickyCanary => Support::Yes,
        }
    }

    fn namespace_local(&self) -> bool {
        true
    }

    fn emit(&self, ir: &Ir, out: &mut Vec<MeshObject>, errors: &mut Vec<EmitError>) {
        for s in &ir.services {
            out.extend(backend_services(NAME, s, &[]));
            foreign_backends(NAME, s, errors);
            for (p, name) in l7_routes(s) {
                out.push(route(ir, s, p, &name, errors));
            }
        }
    }
}

/// A string match as Gateway API's type and value: a prefix is a
/// `PathPrefix` on a `path`, elsewhere an anchored regular expression.
fn string_match_type(m: &StringMatch, path: bool) -> (MatchType, String) {
    if let Some(v) = &m.exact {
        (MatchType::Exact, v.clone())
    } else if let Some(v) = &m.prefix {
        if path {
            (MatchType::PathPrefix, v.clone())
        } else {
            (
                MatchType::RegularExpression,
                format!("^{}.*", regex_escape(v)),
            )
        }
    } else {
        (
            MatchType::RegularExpression,
            m.regex.clone().unwrap_or_default(),
        )
    }
}

fn value_match(name: &str, m: &StringMatch) -> ValueMatch {
    let (kind, value) = string_match_type(m, false);
    ValueMatch {
        name: name.to_owned(),
        kind,
        value,
    }
}

/// The headers `m` matches, its cookies as regular expressions over the
/// `cookie` header.
fn header_matches(m: &Match) -> Vec<ValueMatch> {
    let mut headers: Vec<ValueMatch> = m.headers.iter().map(|(k, sm)| value_match(k, sm)).collect();
    headers.extend(m.cookies.iter().map(|(name, sm)| ValueMatch {
        name: "cookie".into(),
        kind: MatchType::RegularExpression,
        value: cookie_regex(name, sm),
    }));
    headers
}

pub(crate) fn http_match(m: &Match) -> HttpRouteMatch {
    HttpRouteMatch {
        headers: header_matches(m),
        method: m.method.as_ref().map(|x| x.to_ascii_uppercase()),
        path: m.path.as_ref().map(|p| {
            let (kind, value) = string_match_type(p, true);
            PathMatch { kind, value }
        }),
        query_params: m
            .query_params
            .iter()
            .map(|(k, sm)| value_match(k, sm))
            .collect(),
    }
}

/// A gRPC call's match: its headers (a GRPCRoute matches no path, HTTP
/// method or query parameter).
fn grpc_match(m: &Match) -> GrpcRouteMatch {
    GrpcRouteMatch {
        headers: header_matches(m),
        method: None,
    }
}

/// A `RequestRedirect` filter (Gateway API's shape, which Linkerd's
/// HTTPRoute shares).
pub(crate) fn request_redirect(rd: &Redirect) -> Filter {
    Filter::RequestRedirect(RequestRedirect {
        hostname: rd.host.clone(),
        path: rd.path.clone().map(PathModifier::ReplaceFullPath),
        status_code: rd.code.unwrap_or(302),
    })
}

/// A rule's `backendRefs`: the per-version backend Services of the
/// service, or of another service (on the port its route chose; its own
/// Service when it has no versions).
pub(crate) fn backend_refs(s: &Service, backends: &[Backend], port: &Port) -> Vec<BackendRef> {
    if backends.is_empty() {
        return vec![BackendRef::service(s.host.clone(), port.port)];
    }
    backends
        .iter()
        .map(|b| {
            let (name, port) = match b.service.as_deref() {
                Some(o) if b.version.is_empty() => (o.host.clone(), o.port),
                Some(o) => (backend_name(&o.host, &b.version), o.port),
                None => (backend_service_name(s, &b.version), port.port),
            };
            BackendRef {
                // A sticky canary's cookie, on this backend's responses
                // only (`HTTPBackendRef.filters`: "executed if and only if
                // the request is being forwarded to the backend defined
                // here").
                filters: b
                    .set_cookie
                    .iter()
                    .map(|c| {
                        Filter::ResponseHeaderModifier(HeaderModifier {
                            add: vec![Header {
                                name: "Set-Cookie",
                                value: c.clone(),
                            }],
                        })
                    })
                    .collect(),
                name,
                // Named for a ReferenceGrant the user keeps (reported).
                namespace: b
                    .service
                    .as_deref()
                    .filter(|o| o.namespace != s.namespace)
                    .map(|o| o.namespace.clone()),
                port,
                weight: Some(b.weight),
            }
        })
        .collect()
}

/// Reports a route to a Service of another namespace: Gateway API admits
/// such a `backendRef` only with a ReferenceGrant in that namespace
/// (HTTPBackendRef: "a ReferenceGrant is required in the referent
/// namespace"), else the backend is refused and its share answered 500.
/// meshplan does not emit one; rendered anyway (`unsupported: warning`),
/// the `backendRef` names the namespace for a grant the user keeps.
fn foreign_backends(emitter: &'static str, s: &Service, errors: &mut Vec<EmitError>) {
    for r in &s.routes {
        let RouteAction::Forward(backends) = &r.action else {
            continue;
        };
        if let Some(o) = backends
            .iter()
            .filter_map(|b| b.service.as_deref())
            .find(|o| o.namespace != s.namespace)
        {
            errors.push(
                EmitError::new(
                    emitter,
                    &s.origin,
                    format!(
                        "service `{}`: route `{}` sends to `{}/{}` in another namespace, which needs a ReferenceGrant there (meshplan emits none: until one exists, the route answers 500)",
                        s.key(),
                        r.name,
                        o.namespace,
                        o.name
                    ),
                )
                .of(Feature::ServiceRoute),
            );
        }
    }
}

/// The status codes of the retry conditions, and those the conditions
/// name that Gateway API cannot promise: its `codes` are only those it
/// requires implementations to honour (500, 502, 503, 504; 409 for
/// `retriable-4xx`, which it allows), so `5xx` is reported as partly
/// rendered, and resets and failed connections, which it leaves to each
/// implementation, as not rendered. gRPC conditions do not apply to an
/// HTTPRoute.
fn retry_codes(on: &[RetryOn]) -> (Vec<u32>, Vec<&'static str>) {
    let mut codes = Vec::new();
    let mut unsupported = Vec::new();
    for r in on {
        match r {
            RetryOn::ServerError => {
                codes.extend([500, 502, 503, 504]);
                unsupported.push("`5xx` beyond 500, 502, 503 and 504");
            }
            RetryOn::GatewayError => codes.extend([502, 503, 504]),
            RetryOn::Retriable4xx => codes.push(409),
            RetryOn::Reset => unsupported.push("`reset`"),
            RetryOn::ConnectFailure => unsupported.push("`connect-failure`"),
            RetryOn::RefusedStream => unsupported.push("`refused-stream`"),
            RetryOn::Unavailable
            | RetryOn::Cancelled
            | RetryOn::DeadlineExceeded
            | RetryOn::ResourceExhausted => {}
        }
    }
    codes.sort_unstable();
    codes.dedup();
    (codes, unsupported)
}

/// `rule` with `matches`, as several consecutive rules of at most `max`
/// matches each (the schema's limit; consecutive rules with one action
/// mean one rule).
pub(crate) fn push_rule<M: Clone>(
    rules: &mut Vec<RouteRule<M>>,
    rule: RouteRule<M>,
    matches: Vec<M>,
    max: usize,
) {
    if matches.is_empty() {
        rules.push(rule);
        return;
    }
    for chunk in matches.chunks(max) {
        rules.push(RouteRule {
            matches: chunk.to_vec(),
            ..rule.clone()
        });
    }
}

/// Reports a route of more rules than an HTTPRoute holds.
pub(crate) fn check_rule_count(
    emitter: &'static str,
    s: &Service,
    rules: usize,
    max: usize,
    errors: &mut Vec<EmitError>,
) {
    if rules > max {
        errors.push(
            EmitError::new(emitter, &s.origin, format!("service `{}`: keeping first-match order takes {rules} rules; a route holds at most {max}", s.key()))
                .of(Feature::RouteOrder),
        );
    }
}

/// Each route's match items under the rules' precedence: first match kept
/// (`precedence`), or the intent's own items and the reason it is not.
pub(crate) fn ordered_matches(
    emitter: &'static str,
    s: &Service,
    max_matches: usize,
    max_rules: usize,
    errors: &mut Vec<EmitError>,
) -> Vec<Vec<Match>> {
    match first_match(&s.routes, max_matches * max_rules, max_rules) {
        Ok(items) => items,
        Err(why) => {
            errors.push(
                EmitError::new(emitter, &s.origin, format!("service `{}`: {why}", s.key()))
                    .of(Feature::RouteOrder),
            );
            s.routes.iter().map(|r| r.matches.clone()).collect()
        }
    }
}

/// The HTTPRoute of an http/http2 port, or the GRPCRoute of a grpc port.
fn route(ir: &Ir, s: &Service, port: &Port, name: &str, errors: &mut Vec<EmitError>) -> MeshObject {
    let ordered = ordered_matches(NAME, s, MAX_MATCHES, MAX_RULES, errors);
    let parent_refs = vec![ParentRef {
        group: "",
        kind: "Service",
        name: &s.host,
        port: Some(port.port),
    }];
    let b = |kind| MeshObject::builder(NAME, API, kind, &s.namespace, name, &s.origin);
    if port.protocol == Protocol::Grpc {
        let rules = rules(ir, s, port, &ordered, grpc_match, errors);
        b("GRPCRoute").spec_typed(&RouteSpec { parent_refs, rules })
    } else {
        let rules = rules(ir, s, port, &ordered, http_match, errors);
        b("HTTPRoute").spec_typed(&RouteSpec { parent_refs, rules })
    }
    .build()
}

/// The rules of `s`'s routes on `port`, each with its `ordered` matches.
fn rules<M: Clone>(
    ir: &Ir,
    s: &Service,
    port: &Port,
    ordered: &[Vec<Match>],
    to_match: fn(&Match) -> M,
    errors: &mut Vec<EmitError>,
) -> Vec<RouteRule<M>> {
    let mut rules = Vec::new();
    for (r, items) in s.routes.iter().zip(ordered) {
        if let Some(rule) = rule(ir, s, port, r, errors) {
            push_rule(
                &mut rules,
                rule,
                items.iter().map(to_match).collect(),
                MAX_MATCHES,
            );
        }
    }
    check_rule_count(NAME, s, rules.len(), MAX_RULES, errors);
    rules
}

/// Route `r`'s rule, without its matches; `None` when a GRPCRoute cannot
/// hold it (a redirect).
fn rule<M>(
    ir: &Ir,
    s: &Service,
    port: &Port,
    r: &Route,
    errors: &mut Vec<EmitError>,
) -> Option<RouteRule<M>> {
    let grpc = port.protocol == Protocol::Grpc;
    let backends = match &r.action {
        RouteAction::Redirect(_) if grpc => {
            errors.push(EmitError::new(
                NAME,
                &s.origin,
                format!("route `{}`: a gRPC route cannot redirect", r.name),
            ));
            return None;
        }
        RouteAction::Redirect(rd) => {
            return Some(RouteRule {
                filters: vec![request_redirect(rd)],
                ..RouteRule::default()
            });
        }
        RouteAction::Forward(backends) => backends,
    };
    let mut rule = RouteRule {
        backend_refs: backend_refs(s, backends, port),
        filters: url_rewrite(s, r, grpc, errors)
            .into_iter()
            .chain(request_mirror(s, r, backends, port))
            .collect(),
        ..RouteRule::default()
    };
    if !grpc {
        rule.timeouts = timeouts(s, r);
        rule.retry = retry(ir, s, errors);
    } else if r.timeout.or(s.timeout).is_some() || s.retries.is_some() {
        errors.push(EmitError::new(
            NAME,
            &s.origin,
            format!(
                "service `{}`: GRPCRoute has no timeouts or retries",
                s.key()
            ),
        ));
    }
    Some(rule)
}

/// Route `r`'s `URLRewrite` filter, if it rewrites anything Gateway API
/// can: `ReplacePrefixMatch` replaces what a `PathPrefix` match matched,
/// so a path prefix is rewritten only when every match is one; a
/// GRPCRoute has no `URLRewrite` filter, so it rewrites nothing, and says so.
fn url_rewrite(s: &Service, r: &Route, grpc: bool, errors: &mut Vec<EmitError>) -> Option<Filter> {
    let rw = r.rewrite.as_ref()?;
    if grpc {
        errors.push(EmitError::new(
            NAME,
            &s.origin,
            format!("route `{}`: a GRPCRoute cannot rewrite the host or path (it has no URLRewrite filter)", r.name),
        ));
        return None;
    }
    let mut path = None;
    if let Some(p) = &rw.path_prefix {
        let prefixed = !r.matches.is_empty()
            && r.matches
                .iter()
                .all(|m| m.path.as_ref().is_some_and(|p| p.prefix.is_some()));
        if prefixed {
            path = Some(PathModifier::ReplacePrefixMatch(p.clone()));
        } else {
            errors.push(EmitError::new(
                NAME,
                &s.origin,
                format!("route `{}`: Gateway API rewrites a path prefix only when every match is a path prefix", r.name),
            ));
        }
    }
    if rw.host.is_none() && path.is_none() {
        return None;
    }
    Some(Filter::UrlRewrite(UrlRewrite {
        hostname: rw.host.clone(),
        path,
    }))
}

/// Route `r`'s `RequestMirror` filter, unless the mirror's version is
/// already one of the route's backends: a whole percentage as `percent`,
/// else as a `fraction` (thousandths of a percent).
fn request_mirror(s: &Service, r: &Route, backends: &[Backend], port: &Port) -> Option<Filter> {
    let m = r.mirror.as_ref().filter(|m| {
        !backends
            .iter()
            .any(|b| b.is_own(&m.version) && b.weight > 0)
    })?;
    let (percent, fraction) = if m.percentage.fract() == 0.0 {
        (Some(m.percentage as u32), None)
    } else {
        let fraction = Fraction {
            denominator: 100_000,
            numerator: (m.percentage * 1000.0).round() as u32,
        };
        (None, Some(fraction))
    };
    Some(Filter::RequestMirror(RequestMirror {
        backend_ref: BackendRef::service(backend_service_name(s, &m.version), port.port),
        fraction,
        percent,
    }))
}

/// The request's timeout (the route's, else the service's) and each
/// try's, when either is set.
fn timeouts(s: &Service, r: &Route) -> Option<Timeouts> {
    let t = Timeouts {
        backend_request: s
            .retries
            .as_ref()
            .and_then(|r| r.per_try_timeout)
            .map(gateway_duration),
        request: r.timeout.or(s.timeout).map(gateway_duration),
    };
    (t.backend_request.is_some() || t.request.is_some()).then_some(t)
}

/// The service's retries, with the experimental channel (`retry` is not
/// in the standard one); what it cannot retry on is reported.
fn retry(ir: &Ir, s: &Service, errors: &mut Vec<EmitError>) -> Option<Retry> {
    let rt = s.retries.as_ref()?;
    if !ir.gateway_api_experimental {
        errors.push(EmitError::new(
            NAME,
            &s.origin,
            format!("service `{}`: HTTPRoute retries need the experimental Gateway API channel (meshplan.yaml `gatewayApi.channel: experimental`)", s.key()),
        ));
        return None;
    }
    let (codes, unsupported) = retry_codes(&rt.retry_on);
    if !unsupported.is_empty() {
        errors.push(
            EmitError::new(
                NAME,
                &s.origin,
                format!(
                    "service `{}`: Gateway API's HTTPRoute retries on the status codes it lists, and implementations need only honour 500, 502, 503 and 504: not on {}",
                    s.key(),
                    unsupported.join(", ")
                ),
            )
            .of(Feature::Retries),
        );
    }
    Some(Retry {
        attempts: rt.attempts,
        codes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_codes_cover_what_every_implementation_honours() {
        let (codes, missing) = retry_codes(&[RetryOn::ServerError, RetryOn::GatewayError]);
        assert_eq!(codes, [500, 502, 503, 504]);
        assert_eq!(missing, ["`5xx` beyond 500, 502, 503 and 504"]);
        // Before: a reset silently retried nothing.
        assert_eq!(retry_codes(&[RetryOn::Reset]), (vec![], vec!["`reset`"]));
    }

    #[test]
    fn a_grpc_route_reports_the_rewrite_it_cannot_hold() {
        // Before: a host-only rewrite on a grpc port was dropped silently.
        let intent = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: web, namespace: shop }\nspec:\n  ports: [{ name: grpc, port: 9090, protocol: grpc }]\n  versions: [{ name: v1, labels: { app: web, version: v1 } }]\n  routes:\n    - name: other-host\n      match: [{ headers: { x-beta: { exact: \"1\" } } }]\n      destination: { version: v1 }\n      rewrite: { host: web-beta }\n";
        let ir = crate::testing::ir_of(&[("s.yaml", intent)], &Default::default());
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        GatewayApi.emit(&ir, &mut out, &mut errors);
        assert!(
            errors.iter().any(|e| e
                .message
                .contains("`other-host`: a GRPCRoute cannot rewrite")),
            "{errors:?}"
        );
        let route = out.iter().find(|o| o.kind == "GRPCRoute").unwrap();
        assert!(!route.body.json().contains("URLRewrite"));
    }

    #[test]
    fn header_prefixes_become_anchored_regexes() {
        let m = StringMatch {
            prefix: Some("v1.".into()),
            ..StringMatch::default()
        };
        assert_eq!(
            string_match_type(&m, false),
            (MatchType::RegularExpression, "^v1\\..*".into())
        );
        assert_eq!(
            string_match_type(&m, true),
            (MatchType::PathPrefix, "v1.".into())
        );
    }
}
