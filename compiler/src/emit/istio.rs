//! Istio: VirtualService, DestinationRule, PeerAuthentication,
//! AuthorizationPolicy, and an EnvoyFilter for local rate limits.
//!
//! Per service:
//! - **DestinationRule** `<name>`: a subset per version; load balancer,
//!   connection pool, outlier detection; `ISTIO_MUTUAL` client TLS when the
//!   service's mTLS is strict (permissive leaves it to auto-mTLS, so
//!   clients still reach pods without a sidecar during a migration).
//! - **VirtualService** `<name>`: the routes in order, the default route
//!   last; retries, timeouts, faults and mirroring on every forwarding
//!   route; a weighted TCP route per tcp port.
//! - **PeerAuthentication** `<name>`: STRICT or PERMISSIVE for the
//!   service's workloads.
//! - **AuthorizationPolicy** `<name>` (ALLOW) when the service has an
//!   allow list with default deny: any ALLOW policy on a workload denies
//!   what it does not allow, so an empty list denies everything. When every
//!   service of a namespace denies by default, an allow-nothing
//!   `meshplan-default-deny` also covers the namespace's other workloads.
//! - **EnvoyFilter** `<name>-ratelimit` with Envoy's local rate limit
//!   filter, when a rate limit is set.

use std::collections::BTreeMap;

use meshplan_policy_lang::intent::service::{
    HashAlgorithm, LoadBalancerPolicy, Match, MtlsMode, RetryOn,
};
use serde_json::{json, Map, Value};

use meshplan_policy_lang::intent::Target;

use super::{
    cookie_regex, istio_string_match, prometheus, proto_duration, segment_prefix, EmitError,
    Emitter, Feature, PathBlock, Support,
};
use crate::ir::{Backend, Ir, Peer, Route, RouteAction, Service};
use crate::object::MeshObject;

const NAME: &str = "istio";
const NETWORKING: &str = "networking.istio.io/v1";
const SECURITY: &str = "security.istio.io/v1";
const ENVOY_FILTER: &str = "networking.istio.io/v1alpha3";

#[derive(Debug)]
pub struct Istio;

impl Emitter for Istio {
    fn target(&self) -> Target {
        Target::Istio
    }

    fn support(&self, f: Feature) -> Support {
        match f {
            Feature::Failover => Support::No(
                "Istio fails over by locality (localityLbSetting), not to named services, peers or datacenters",
            ),
            Feature::WeightedSplit
            | Feature::TcpSplit
            | Feature::HeaderMatch
            | Feature::CookieMatch
            | Feature::PathMatch
            | Feature::MethodMatch
            | Feature::QueryMatch
            | Feature::RouteOrder
            | Feature::ServiceRoute
            | Feature::Redirect
            | Feature::Rewrite
            | Feature::Timeout
            | Feature::Retries
            | Feature::PerTryTimeout
            | Feature::CircuitBreaker
            | Feature::ConnectionPool
            | Feature::LoadBalancing
            | Feature::SessionAffinity
            | Feature::FaultInjection
            | Feature::Mirroring
            | Feature::StickyCanary
            | Feature::RateLimit
            | Feature::StrictMtls
            | Feature::AllowList
            | Feature::AllowListL7
            | Feature::SloRules => Support::Yes,
        }
    }

    fn namespace_local(&self) -> bool {
        true
    }

    fn emit(&self, ir: &Ir, out: &mut Vec<MeshObject>, errors: &mut Vec<EmitError>) {
        let start = out.len();
        let metrics = ir.metrics(crate::metrics::Flavor::Istio);
        for s in &ir.services {
            out.push(destination_rule(s));
            match virtual_service(s) {
                Ok(vs) => out.push(vs),
                Err(e) => errors.push(e),
            }
            out.extend(peer_authentication(s));
            if let Some(p) = authorization_policy(ir, s) {
                out.push(p);
            }
            if let Some(f) = rate_limit_filter(s) {
                out.push(f);
            }
            if let Some(r) = prometheus::slo_rules(NAME, &metrics, s, errors) {
                out.push(r);
            }
        }
        out.extend(namespace_default_deny(ir));
        if let Some(rev) = &ir.istio_revision {
            for o in &mut out[start..] {
                o.body.edit(|body| {
                    if let Some(labels) = body
                        .pointer_mut("/metadata/labels")
                        .and_then(Value::as_object_mut)
                    {
                        labels.insert("istio.io/rev".into(), Value::String(rev.clone()));
                    }
                });
            }
        }
    }
}

