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
use serde_json::{json, Map, Value};

use super::precedence::first_match;
use super::{
    backend_name, backend_service_name, backend_services, cookie_regex, gateway_duration,
    l7_routes, regex_escape, EmitError, Emitter, Feature, Support,
};
use crate::ir::{Backend, Ir, Port, RouteAction, Service};
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
                "a path-prefix rewrite only when every match of the route is a path prefix",
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

fn string_match_type(m: &StringMatch, prefix_type: &str) -> (String, String) {
    if let Some(v) = &m.exact {
        ("Exact".into(), v.clone())
    } else if let Some(v) = &m.prefix {
        if prefix_type == "PathPrefix" {
            ("PathPrefix".into(), v.clone())
        } else {
            (
                "RegularExpression".into(),
                format!("^{}.*", regex_escape(v)),
            )
        }
    } else {
        (
            "RegularExpression".into(),
            m.regex.clone().unwrap_or_default(),
        )
    }
}

pub(crate) fn http_match(m: &Match, grpc: bool) -> Value {
    let mut v = Map::new();
    let mut headers = Vec::new();
    for (k, sm) in &m.headers {
        let (t, val) = string_match_type(sm, "");
        headers.push(json!({"type": t, "name": k, "value": val}));
    }
    for (name, sm) in &m.cookies {
        headers.push(
            json!({"type": "RegularExpression", "name": "cookie", "value": cookie_regex(name, sm)}),
        );
    }
    if !headers.is_empty() {
        v.insert("headers".into(), headers.into());
    }
    if grpc {
        return Value::Object(v);
    }
    if let Some(p) = &m.path {
        let (t, val) = string_match_type(p, "PathPrefix");
        v.insert("path".into(), json!({"type": t, "value": val}));
    }
    if let Some(method) = &m.method {
        v.insert("method".into(), method.to_ascii_uppercase().into());
    }
    if !m.query_params.is_empty() {
        let q: Vec<Value> = m
            .query_params
            .iter()
            .map(|(k, sm)| {
                let (t, val) = string_match_type(sm, "");
                json!({"type": t, "name": k, "value": val})
            })
            .collect();
        v.insert("queryParams".into(), q.into());
    }
    Value::Object(v)
}

/// A `RequestRedirect` filter (Gateway API's shape, which Linkerd's
/// HTTPRoute shares).
pub(crate) fn request_redirect(rd: &Redirect) -> Value {
    let mut v = Map::new();
    if let Some(p) = &rd.path {
        v.insert(
            "path".into(),
            json!({"type": "ReplaceFullPath", "replaceFullPath": p}),
        );
    }
    if let Some(h) = &rd.host {
        v.insert("hostname".into(), h.clone().into());
    }
    v.insert("statusCode".into(), rd.code.unwrap_or(302).into());
    json!({"type": "RequestRedirect", "requestRedirect": v})
}

