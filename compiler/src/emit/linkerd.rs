//! Linkerd: routes between per-version Services, and identity-based
//! authorization.
//!
//! Per service:
//! - a backend **Service** per version (`<host>-<version>`), carrying
//!   Linkerd's failure-accrual annotations when a circuit breaker is set;
//! - an **HTTPRoute** (`policy.linkerd.io/v1beta3`) per http/http2/grpc
//!   port, parented to the Service: matches, weighted `backendRefs`,
//!   redirects, each rule's timeout (its own, else the service's: never a
//!   `timeout.linkerd.io` annotation, which would override every rule's);
//!   retries as `retry.linkerd.io/*` annotations (http status conditions
//!   only: resets, connection failures and gRPC ports are reported);
//! - with an allow list: a **Server** per port (`<name>-<port>`,
//!   `accessPolicy: deny`, so whatever is not authorized is refused), and per
//!   allow rule a **MeshTLSAuthentication** of the callers' identities
//!   (`<sa>.<ns>.serviceaccount.identity.linkerd.<trust-domain>`) and an
//!   **AuthorizationPolicy** per port — on the Server, or on an inbound
//!   HTTPRoute matching the rule's methods and paths;
//! - with a rate limit: a Server per limited port and an
//!   **HTTPLocalRateLimitPolicy**.
//!
//! Not expressible here (reported, never dropped): fault injection,
//! mirroring, rewrites, connection pools, load-balancing policies, and
//! traffic splits on tcp ports.

use meshplan_policy_lang::intent::service::{MtlsMode, RetryOn};
use meshplan_policy_lang::intent::{Protocol, Target};

use super::gateway_api::{
    backend_refs, check_rule_count, http_match, ordered_matches, push_rule, request_redirect,
};
use super::{
    backend_services, gateway_duration, l7_routes, prometheus, whole_per_second, EmitError,
    Emitter, Feature, Support,
};
use crate::api::gateway_networking_k8s_io::{HttpRouteRule, ParentRef, Timeouts};
use crate::api::policy_linkerd_io::{
    HttpLocalRateLimitPolicySpec, HttpRouteSpec, LabelSelector, Limit, Ref, ServerSpec, GROUP,
};
use crate::ir::{Ir, Peer, Port, RouteAction, Service};
use crate::object::MeshObject;

mod inbound;

const NAME: &str = "linkerd";
const POLICY: &str = "policy.linkerd.io/v1beta3";
const POLICY_ALPHA: &str = "policy.linkerd.io/v1alpha1";
/// Matches per HTTPRoute rule, and rules per route, the schema allows.
const MAX_MATCHES: usize = 8;
const MAX_RULES: usize = 16;

#[derive(Debug)]
pub struct Linkerd;

impl Emitter for Linkerd {
    fn target(&self) -> Target {
        Target::Linkerd
    }

    fn support(&self, f: Feature) -> Support {
        match f {
            Feature::TcpSplit => Support::No("Linkerd's HTTPRoute splits http traffic only"),
            Feature::Rewrite => Support::No(""),
            Feature::ConnectionPool => Support::No(""),
            Feature::LoadBalancing | Feature::SessionAffinity => {
                Support::No("Linkerd always balances by latency, EWMA")
            }
            Feature::FaultInjection | Feature::Mirroring => Support::No(""),
            Feature::Failover => Support::No("failover needs the linkerd-failover extension"),
            Feature::CircuitBreaker => Support::Partial(
                "failure accrual on the backend Services: consecutive failures and the minimum penalty; `interval` and `maxEjectionPercent` have no Linkerd equivalent and are reported",
            ),
            Feature::RateLimit => Support::Partial(
                "HTTPLocalRateLimitPolicy counts whole requests per second: other rates are reported",
            ),
            Feature::RouteOrder => Support::Partial(super::ROUTE_ORDER_NOTE),
            Feature::Retries => Support::Partial(
                "on response status only (`5xx`, `gateway-error`, `retriable-4xx` as 409), on http ports: retries on resets or failed connections, and on gRPC ports (Linkerd reads gRPC conditions only from a GRPCRoute or the Service), are reported",
            ),
            // A Server on every port (`all-authenticated`, or `deny` with
            // an allow list) refuses plain text.
            Feature::StrictMtls => Support::Yes,
            Feature::WeightedSplit
            | Feature::HeaderMatch
            | Feature::CookieMatch
            | Feature::PathMatch
            | Feature::MethodMatch
            | Feature::QueryMatch
            | Feature::ServiceRoute
            | Feature::Redirect
            | Feature::Timeout
            | Feature::PerTryTimeout
            | Feature::StickyCanary
            | Feature::AllowList
            | Feature::AllowListL7
            | Feature::SloRules => Support::Yes,
        }
    }

    fn namespace_local(&self) -> bool {
        true
    }