fn obj(api: &'static str, kind: &'static str, s: &Service, name: &str, spec: Value) -> MeshObject {
    MeshObject::builder(NAME, api, kind, &s.namespace, name, &s.origin)
        .spec(spec)
        .build()
}

fn selector(s: &Service) -> Value {
    json!({"matchLabels": s.workload_selector})
}

fn destination_rule(s: &Service) -> MeshObject {
    let mut policy = Map::new();
    if s.mtls == MtlsMode::Strict {
        policy.insert("tls".into(), json!({"mode": "ISTIO_MUTUAL"}));
    }
    if let Some(lb) = &s.load_balancer {
        let v = match lb.policy {
            LoadBalancerPolicy::RoundRobin => json!({"simple": "ROUND_ROBIN"}),
            LoadBalancerPolicy::LeastRequest => json!({"simple": "LEAST_REQUEST"}),
            LoadBalancerPolicy::Random => json!({"simple": "RANDOM"}),
            LoadBalancerPolicy::ConsistentHash => {
                let h = lb.consistent_hash.clone().unwrap_or_default();
                let key = if let Some(header) = h.header {
                    json!({"httpHeaderName": header})
                } else if let Some(c) = h.cookie {
                    // A cookie without a lifetime is a session cookie.
                    let ttl = c.ttl.map(proto_duration).unwrap_or_else(|| "0s".into());
                    json!({"httpCookie": {"name": c.name, "ttl": ttl}})
                } else if let Some(q) = h.query_param {
                    json!({"httpQueryParameterName": q})
                } else {
                    json!({"useSourceIp": true})
                };
                let mut v = json!({"consistentHash": key});
                if h.algorithm == Some(HashAlgorithm::Maglev) {
                    v["consistentHash"]["maglev"] = json!({});
                }
                v
            }
        };
        policy.insert("loadBalancer".into(), v);
    }
    if let Some(cp) = &s.connection_pool {
        let mut tcp = Map::new();
        if let Some(n) = cp.max_connections {
            tcp.insert("maxConnections".into(), n.into());
        }
        if let Some(d) = cp.connect_timeout {
            tcp.insert("connectTimeout".into(), proto_duration(d).into());
        }
        let mut http = Map::new();
        if let Some(n) = cp.max_pending_requests {
            http.insert("http1MaxPendingRequests".into(), n.into());
        }
        if let Some(n) = cp.max_requests {
            http.insert("http2MaxRequests".into(), n.into());
        }
        if let Some(n) = cp.max_requests_per_connection {
            http.insert("maxRequestsPerConnection".into(), n.into());
        }
        if let Some(d) = cp.idle_timeout {
            http.insert("idleTimeout".into(), proto_duration(d).into());
        }
        let mut pool = Map::new();
        if !tcp.is_empty() {
            pool.insert("tcp".into(), Value::Object(tcp));
        }
        if !http.is_empty() {
            pool.insert("http".into(), Value::Object(http));
        }
        policy.insert("connectionPool".into(), Value::Object(pool));
    }
    if let Some(cb) = &s.circuit_breaker {
        let mut od = Map::new();
        od.insert("consecutive5xxErrors".into(), cb.consecutive_errors.into());
        if let Some(d) = cb.interval {
            od.insert("interval".into(), proto_duration(d).into());
        }
        if let Some(d) = cb.base_ejection_time {
            od.insert("baseEjectionTime".into(), proto_duration(d).into());
        }
        if let Some(p) = cb.max_ejection_percent {
            od.insert("maxEjectionPercent".into(), p.into());
        }
        policy.insert("outlierDetection".into(), Value::Object(od));
    }
    let mut spec = Map::new();
    spec.insert("host".into(), s.fqdn().into());
    if !policy.is_empty() {
        spec.insert("trafficPolicy".into(), Value::Object(policy));
    }
    if !s.versions.is_empty() {
        let subsets: Vec<Value> = s
            .versions
            .iter()
            .map(|v| json!({"name": v.name, "labels": v.labels}))
            .collect();
        spec.insert("subsets".into(), subsets.into());
    }
    obj(
        NETWORKING,
        "DestinationRule",
        s,
        &s.name,
        Value::Object(spec),
    )
}