/// A rule's `backendRefs`: the per-version backend Services of the
/// service, or of another service (on the port its route chose; its own
/// Service when it has no versions).
pub(crate) fn backend_refs(s: &Service, backends: &[Backend], port: &Port) -> Value {
    if backends.is_empty() {
        return json!([{"name": s.host, "port": port.port}]);
    }
    backends
        .iter()
        .map(|b| {
            let (name, port) = match b.service.as_deref() {
                Some(o) if b.version.is_empty() => (o.host.clone(), o.port),
                Some(o) => (backend_name(&o.host, &b.version), o.port),
                None => (backend_service_name(s, &b.version), port.port),
            };
            let mut r = json!({"name": name, "port": port, "weight": b.weight});
            // A sticky canary's cookie, on this backend's responses only
            // (`HTTPBackendRef.filters`: "executed if and only if the
            // request is being forwarded to the backend defined here").
            if let Some(c) = &b.set_cookie {
                r["filters"] = json!([{
                    "type": "ResponseHeaderModifier",
                    "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": c}]},
                }]);
            }
            // Named for a ReferenceGrant the user keeps (reported).
            if let Some(o) = b.service.as_deref().filter(|o| o.namespace != s.namespace) {
                r["namespace"] = o.namespace.clone().into();
            }
            r
        })
        .collect::<Vec<_>>()
        .into()
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
pub(crate) fn push_rule(
    rules: &mut Vec<Value>,
    rule: Map<String, Value>,
    matches: Vec<Value>,
    max: usize,
) {
    if matches.is_empty() {
        rules.push(Value::Object(rule));
        return;
    }
    for chunk in matches.chunks(max) {
        let mut r = Map::new();
        r.insert("matches".into(), chunk.to_vec().into());
        r.extend(rule.clone());
        rules.push(Value::Object(r));
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

fn route(ir: &Ir, s: &Service, port: &Port, name: &str, errors: &mut Vec<EmitError>) -> MeshObject {
    let grpc = port.protocol == Protocol::Grpc;
    let mut rules = Vec::new();
    let ordered = ordered_matches(NAME, s, MAX_MATCHES, MAX_RULES, errors);
    for (r, items) in s.routes.iter().zip(&ordered) {
        let mut rule = Map::new();
        let ms: Vec<Value> = items.iter().map(|m| http_match(m, grpc)).collect();
        let mut filters = Vec::new();
        match &r.action {
            RouteAction::Redirect(rd) => {
                if grpc {
                    errors.push(EmitError::new(
                        NAME,
                        &s.origin,
                        format!("route `{}`: a gRPC route cannot redirect", r.name),
                    ));
                    continue;
                }
                filters.push(request_redirect(rd));
            }
            RouteAction::Forward(backends) => {
                if let Some(rw) = &r.rewrite {
                    let mut v = Map::new();
                    if let Some(h) = &rw.host {
                        v.insert("hostname".into(), h.clone().into());
                    }
                    if let Some(p) = &rw.path_prefix {
                        // ReplacePrefixMatch needs every match to be a path prefix.
                        let prefixed = !r.matches.is_empty()
                            && r.matches
                                .iter()
                                .all(|m| m.path.as_ref().is_some_and(|p| p.prefix.is_some()));
                        if prefixed && !grpc {
                            v.insert(
                                "path".into(),
                                json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": p}),
                            );
                        } else {
                            errors.push(EmitError::new(
                                NAME,
                                &s.origin,
                                format!("route `{}`: Gateway API rewrites a path prefix only when every match is a path prefix", r.name),
                            ));
                        }
                    }
                    if !v.is_empty() && !grpc {
                        filters.push(json!({"type": "URLRewrite", "urlRewrite": v}));
                    }
                }
                if let Some(m) = r.mirror.as_ref().filter(|m| {
                    !backends
                        .iter()
                        .any(|b| b.is_own(&m.version) && b.weight > 0)
                }) {
                    let mut mirror = json!({"backendRef": {"name": backend_service_name(s, &m.version), "port": port.port}});
                    if m.percentage.fract() == 0.0 {
                        mirror["percent"] = (m.percentage as u32).into();
                    } else {
                        mirror["fraction"] = json!({"numerator": (m.percentage * 1000.0).round() as u32, "denominator": 100_000});
                    }
                    filters.push(json!({"type": "RequestMirror", "requestMirror": mirror}));
                }
                rule.insert("backendRefs".into(), backend_refs(s, backends, port));
                if !grpc {
                    let mut timeouts = Map::new();
                    if let Some(t) = r.timeout.or(s.timeout) {
                        timeouts.insert("request".into(), gateway_duration(t).into());
                    }
                    if let Some(t) = s.retries.as_ref().and_then(|r| r.per_try_timeout) {
                        timeouts.insert("backendRequest".into(), gateway_duration(t).into());
                    }
                    if !timeouts.is_empty() {
                        rule.insert("timeouts".into(), Value::Object(timeouts));
                    }
                    if let Some(rt) = &s.retries {
                        if ir.gateway_api_experimental {
                            let mut v = Map::new();
                            v.insert("attempts".into(), rt.attempts.into());
                            let (codes, unsupported) = retry_codes(&rt.retry_on);
                            if !codes.is_empty() {
                                v.insert("codes".into(), codes.into());
                            }
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
                            rule.insert("retry".into(), Value::Object(v));
                        } else {
                            errors.push(EmitError::new(
                                NAME,
                                &s.origin,
                                format!("service `{}`: HTTPRoute retries need the experimental Gateway API channel (meshplan.yaml `gatewayApi.channel: experimental`)", s.key()),
                            ));
                        }
                    }
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
            }
        }
        if !filters.is_empty() {
            rule.insert("filters".into(), filters.into());
        }
        push_rule(&mut rules, rule, ms, MAX_MATCHES);
    }
    check_rule_count(NAME, s, rules.len(), MAX_RULES, errors);
    let kind = if grpc { "GRPCRoute" } else { "HTTPRoute" };
    let spec = json!({
        "parentRefs": [{"group": "", "kind": "Service", "name": s.host, "port": port.port}],
        "rules": rules,
    });
    MeshObject::builder(NAME, API, kind, &s.namespace, name, &s.origin)
        .spec(spec)
        .build()
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
    fn header_prefixes_become_anchored_regexes() {
        let m = StringMatch {
            prefix: Some("v1.".into()),
            ..StringMatch::default()
        };
        assert_eq!(
            string_match_type(&m, ""),
            ("RegularExpression".into(), "^v1\\..*".into())
        );
        assert_eq!(
            string_match_type(&m, "PathPrefix"),
            ("PathPrefix".into(), "v1.".into())
        );
    }
}