    fn emit(&self, ir: &Ir, out: &mut Vec<MeshObject>, errors: &mut Vec<EmitError>) {
        let metrics = ir.metrics(crate::metrics::Flavor::Linkerd);
        for s in &ir.services {
            if let Some(cb) = &s.circuit_breaker {
                if cb.interval.is_some() || cb.max_ejection_percent.is_some() {
                    errors.push(EmitError::new(
                        NAME,
                        &s.origin,
                        format!("service `{}`: Linkerd's failure accrual has no circuit-breaker `interval` or `maxEjectionPercent`", s.key()),
                    ));
                }
            }
            out.extend(backend_services(NAME, s, &failure_accrual(s)));
            for (p, name) in l7_routes(s) {
                out.push(route(s, p, &name, errors));
            }
            inbound::authorization(ir, s, out, errors);
            rate_limit(s, out, errors);
            if let Some(r) = prometheus::slo_rules(NAME, &metrics, s, errors) {
                out.push(r);
            }
        }
    }
}

/// Failure accrual (Linkerd's circuit breaking) is configured on the
/// Services clients route to: the backends.
fn failure_accrual(s: &Service) -> Vec<(&'static str, String)> {
    let Some(cb) = &s.circuit_breaker else {
        return Vec::new();
    };
    let mut a = vec![
        ("balancer.linkerd.io/failure-accrual", "consecutive".into()),
        (
            "balancer.linkerd.io/failure-accrual-consecutive-max-failures",
            cb.consecutive_errors.to_string(),
        ),
    ];
    if let Some(d) = cb.base_ejection_time {
        a.push((
            "balancer.linkerd.io/failure-accrual-consecutive-min-penalty",
            gateway_duration(d),
        ));
    }
    a
}

/// The `retry.linkerd.io/http` conditions of `on` (Linkerd's retries
/// reference: `5xx`, `gateway-error`, a status code or a range), and the
/// conditions Linkerd cannot retry on: it retries on a response's status
/// only, never on a reset or a failed connection. gRPC conditions do not
/// apply to an http port. `None`: no condition applies to http at all.
fn http_retry_conditions(on: &[RetryOn]) -> (Option<String>, Vec<RetryOn>) {
    if on.is_empty() {
        // Linkerd's documented default condition.
        return (Some("5xx".into()), Vec::new());
    }
    let mut v: Vec<&str> = Vec::new();
    let mut unsupported = Vec::new();
    for r in on {
        let c = match r {
            RetryOn::ServerError => "5xx",
            RetryOn::GatewayError => "gateway-error",
            // Istio's `retriable-4xx` is 409 Conflict only.
            RetryOn::Retriable4xx => "409",
            RetryOn::Reset | RetryOn::ConnectFailure | RetryOn::RefusedStream => {
                unsupported.push(*r);
                continue;
            }
            RetryOn::Unavailable
            | RetryOn::Cancelled
            | RetryOn::DeadlineExceeded
            | RetryOn::ResourceExhausted => continue,
        };
        if !v.contains(&c) {
            v.push(c);
        }
    }
    ((!v.is_empty()).then(|| v.join(",")), unsupported)
}

/// The route of `port`. Timeouts are each rule's own `timeouts.request`
/// (the route's, else the service's): Linkerd's timeouts reference says a
/// `timeout.linkerd.io/*` annotation on the route applies to every rule and
/// wins over a rule's field, so an annotation would override the routes'
/// own timeouts. Retries are annotations of the whole route (no per-rule
/// retries exist), their conditions per Linkerd's retries reference.
fn route(s: &Service, port: &Port, name: &str, errors: &mut Vec<EmitError>) -> MeshObject {
    let mut rules = Vec::new();
    let ordered = ordered_matches(NAME, s, MAX_MATCHES, MAX_RULES, errors);
    for (r, items) in s.routes.iter().zip(&ordered) {
        let rule = match &r.action {
            RouteAction::Redirect(rd) => HttpRouteRule {
                filters: vec![request_redirect(rd)],
                ..HttpRouteRule::default()
            },
            RouteAction::Forward(backends) => HttpRouteRule {
                backend_refs: backend_refs(s, backends, port),
                timeouts: r.timeout.or(s.timeout).map(|t| Timeouts {
                    request: Some(gateway_duration(t)),
                    ..Timeouts::default()
                }),
                ..HttpRouteRule::default()
            },
        };
        push_rule(
            &mut rules,
            rule,
            items.iter().map(http_match).collect(),
            MAX_MATCHES,
        );
    }
    check_rule_count(NAME, s, rules.len(), MAX_RULES, errors);
    let mut b = MeshObject::builder(NAME, POLICY, "HTTPRoute", &s.namespace, name, &s.origin);
    for (k, v) in retry_annotations(s, port, errors) {
        b = b.annotation(k, &v);
    }
    b.spec_typed(&HttpRouteSpec {
        parent_refs: vec![ParentRef {
            group: "core",
            kind: "Service",
            name: &s.host,
            port: Some(port.port),
        }],
        rules,
    })
    .build()
}