/// A route's destinations: subsets of the service's host, or of another
/// service's (its DestinationRule defines them) on the port the intent
/// chose; a service without versions is its host alone.
fn destinations(s: &Service, backends: &[Backend], port: Option<u32>) -> Value {
    let dest = |b: Option<&Backend>| {
        let mut d = Map::new();
        let (host, port) = match b.and_then(|b| b.service.as_deref()) {
            Some(other) => (other.fqdn(), Some(other.port)),
            None => (s.fqdn(), port),
        };
        d.insert("host".into(), host.into());
        if let Some(sub) = b.map(|b| b.version.as_str()).filter(|v| !v.is_empty()) {
            d.insert("subset".into(), sub.into());
        }
        if let Some(p) = port {
            d.insert("port".into(), json!({"number": p}));
        }
        Value::Object(d)
    };
    // A sticky canary's cookie: `headers.response.add` of the destination
    // (HTTPRouteDestination `headers`: "Header manipulation rules",
    // applied only when that destination answers).
    let with_cookie = |mut v: Value, b: &Backend| {
        if let Some(c) = &b.set_cookie {
            v["headers"] = json!({"response": {"add": {"Set-Cookie": c}}});
        }
        v
    };
    match backends {
        [] => json!([{"destination": dest(None)}]),
        [one] => json!([with_cookie(json!({"destination": dest(Some(one))}), one)]),
        many => many
            .iter()
            .map(|b| with_cookie(json!({"destination": dest(Some(b)), "weight": b.weight}), b))
            .collect::<Vec<_>>()
            .into(),
    }
}

/// The match blocks of one intent match item, each with the part of a
/// path prefix it covers. Istio's `uri.prefix` is a plain string prefix
/// (Envoy's route `prefix`), so a segment-wise prefix becomes two blocks
/// (`segment_prefix`), ORed as Istio ORs a route's match blocks.
fn http_match(s: &Service, m: &Match) -> Result<Vec<(Value, Option<PathBlock>)>, EmitError> {
    let mut v = Map::new();
    let mut headers = Map::new();
    for (k, sm) in &m.headers {
        headers.insert(k.clone(), istio_string_match(sm));
    }
    if m.cookies.len() > 1 {
        return Err(EmitError::new(
            NAME,
            &s.origin,
            "Istio matches cookies through the single `cookie` header: one match item can test one cookie; split the cookies into separate match items",
        ));
    }
    for (name, sm) in &m.cookies {
        headers.insert("cookie".into(), json!({"regex": cookie_regex(name, sm)}));
    }
    if !headers.is_empty() {
        v.insert("headers".into(), Value::Object(headers));
    }
    if let Some(method) = &m.method {
        v.insert(
            "method".into(),
            json!({"exact": method.to_ascii_uppercase()}),
        );
    }
    if !m.query_params.is_empty() {
        let q: BTreeMap<&String, Value> = m
            .query_params
            .iter()
            .map(|(k, sm)| (k, istio_string_match(sm)))
            .collect();
        v.insert("queryParams".into(), json!(q));
    }
    let Some(p) = &m.path else {
        return Ok(vec![(Value::Object(v), None)]);
    };
    let Some(prefix) = &p.prefix else {
        v.insert("uri".into(), istio_string_match(p));
        return Ok(vec![(Value::Object(v), None)]);
    };
    Ok(segment_prefix(prefix)
        .into_iter()
        .map(|block| {
            let mut v = v.clone();
            let uri = match &block {
                PathBlock::Whole(p) => json!({"exact": p}),
                PathBlock::Below(p) => json!({"prefix": p}),
            };
            v.insert("uri".into(), uri);
            (Value::Object(v), Some(block))
        })
        .collect())
}