/// The retry annotations of an HTTPRoute of `port`; what Linkerd cannot
/// express is reported.
fn retry_annotations(
    s: &Service,
    port: &Port,
    errors: &mut Vec<EmitError>,
) -> Vec<(&'static str, String)> {
    let Some(rt) = s.retries.as_ref().filter(|r| r.attempts > 0) else {
        return Vec::new();
    };
    if port.protocol == Protocol::Grpc {
        // `retry.linkerd.io/grpc` is "not valid on an HTTPRoute resource"
        // (Linkerd's retries reference): only on a GRPCRoute or the
        // Service, neither of which meshplan emits for Linkerd.
        errors.push(EmitError::new(
            NAME,
            &s.origin,
            format!("service `{}`: Linkerd reads gRPC retry conditions only from a GRPCRoute or the Service, not from the HTTPRoute meshplan emits for port `{}`", s.key(), port.name),
        ).of(Feature::Retries));
        return Vec::new();
    }
    let (conditions, unsupported) = http_retry_conditions(&rt.retry_on);
    if !unsupported.is_empty() {
        let names: Vec<&str> = unsupported
            .iter()
            .map(|r| super::istio::retry_on(*r))
            .collect();
        errors.push(
            EmitError::new(
                NAME,
                &s.origin,
                format!(
                    "service `{}`: Linkerd retries on response status codes only, not on {}",
                    s.key(),
                    names.join(", ")
                ),
            )
            .of(Feature::Retries),
        );
    }
    let Some(conditions) = conditions else {
        return Vec::new();
    };
    let mut a = vec![
        ("retry.linkerd.io/http", conditions),
        ("retry.linkerd.io/limit", rt.attempts.to_string()),
    ];
    if let Some(t) = rt.per_try_timeout {
        a.push(("retry.linkerd.io/timeout", gateway_duration(t)));
    }
    a
}

fn server_name(s: &Service, p: &Port) -> String {
    format!("{}-{}", s.name, p.name)
}

/// A Server; `deny` refuses whatever no AuthorizationPolicy allows.
fn server(s: &Service, p: &Port, access_policy: &str) -> MeshObject {
    let protocol = match p.protocol {
        Protocol::Http => "HTTP/1",
        Protocol::Http2 => "HTTP/2",
        Protocol::Grpc => "gRPC",
        Protocol::Tcp => "opaque",
    };
    let spec = ServerSpec {
        access_policy,
        pod_selector: LabelSelector {
            match_labels: s
                .workload_selector
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        },
        port: p.target_port,
        proxy_protocol: protocol,
    };
    MeshObject::builder(
        NAME,
        POLICY,
        "Server",
        &s.namespace,
        &server_name(s, p),
        &s.origin,
    )
    .spec_typed(&spec)
    .build()
}

fn identity(ir: &Ir, p: &Peer) -> String {
    let td = &ir.trust_domain;
    match p {
        Peer::ServiceAccount {
            namespace, name, ..
        } => {
            format!("{name}.{namespace}.serviceaccount.identity.linkerd.{td}")
        }
        Peer::Namespace(ns) => format!("*.{ns}.serviceaccount.identity.linkerd.{td}"),
        // Under strict mTLS, anyone is any meshed identity; otherwise a
        // NetworkAuthentication admits callers without one (`inbound`).
        Peer::Anyone => "*".into(),
        Peer::AnyNamespace => "*".into(),
    }
}

/// Whether every port of `s` gets a Server: an allow list denies what
/// it does not name, and STRICT mTLS refuses plain text — which Linkerd
/// does only for a port behind a Server (`all-authenticated`); without
/// one, its default policy admits everyone.
fn has_servers(s: &Service) -> bool {
    s.access.as_ref().is_some_and(|a| a.default_deny) || s.mtls == MtlsMode::Strict
}

fn rate_limit(s: &Service, out: &mut Vec<MeshObject>, errors: &mut Vec<EmitError>) {
    let Some(rl) = &s.rate_limit else { return };
    let Some(rps) = whole_per_second(NAME, "Linkerd", s, rl, errors) else {
        return;
    };
    for p in &rl.ports {
        if !has_servers(s) {
            out.push(server(s, p, "all-unauthenticated"));
        }
        let server = server_name(s, p);
        let spec = HttpLocalRateLimitPolicySpec {
            target_ref: Ref {
                group: GROUP,
                kind: "Server",
                name: &server,
            },
            total: Limit {
                requests_per_second: rps,
            },
        };
        out.push(
            MeshObject::builder(
                NAME,
                POLICY_ALPHA,
                "HTTPLocalRateLimitPolicy",
                &s.namespace,
                &format!("{}-{}-ratelimit", s.name, p.name),
                &s.origin,
            )
            .spec_typed(&spec)
            .build(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_conditions_are_what_linkerd_can_retry_on() {
        assert_eq!(http_retry_conditions(&[]), (Some("5xx".into()), vec![]));
        // Before: `reset` silently became nothing and `unavailable` alone
        // became a retry on 5xx.
        assert_eq!(
            http_retry_conditions(&[RetryOn::GatewayError, RetryOn::Reset]),
            (Some("gateway-error".into()), vec![RetryOn::Reset])
        );
        assert_eq!(
            http_retry_conditions(&[RetryOn::Unavailable]),
            (None, vec![])
        );
        assert_eq!(
            http_retry_conditions(&[RetryOn::ServerError, RetryOn::Retriable4xx]),
            (Some("5xx,409".into()), vec![])
        );
    }
}