pub(crate) fn retry_on(r: RetryOn) -> &'static str {
    match r {
        RetryOn::ServerError => "5xx",
        RetryOn::GatewayError => "gateway-error",
        RetryOn::Reset => "reset",
        RetryOn::ConnectFailure => "connect-failure",
        RetryOn::Retriable4xx => "retriable-4xx",
        RetryOn::RefusedStream => "refused-stream",
        RetryOn::Unavailable => "unavailable",
        RetryOn::Cancelled => "cancelled",
        RetryOn::DeadlineExceeded => "deadline-exceeded",
        RetryOn::ResourceExhausted => "resource-exhausted",
    }
}

fn virtual_service(s: &Service) -> Result<MeshObject, EmitError> {
    let mut http = Vec::new();
    if s.has_l7() {
        for r in &s.routes {
            http.extend(http_routes(s, r)?);
        }
    }
    // A tcp route's destinations carry no headers (TCPRoute has none): a
    // sticky canary's cookie is for http.
    let default = s.routes.last().and_then(|r| match &r.action {
        RouteAction::Forward(b) => Some(
            b.iter()
                .map(|b| Backend {
                    set_cookie: None,
                    ..b.clone()
                })
                .collect::<Vec<_>>(),
        ),
        RouteAction::Redirect(_) => None,
    });
    let tcp: Vec<Value> = s
        .ports
        .iter()
        .filter(|p| !p.protocol.is_l7())
        .map(|p| {
            json!({
                "match": [{"port": p.port}],
                "route": destinations(s, default.as_deref().unwrap_or(&[]), Some(p.port)),
            })
        })
        .collect();
    let mut spec = Map::new();
    spec.insert("hosts".into(), json!([s.fqdn()]));
    if !http.is_empty() {
        spec.insert("http".into(), http.into());
    }
    if !tcp.is_empty() {
        spec.insert("tcp".into(), tcp.into());
    }
    Ok(obj(
        NETWORKING,
        "VirtualService",
        s,
        &s.name,
        Value::Object(spec),
    ))
}

/// The http routes of one intent route: one, or one per rewrite target
/// when a path-prefix rewrite must replace `/api` in `/api` but `/api/` in
/// `/api/v1` (Istio replaces the matched string; the intent, the matched
/// segments). Consecutive, so first match still picks the same route.
fn http_routes(s: &Service, r: &Route) -> Result<Vec<Value>, EmitError> {
    let mut blocks = Vec::new();
    for m in &r.matches {
        blocks.extend(http_match(s, m)?);
    }
    let Some(to) = r.rewrite.as_ref().and_then(|rw| rw.path_prefix.as_deref()) else {
        let blocks = blocks.into_iter().map(|(v, _)| v).collect();
        return Ok(vec![http_route(s, r, blocks, None)?]);
    };
    // A route per rewrite target, in the order of the first block of each.
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for (v, block) in blocks {
        // No path condition: the prefix `/` matched (`check` refuses a
        // prefix rewrite with exact or regex paths).
        let uri = block
            .unwrap_or_else(|| PathBlock::Below("/".into()))
            .rewrite(to);
        match groups.iter_mut().find(|(u, _)| *u == uri) {
            Some((_, g)) => g.push(v),
            None => groups.push((uri, vec![v])),
        }
    }
    if groups.is_empty() {
        let uri = PathBlock::Below("/".into()).rewrite(to);
        return Ok(vec![http_route(s, r, Vec::new(), Some(uri))?]);
    }
    groups
        .into_iter()
        .map(|(uri, blocks)| http_route(s, r, blocks, Some(uri)))
        .collect()
}

/// One http route: `blocks` ORed, `uri` the path-prefix rewrite.
fn http_route(
    s: &Service,
    r: &Route,
    blocks: Vec<Value>,
    uri: Option<String>,
) -> Result<Value, EmitError> {
    let mut route = Map::new();
    route.insert("name".into(), r.name.clone().into());
    if !blocks.is_empty() {
        route.insert("match".into(), blocks.into());
    }
    match &r.action {
        RouteAction::Redirect(rd) => {
            let mut v = Map::new();
            if let Some(p) = &rd.path {
                v.insert("uri".into(), p.clone().into());
            }
            if let Some(h) = &rd.host {
                v.insert("authority".into(), h.clone().into());
            }
            v.insert("redirectCode".into(), rd.code.unwrap_or(302).into());
            route.insert("redirect".into(), Value::Object(v));
        }
        RouteAction::Forward(backends) => {
            if let Some(rw) = &r.rewrite {
                let mut v = Map::new();
                if let Some(p) = uri {
                    v.insert("uri".into(), p.into());
                }
                if let Some(h) = &rw.host {
                    v.insert("authority".into(), h.clone().into());
                }
                route.insert("rewrite".into(), Value::Object(v));
            }
            route.insert("route".into(), destinations(s, backends, None));
            forward_settings(s, r, backends, &mut route);
        }
    }
    Ok(Value::Object(route))
}

/// Timeout, retries, fault and mirror of a forwarding route.
fn forward_settings(s: &Service, r: &Route, backends: &[Backend], route: &mut Map<String, Value>) {
    if let Some(t) = r.timeout.or(s.timeout) {
        route.insert("timeout".into(), proto_duration(t).into());
    }
    if let Some(rt) = &s.retries {
        let mut v = Map::new();
        v.insert("attempts".into(), rt.attempts.into());
        if let Some(d) = rt.per_try_timeout {
            v.insert("perTryTimeout".into(), proto_duration(d).into());
        }
        if !rt.retry_on.is_empty() {
            let on: Vec<&str> = rt.retry_on.iter().map(|r| retry_on(*r)).collect();
            v.insert("retryOn".into(), on.join(",").into());
        }
        route.insert("retries".into(), Value::Object(v));
    }
    if let Some(f) = &r.faults {
        let mut v = Map::new();
        if let Some(d) = &f.delay {
            v.insert(
                "delay".into(),
                json!({"percentage": {"value": d.percentage}, "fixedDelay": proto_duration(d.delay)}),
            );
        }
        if let Some(a) = &f.abort {
            v.insert(
                "abort".into(),
                json!({"percentage": {"value": a.percentage}, "httpStatus": a.http_status}),
            );
        }
        route.insert("fault".into(), Value::Object(v));
    }
    // Mirroring to a version this route already answers from would only
    // double its load.
    if let Some(m) = r.mirror.as_ref().filter(|m| {
        !backends
            .iter()
            .any(|b| b.is_own(&m.version) && b.weight > 0)
    }) {
        route.insert(
            "mirror".into(),
            json!({"host": s.fqdn(), "subset": m.version}),
        );
        route.insert("mirrorPercentage".into(), json!({"value": m.percentage}));
    }
}

fn peer_authentication(s: &Service) -> Option<MeshObject> {
    let mode = match s.mtls {
        MtlsMode::Strict => "STRICT",
        MtlsMode::Permissive => "PERMISSIVE",
        MtlsMode::Unmanaged => return None,
    };
    Some(obj(
        SECURITY,
        "PeerAuthentication",
        s,
        &s.name,
        json!({"selector": selector(s), "mtls": {"mode": mode}}),
    ))
}

fn authorization_policy(ir: &Ir, s: &Service) -> Option<MeshObject> {
    let access = s.access.as_ref().filter(|a| a.default_deny)?;
    let rules: Vec<Value> = access
        .rules
        .iter()
        .map(|r| {
            let mut principals = Vec::new();
            let mut namespaces = Vec::new();
            // Anyone: a rule without `from` admits every source, with an
            // identity or without (AuthorizationPolicy reference, `Rule`).
            let anyone = r.from.contains(&Peer::Anyone);
            for p in r.from.iter().filter(|_| !anyone) {
                match p {
                    Peer::ServiceAccount {
                        namespace, name, ..
                    } => principals.push(format!("{}/ns/{namespace}/sa/{name}", ir.trust_domain)),
                    Peer::Namespace(ns) => namespaces.push(ns.clone()),
                    Peer::AnyNamespace => namespaces.push("*".into()),
                    Peer::Anyone => {}
                }
            }
            let mut from = Vec::new();
            if !principals.is_empty() {
                from.push(json!({"source": {"principals": principals}}));
            }
            if !namespaces.is_empty() {
                from.push(json!({"source": {"namespaces": namespaces}}));
            }
            let mut op = Map::new();
            if !r.ports.is_empty() {
                // Authorization sees the workload's (container) port.
                let ports: Vec<String> =
                    r.ports.iter().map(|p| p.target_port.to_string()).collect();
                op.insert("ports".into(), ports.into());
            }
            if !r.methods.is_empty() {
                op.insert("methods".into(), r.methods.clone().into());
            }
            if !r.paths.is_empty() {
                op.insert("paths".into(), r.paths.clone().into());
            }
            let mut rule = Map::new();
            if !from.is_empty() {
                rule.insert("from".into(), from.into());
            }
            if !op.is_empty() {
                rule.insert("to".into(), json!([{"operation": op}]));
            }
            Value::Object(rule)
        })
        .collect();
    let mut spec = Map::new();
    spec.insert("selector".into(), selector(s));
    spec.insert("action".into(), "ALLOW".into());
    if !rules.is_empty() {
        spec.insert("rules".into(), rules.into());
    }
    Some(obj(
        SECURITY,
        "AuthorizationPolicy",
        s,
        &s.name,
        Value::Object(spec),
    ))
}

/// An allow-nothing policy per namespace whose every service denies by
/// default (a namespace with a service that does not would be broken by it).
fn namespace_default_deny(ir: &Ir) -> Vec<MeshObject> {
    let mut by_ns: BTreeMap<&str, Vec<&Service>> = BTreeMap::new();
    for s in &ir.services {
        by_ns.entry(&s.namespace).or_default().push(s);
    }
    by_ns
        .into_values()
        .filter(|svcs| {
            svcs.iter()
                .all(|s| s.access.as_ref().is_some_and(|a| a.default_deny))
        })
        .map(|svcs| {
            let first = svcs[0];
            MeshObject::builder(
                NAME,
                SECURITY,
                "AuthorizationPolicy",
                &first.namespace,
                "meshplan-default-deny",
                &first.origin,
            )
            .spec(json!({}))
            .build()
        })
        .collect()
}

fn rate_limit_filter(s: &Service) -> Option<MeshObject> {
    let rl = s.rate_limit.as_ref()?;
    let patches: Vec<Value> = rl
        .ports
        .iter()
        .map(|p| {
            json!({
                "applyTo": "HTTP_FILTER",
                "match": {
                    "context": "SIDECAR_INBOUND",
                    "listener": {
                        "portNumber": p.target_port,
                        "filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}
                    }
                },
                "patch": {
                    "operation": "INSERT_BEFORE",
                    "value": {
                        "name": "envoy.filters.http.local_ratelimit",
                        "typed_config": {
                            "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                            "type_url": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                            "value": {
                                "stat_prefix": "http_local_rate_limiter",
                                "token_bucket": {
                                    "max_tokens": rl.burst,
                                    "tokens_per_fill": rl.requests,
                                    "fill_interval": proto_duration(rl.per)
                                },
                                "filter_enabled": {"runtime_key": "local_rate_limit_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
                                "filter_enforced": {"runtime_key": "local_rate_limit_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}}
                            }
                        }
                    }
                }
            })
        })
        .collect();
    Some(obj(
        ENVOY_FILTER,
        "EnvoyFilter",
        s,
        &format!("{}-ratelimit", s.name),
        json!({"workloadSelector": {"labels": s.workload_selector}, "configPatches": patches}),
    ))
}
