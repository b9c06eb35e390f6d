//! Consul service mesh on Kubernetes (`consul.hashicorp.com/v1alpha1`):
//! config entries as CRDs, named after the Kubernetes Service (Consul's
//! service name).
//!
//! Per service:
//! - **ServiceDefaults**: the protocol (Consul has one per service: ports of
//!   different protocols are reported), `mutualTLSMode`, inbound connection
//!   limit, instance-level rate limit;
//! - **ServiceResolver** when there are versions or balancing settings: a
//!   subset per version, filtered on service metadata
//!   (`Service.Meta.<label> == "<value>"`: the pods carry
//!   `consul.hashicorp.com/service-meta-<label>` annotations), the default
//!   subset, `connectTimeout`, the load balancer (`ring_hash` or `maglev`
//!   with hash policies for session affinity), and failover targets;
//! - **ServiceSplitter** when the default route splits (a canary): weights
//!   per subset;
//! - **ServiceRouter** when routes match, or timeouts or retries are set:
//!   one Consul route per match alternative, in order, to a subset; a last
//!   catch-all route carries the service's timeout and retries on to the
//!   splitter;
//! - **ServiceIntentions** for an allow list: a source per caller (the
//!   service account's name is the Consul service name), L7 `permissions`
//!   for methods and paths, and a `*` deny source for default deny;
//! - **PrometheusRule** `<name>-slos-consul` for its SLOs, over the Envoy
//!   sidecars' inbound metrics (see `prometheus.rs`).
//!
//! Routers, splitters and L7 permissions need protocol http, http2 or
//! grpc: on a tcp service they are errors. Circuit breaking (outlier
//! detection) and the pending/concurrent request limits are set by Consul on
//! each caller: every other service of the repository gets an
//! `upstreamConfig.overrides` entry for the service in its ServiceDefaults
//! (callers outside the repository keep their own settings).

use std::collections::BTreeMap;

use meshplan_policy_lang::intent::service::{
    HashAlgorithm, LoadBalancerPolicy, Match, MtlsMode, StringMatch,
};
use meshplan_policy_lang::intent::{Protocol, Target};
use serde_json::{json, Map, Value};

use super::features::{Feature, Support};
use super::istio::retry_on;
use super::prometheus;
use super::{
    cookie_regex, gateway_duration, regex_escape, segment_prefix, whole_per_second, EmitError,
    Emitter, PathBlock,
};
use crate::ir::{Backend, Ir, OtherService, Peer, Route, RouteAction, Service};
use crate::object::MeshObject;

const NAME: &str = "consul";
const API: &str = "consul.hashicorp.com/v1alpha1";

#[derive(Debug)]
pub struct Consul;

impl Emitter for Consul {
    fn target(&self) -> Target {
        Target::Consul
    }

    fn support(&self, f: Feature) -> Support {
        match f {
            Feature::TcpSplit => {
                Support::No("ServiceSplitter needs protocol http, http2 or grpc")
            }
            Feature::Redirect | Feature::FaultInjection | Feature::Mirroring => Support::No(""),
            Feature::PerTryTimeout => Support::No("ServiceRouter has no per-try timeout"),
            Feature::CircuitBreaker => Support::Partial(
                "Consul sets outlier detection on each caller: the callers rendered from this repository get it (an `upstreamConfig.overrides` entry in their ServiceDefaults); others keep their own settings",
            ),
            Feature::Rewrite => Support::Partial("a path-prefix rewrite; a host rewrite is reported"),
            Feature::ConnectionPool => Support::Partial(
                "`maxConnections` (maxInboundConnections), `connectTimeout` (ServiceResolver), `maxPendingRequests` and `maxRequests` (on the repository's callers, like circuit breaking); `maxRequestsPerConnection` and `idleTimeout` are reported",
            ),
            Feature::RateLimit => Support::Partial(
                "whole requests per second for the whole service: other rates, or a subset of ports, are reported",
            ),
            Feature::WeightedSplit => Support::Partial(
                "ServiceSplitter splits the default route; a weighted split on a matching route is reported",
            ),
            Feature::AllowList => Support::Partial(
                "intentions cover the whole service: rules limited to some ports are reported; naming a namespace needs `consul.namespaces: true` (Enterprise); with permissive mTLS, plain-text callers bypass intentions: reported",
            ),
            Feature::AllowListL7 => Support::Partial(
                "with permissive mTLS, plain-text callers bypass intentions: reported",
            ),
            Feature::HeaderMatch
            | Feature::CookieMatch
            | Feature::PathMatch
            | Feature::MethodMatch
            | Feature::QueryMatch
            | Feature::RouteOrder
            | Feature::ServiceRoute
            | Feature::Timeout
            | Feature::Retries
            | Feature::LoadBalancing
            | Feature::SessionAffinity
            | Feature::Failover
            | Feature::StickyCanary
            | Feature::StrictMtls
            | Feature::SloRules => Support::Yes,
        }
    }

    fn emit(&self, ir: &Ir, out: &mut Vec<MeshObject>, errors: &mut Vec<EmitError>) {
        let upstreams: Vec<(&Service, Value)> = ir
            .services
            .iter()
            .filter_map(|d| upstream_override(ir, d).map(|v| (d, v)))
            .collect();
        let routed_in = routed_in(ir);
        let metrics = ir.metrics(crate::metrics::Flavor::Consul);
        for s in &ir.services {
            // What the other services ask of their callers.
            let overrides: Vec<Value> = upstreams
                .iter()
                .filter(|(d, _)| !std::ptr::eq(*d, s))
                .map(|(_, v)| v.clone())
                .collect();
            let mut messages: Vec<String> = Vec::new();
            let mut found = Vec::new();
            let mut report = |m: String| messages.push(m);
            let protocol = protocol(s, &mut report);
            if protocol == "tcp" {
                if let Some(what) = l7_use(s) {
                    report(format!("{what} needs protocol http, http2 or grpc, and the service's ports are tcp (Consul sets one protocol per service)"));
                }
            }
            let routed_in = routed_in.get(&(s.namespace.as_str(), s.host.as_str()));
            out.push(defaults(
                s,
                protocol,
                &overrides,
                routed_in.copied(),
                &mut report,
                &mut found,
            ));
            out.extend(resolver(ir, s, &mut report));
            if protocol != "tcp" {
                out.extend(splitter(s));
                out.extend(router(ir, s, &mut report));
            }
            out.extend(intentions(ir, s, &mut report));
            if let Some(r) = prometheus::slo_rules(NAME, &metrics, s, errors) {
                out.push(r);
            }
            errors.extend(
                messages.into_iter().map(|m| {
                    EmitError::new(NAME, &s.origin, format!("service `{}`: {m}", s.key()))
                }),
            );
            errors.extend(found);
        }
    }
}

fn obj(kind: &'static str, s: &Service, spec: Value) -> MeshObject {
    MeshObject::builder(NAME, API, kind, &s.namespace, &s.host, &s.origin)
        .spec(spec)
        .build()
}

/// The service's one protocol (`tcp` after reporting mixed ones).
fn protocol(s: &Service, report: &mut impl FnMut(String)) -> &'static str {
    let name = |p: Protocol| match p {
        Protocol::Http => "http",
        Protocol::Http2 => "http2",
        Protocol::Grpc => "grpc",
        Protocol::Tcp => "tcp",
    };
    let mut all: Vec<&str> = s.ports.iter().map(|p| name(p.protocol)).collect();
    all.sort_unstable();
    all.dedup();
    match all.as_slice() {
        [one] => one,
        [] => "tcp",
        many => {
            report(format!(
                "Consul sets one protocol per service, and its ports use {}",
                many.join(", ")
            ));
            "tcp"
        }
    }
}

/// The first L7 feature a service uses, if any.
fn l7_use(s: &Service) -> Option<&'static str> {
    let features = [
        (Feature::WeightedSplit, "a traffic split"),
        (Feature::HeaderMatch, "a routing match"),
        (Feature::CookieMatch, "a routing match"),
        (Feature::PathMatch, "a routing match"),
        (Feature::MethodMatch, "a routing match"),
        (Feature::QueryMatch, "a routing match"),
        (Feature::Timeout, "a timeout"),
        (Feature::Retries, "retries"),
        (Feature::AllowListL7, "an allow rule with methods or paths"),
    ];
    features
        .iter()
        .find(|(f, _)| f.used_by(s))
        .map(|(_, what)| *what)
}

/// Circuit breaking and connection limits of `d`, as its callers' Consul
/// expresses them: an `upstreamConfig.overrides` entry.
fn upstream_override(ir: &Ir, d: &Service) -> Option<Value> {
    let mut v = Map::new();
    if let Some(cb) = &d.circuit_breaker {
        let mut p = json!({"maxFailures": cb.consecutive_errors, "enforcingConsecutive5xx": 100});
        if let Some(i) = cb.interval {
            p["interval"] = gateway_duration(i).into();
        }
        if let Some(t) = cb.base_ejection_time {
            p["baseEjectionTime"] = gateway_duration(t).into();
        }
        if let Some(m) = cb.max_ejection_percent {
            p["maxEjectionPercent"] = m.into();
        }
        v.insert("passiveHealthCheck".into(), p);
    }
    if let Some(pool) = &d.connection_pool {
        let mut limits = Map::new();
        if let Some(n) = pool.max_pending_requests {
            limits.insert("maxPendingRequests".into(), n.into());
        }
        if let Some(n) = pool.max_requests {
            limits.insert("maxConcurrentRequests".into(), n.into());
        }
        if !limits.is_empty() {
            v.insert("limits".into(), limits.into());
        }
    }
    if v.is_empty() {
        return None;
    }
    v.insert("name".into(), d.host.clone().into());
    if ir.consul_namespaces {
        v.insert("namespace".into(), d.namespace.clone().into());
    }
    Some(Value::Object(v))
}

/// Per service (`namespace`, Kubernetes Service), the longest timeout of
/// the other services' routes that send to it.
fn routed_in(ir: &Ir) -> BTreeMap<(&str, &str), u64> {
    let mut longest = BTreeMap::new();
    for s in &ir.services {
        for r in &s.routes {
            let RouteAction::Forward(backends) = &r.action else {
                continue;
            };
            let (Some(o), Some(t)) = (
                backends.first().and_then(|b| b.service.as_deref()),
                r.timeout.or(s.timeout),
            ) else {
                continue;
            };
            let ms = longest
                .entry((o.namespace.as_str(), o.host.as_str()))
                .or_insert(0);
            *ms = (*ms).max(t.as_millis());
        }
    }
    longest
}

fn defaults(
    s: &Service,
    protocol: &str,
    overrides: &[Value],
    routed_in: Option<u64>,
    report: &mut impl FnMut(String),
    errors: &mut Vec<EmitError>,
) -> MeshObject {
    let mut spec = json!({ "protocol": protocol });
    match s.mtls {
        MtlsMode::Strict => spec["mutualTLSMode"] = "strict".into(),
        MtlsMode::Permissive => spec["mutualTLSMode"] = "permissive".into(),
        MtlsMode::Unmanaged => {}
    }
    if let Some(pool) = &s.connection_pool {
        if let Some(n) = pool.max_connections {
            spec["maxInboundConnections"] = n.into();
        }
        let missing = [
            (
                pool.max_requests_per_connection.is_some(),
                "maxRequestsPerConnection",
            ),
            (pool.idle_timeout.is_some(), "idleTimeout"),
        ];
        for (set, field) in missing {
            if set {
                report(format!("Consul has no connection-pool `{field}`"));
            }
        }
    }
    if let Some(rl) = &s.rate_limit {
        let l7: Vec<_> = s.l7_ports().map(|p| &p.name).collect();
        let limited: Vec<_> = rl.ports.iter().map(|p| &p.name).collect();
        if limited.len() < l7.len() {
            report("Consul rate-limits the whole service, not some of its ports".into());
        } else if let Some(rps) = whole_per_second(NAME, "Consul", s, rl, errors) {
            spec["rateLimits"] =
                json!({"instanceLevel": {"requestsPerSecond": rps, "requestsMaxBurst": rl.burst}});
        }
    }
    if !overrides.is_empty() {
        spec["upstreamConfig"] = json!({"overrides": overrides});
    }
    // The destination's proxy ends a request after 15 s unless told
    // otherwise (Envoy's route timeout, Consul's `local_request_timeout_ms`
    // default): a longer timeout of the routes that land here — the
    // service's own, and other services' routes to it — would be cut short.
    let longest = s
        .routes
        .iter()
        .filter(|r| match &r.action {
            RouteAction::Forward(b) => b.iter().all(|b| b.service.is_none()),
            RouteAction::Redirect(_) => true,
        })
        .filter_map(|r| r.timeout.or(s.timeout))
        .map(|t| t.as_millis())
        .chain(routed_in)
        .max();
    if let Some(ms) = longest.filter(|ms| *ms > 15_000) {
        spec["localRequestTimeoutMs"] = ms.into();
    }
    if s.mtls == MtlsMode::Permissive && s.access.as_ref().is_some_and(|a| a.default_deny) {
        errors.push(
            EmitError::new(
                NAME,
                &s.origin,
                format!("service `{}`: Consul's permissive mTLS admits plain-text callers without checking intentions, so the allow list does not hold for them", s.key()),
            )
            .of(Feature::AllowList),
        );
    }
    obj("ServiceDefaults", s, spec)
}

/// The version taking the default route's largest weight.
fn default_version(s: &Service) -> Option<&str> {
    match &s.routes.last()?.action {
        RouteAction::Forward(b) => b
            .iter()
            .rev()
            .max_by_key(|b| b.weight)
            .map(|b| b.version.as_str()),
        RouteAction::Redirect(_) => None,
    }
}

fn resolver(ir: &Ir, s: &Service, report: &mut impl FnMut(String)) -> Option<MeshObject> {
    let mut spec = Map::new();
    if !s.versions.is_empty() {
        let subsets: Map<String, Value> = s
            .versions
            .iter()
            .map(|v| {
                // Filter on what tells the versions apart; all labels when
                // nothing does.
                let own: Vec<_> = v
                    .labels
                    .iter()
                    .filter(|(k, _)| !s.workload_selector.contains_key(k))
                    .collect();
                let labels = if own.is_empty() {
                    v.labels.iter().collect()
                } else {
                    own
                };
                let filter = labels
                    .iter()
                    .map(|(k, val)| format!("Service.Meta.{k} == {}", json!(val)))
                    .collect::<Vec<_>>()
                    .join(" and ");
                (v.name.clone(), json!({"filter": filter}))
            })
            .collect();
        spec.insert("subsets".into(), subsets.into());
        if let Some(d) = default_version(s) {
            spec.insert("defaultSubset".into(), d.into());
        }
    }
    if let Some(t) = s.connection_pool.as_ref().and_then(|p| p.connect_timeout) {
        spec.insert("connectTimeout".into(), gateway_duration(t).into());
    }
    if let Some(lb) = &s.load_balancer {
        let policy = match lb.policy {
            LoadBalancerPolicy::RoundRobin => "round_robin",
            LoadBalancerPolicy::LeastRequest => "least_request",
            LoadBalancerPolicy::Random => "random",
            LoadBalancerPolicy::ConsistentHash => {
                match lb.consistent_hash.as_ref().and_then(|h| h.algorithm) {
                    Some(HashAlgorithm::Maglev) => "maglev",
                    _ => "ring_hash",
                }
            }
        };
        let mut v = json!({"policy": policy});
        if let Some(h) = &lb.consistent_hash {
            let hash = if let Some(name) = &h.header {
                json!({"field": "header", "fieldValue": name})
            } else if let Some(c) = &h.cookie {
                let mut p = json!({"field": "cookie", "fieldValue": c.name});
                if let Some(ttl) = c.ttl {
                    p["cookieConfig"] = json!({"ttl": gateway_duration(ttl)});
                }
                p
            } else if let Some(q) = &h.query_param {
                json!({"field": "query_parameter", "fieldValue": q})
            } else {
                json!({"sourceIP": true})
            };
            if lb.policy != LoadBalancerPolicy::ConsistentHash {
                report("Consul hashes only with the ring_hash (or maglev) policy: set `policy: consistentHash`".into());
            } else {
                v["hashPolicies"] = json!([hash]);
            }
        }
        spec.insert("loadBalancer".into(), v);
    }
    if !s.failover.is_empty() {
        let targets: Vec<Value> = s
            .failover
            .iter()
            .filter_map(|f| failover_target(ir, s, f, report))
            .collect();
        spec.insert("failover".into(), json!({"*": {"targets": targets}}));
    }
    (!spec.is_empty()).then(|| obj("ServiceResolver", s, Value::Object(spec)))
}

/// A failover target as Consul names it.
fn failover_target(
    ir: &Ir,
    s: &Service,
    f: &crate::ir::Failover,
    report: &mut impl FnMut(String),
) -> Option<Value> {
    let mut t = Map::new();
    if let Some((ns, name)) = &f.service {
        if ns != &s.namespace && !ir.consul_namespaces {
            report(format!("failover to `{ns}/{name}`: Consul without namespaces cannot name another namespace (set `consul.namespaces: true` for Consul Enterprise)"));
            return None;
        }
        t.insert("service".into(), name.clone().into());
        if ir.consul_namespaces {
            t.insert("namespace".into(), ns.clone().into());
        }
    }
    if let Some(p) = &f.peer {
        t.insert("peer".into(), p.clone().into());
    }
    if let Some(d) = &f.datacenter {
        t.insert("datacenter".into(), d.clone().into());
    }
    Some(Value::Object(t))
}

fn splitter(s: &Service) -> Option<MeshObject> {
    if !Feature::WeightedSplit.used_by(s) {
        return None;
    }
    let RouteAction::Forward(backends) = &s.routes.last()?.action else {
        return None;
    };
    let splits: Vec<Value> = backends
        .iter()
        .map(|b| {
            let mut split = json!({"weight": b.weight, "serviceSubset": b.version});
            // A sticky canary's cookie, on this split's responses
            // (service-splitter reference, `Splits[].ResponseHeaders`).
            if let Some(c) = &b.set_cookie {
                split["responseHeaders"] = json!({"add": {"Set-Cookie": c}});
            }
            split
        })
        .collect();
    Some(obj("ServiceSplitter", s, json!({"splits": splits})))
}

fn string_match(name: &str, m: &StringMatch) -> Value {
    if let Some(v) = &m.exact {
        json!({"name": name, "exact": v})
    } else if let Some(v) = &m.prefix {
        json!({"name": name, "prefix": v})
    } else {
        json!({"name": name, "regex": m.regex.clone().unwrap_or_default()})
    }
}

/// The ServiceRouter matches of one intent match item, each with the part
/// of a path prefix it covers: Consul's `pathPrefix` is Envoy's plain
/// string prefix, so a segment-wise prefix becomes `pathExact` and a
/// `pathPrefix` ending in `/` (`segment_prefix`).
fn http_match(m: &Match) -> Vec<(Value, Option<PathBlock>)> {
    let mut http = Map::new();
    if let Some(method) = &m.method {
        http.insert("methods".into(), json!([method]));
    }
    let mut headers: Vec<Value> = m.headers.iter().map(|(k, v)| string_match(k, v)).collect();
    headers.extend(
        m.cookies
            .iter()
            .map(|(k, v)| json!({"name": "cookie", "regex": cookie_regex(k, v)})),
    );
    if !headers.is_empty() {
        http.insert("header".into(), headers.into());
    }
    if !m.query_params.is_empty() {
        let q: Vec<Value> = m
            .query_params
            .iter()
            .map(|(k, v)| match &v.prefix {
                // Consul matches query parameters exactly or by regex.
                Some(p) => json!({"name": k, "regex": format!("^{}.*", regex_escape(p))}),
                None => string_match(k, v),
            })
            .collect();
        http.insert("queryParam".into(), q.into());
    }
    let Some(p) = &m.path else {
        return vec![(json!({ "http": http }), None)];
    };
    let Some(prefix) = &p.prefix else {
        let (k, v) = match &p.exact {
            Some(v) => ("pathExact", v.clone()),
            None => ("pathRegex", p.regex.clone().unwrap_or_default()),
        };
        http.insert(k.into(), v.into());
        return vec![(json!({ "http": http }), None)];
    };
    segment_prefix(prefix)
        .into_iter()
        .map(|block| {
            let mut http = http.clone();
            match &block {
                PathBlock::Whole(p) => http.insert("pathExact".into(), p.clone().into()),
                PathBlock::Below(p) => http.insert("pathPrefix".into(), p.clone().into()),
            };
            (json!({ "http": http }), Some(block))
        })
        .collect()
}

/// Where a ServiceRouter route sends its requests.
enum To<'a> {
    /// On to the service's own splitter (or resolver).
    Splitter,
    /// A subset of the service.
    Subset(&'a str),
    /// Another service, and its namespace with Consul namespaces.
    Service(&'a str, Option<&'a str>),
}

/// A route to another service, named as Consul names services (by their
/// Kubernetes Service): with Consul namespaces, in its namespace; without,
/// every Kubernetes namespace syncs into one registry, where the name alone
/// is the service (consul-k8s refuses a second one of that name).
fn other_service<'a>(ir: &Ir, o: &'a OtherService) -> To<'a> {
    To::Service(
        &o.host,
        ir.consul_namespaces.then_some(o.namespace.as_str()),
    )
}

fn destination(
    s: &Service,
    r: &Route,
    to: &To<'_>,
    block: Option<&PathBlock>,
    report: &mut impl FnMut(String),
) -> Value {
    let mut d = Map::new();
    match to {
        To::Splitter => {}
        To::Subset(v) => {
            d.insert("serviceSubset".into(), (*v).into());
        }
        To::Service(name, ns) => {
            d.insert("service".into(), (*name).into());
            if let Some(ns) = ns {
                d.insert("namespace".into(), (*ns).into());
            }
        }
    }
    if let Some(t) = r.timeout.or(s.timeout) {
        d.insert("requestTimeout".into(), gateway_duration(t).into());
    }
    if let Some(rt) = &s.retries {
        d.insert("numRetries".into(), rt.attempts.into());
        // Consul retries only on the conditions it is given (its
        // service-router reference): none would mean no retries at all,
        // so no conditions in the intent are Envoy's usual `5xx` and
        // `connect-failure`.
        let on: Vec<&str> = if rt.retry_on.is_empty() {
            vec!["5xx", "connect-failure"]
        } else {
            rt.retry_on.iter().map(|o| retry_on(*o)).collect()
        };
        d.insert("retryOn".into(), on.into());
    }
    if let Some(rw) = &r.rewrite {
        if let Some(p) = &rw.path_prefix {
            // Envoy replaces the matched string: `/api/` below a
            // segment-wise prefix, the whole path on an exact match.
            let to = block.map_or_else(|| p.clone(), |b| b.rewrite(p));
            d.insert("prefixRewrite".into(), to.into());
        }
        if rw.host.is_some() {
            report(format!(
                "route `{}`: Consul's ServiceRouter cannot rewrite the host",
                r.name
            ));
        }
    }
    Value::Object(d)
}

fn router(ir: &Ir, s: &Service, report: &mut impl FnMut(String)) -> Option<MeshObject> {
    let (default, matching) = s.routes.split_last()?;
    let mut routes = Vec::new();
    for r in matching {
        let RouteAction::Forward(b) = &r.action else {
            continue; // reported: Consul has no redirects
        };
        let positive: Vec<&Backend> = b.iter().filter(|b| b.weight > 0).collect();
        let subset = match (
            positive.as_slice(),
            b.first().and_then(|b| b.service.as_deref()),
        ) {
            // Another service: its own splitter and resolver take over
            // (the discovery chain's router "Destination.Service"), so its
            // weights are not repeated here.
            (_, Some(o)) => other_service(ir, o),
            ([one], None) => To::Subset(&one.version),
            _ => {
                report(format!(
                    "route `{}`: Consul splits weights on the default route only (ServiceSplitter)",
                    r.name
                ));
                continue;
            }
        };
        // A request without a path condition matched the prefix `/`,
        // which a path-prefix rewrite replaces (and Consul refuses a
        // `prefixRewrite` without a path match).
        let root = PathBlock::Below("/".into());
        if r.matches.is_empty() {
            let dest = destination(s, r, &subset, Some(&root), report);
            routes.push(json!({"match": {"http": {"pathPrefix": "/"}}, "destination": dest}));
        }
        for m in &r.matches {
            for (mut matched, block) in http_match(m) {
                let rewrites = r
                    .rewrite
                    .as_ref()
                    .is_some_and(|rw| rw.path_prefix.is_some());
                let block = match block {
                    None if rewrites && m.path.is_none() => {
                        matched["http"]["pathPrefix"] = "/".into();
                        Some(root.clone())
                    }
                    b => b,
                };
                let dest = destination(s, r, &subset, block.as_ref(), report);
                routes.push(json!({"match": matched, "destination": dest}));
            }
        }
    }
    if default.timeout.or(s.timeout).is_some() || s.retries.is_some() {
        // On to the splitter (no subset), with the service's settings.
        routes.push(json!({
            "match": {"http": {"pathPrefix": "/"}},
            "destination": destination(s, default, &To::Splitter, None, report),
        }));
    }
    (!routes.is_empty()).then(|| obj("ServiceRouter", s, json!({"routes": routes})))
}

/// A source of intentions: the name and, with namespaces, the namespace.
type Source = (String, Option<String>);

#[derive(Clone, Debug)]
enum Grant {
    All,
    Permissions(Vec<Value>),
}

fn permissions(methods: &[String], paths: &[String]) -> Vec<Value> {
    let with_methods = |mut http: Map<String, Value>| {
        if !methods.is_empty() {
            http.insert("methods".into(), methods.into());
        }
        json!({"action": "allow", "http": http})
    };
    if paths.is_empty() {
        return vec![with_methods(Map::new())];
    }
    paths
        .iter()
        .map(|p| {
            let mut http = Map::new();
            match p.strip_suffix('*') {
                Some(prefix) => http.insert("pathPrefix".into(), prefix.into()),
                None => http.insert("pathExact".into(), p.clone().into()),
            };
            with_methods(http)
        })
        .collect()
}

/// Only the most precise intention of a source applies (Consul's
/// intentions "Precedence and match order": an exact name before a
/// wildcard), so a named source also gets what the wildcards covering it
/// (everyone, its namespace) are granted.
fn inherit_wildcards(sources: &mut BTreeMap<Source, Grant>, everyone: &Source) {
    let wildcards: Vec<(Source, Grant)> = sources
        .iter()
        .filter(|((name, _), _)| name == "*")
        .map(|(k, g)| (k.clone(), g.clone()))
        .collect();
    for ((name, namespace), grant) in sources.iter_mut() {
        if name == "*" {
            continue;
        }
        for ((_, wns), wgrant) in &wildcards {
            let covers = *wns == everyone.1 || wns == namespace;
            if !covers {
                continue;
            }
            match (grant.clone(), wgrant) {
                (Grant::All, _) => {}
                (_, Grant::All) => *grant = Grant::All,
                (Grant::Permissions(mut own), Grant::Permissions(more)) => {
                    own.extend(more.iter().cloned());
                    *grant = Grant::Permissions(own);
                }
            }
        }
    }
}

fn intentions(ir: &Ir, s: &Service, report: &mut impl FnMut(String)) -> Option<MeshObject> {
    let access = s.access.as_ref()?;
    let ns = |n: &str| ir.consul_namespaces.then(|| n.to_owned());
    let mut sources: BTreeMap<Source, Grant> = BTreeMap::new();
    for (i, rule) in access.rules.iter().enumerate() {
        if !rule.ports.is_empty() && rule.ports.len() < s.ports.len() {
            report(format!(
                "allow rule {i}: Consul intentions cover the whole service, not some of its ports"
            ));
            continue;
        }
        for p in &rule.from {
            let source = match p {
                // consul-k8s registers a pod under the Kubernetes Service
                // selecting it; a bare identity stands for a service of
                // the same name (as consul-k8s requires with ACLs).
                Peer::ServiceAccount {
                    namespace,
                    name,
                    service,
                } => (
                    service.clone().unwrap_or_else(|| name.clone()),
                    ns(namespace),
                ),
                Peer::Namespace(n) if ir.consul_namespaces => ("*".into(), Some(n.clone())),
                Peer::Namespace(n) => {
                    report(format!("allow rule {i}: Consul without namespaces cannot name namespace `{n}`: list its services, or set `consul.namespaces: true` in meshplan.yaml (Consul Enterprise)"));
                    continue;
                }
                // Consul admits only mesh callers through intentions: every
                // service is the most a wildcard can name.
                Peer::AnyNamespace | Peer::Anyone => ("*".into(), ns("*")),
            };
            let grant = sources
                .entry(source)
                .or_insert_with(|| Grant::Permissions(Vec::new()));
            match grant {
                Grant::All => {}
                _ if rule.methods.is_empty() && rule.paths.is_empty() => *grant = Grant::All,
                Grant::Permissions(v) => v.extend(permissions(&rule.methods, &rule.paths)),
            }
        }
    }
    let everyone: Source = ("*".into(), ns("*"));
    inherit_wildcards(&mut sources, &everyone);
    let mut out: Vec<Value> = Vec::new();
    for ((name, namespace), grant) in &sources {
        let mut v = json!({"name": name});
        if let Some(n) = namespace {
            v["namespace"] = n.clone().into();
        }
        match grant {
            Grant::All => v["action"] = "allow".into(),
            Grant::Permissions(p) => {
                let mut p = p.clone();
                if access.default_deny {
                    // A request matching none of a source's permissions
                    // falls to the default intention policy (Consul's
                    // service-intentions reference, `Permissions`), which
                    // may allow: deny it here.
                    p.push(json!({"action": "deny", "http": {"pathPrefix": "/"}}));
                }
                v["permissions"] = p.into();
            }
        }
        out.push(v);
    }
    if access.default_deny && !sources.contains_key(&everyone) {
        let mut v = json!({"name": "*", "action": "deny"});
        if let Some(n) = everyone.1 {
            v["namespace"] = n.into();
        }
        out.push(v);
    }
    Some(obj(
        "ServiceIntentions",
        s,
        json!({"destination": {"name": s.host}, "sources": out}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Positions;
    use crate::testing::ir_of;

    const CONFIG: &str = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [consul]\ndefaultNamespace: shop\n";

    fn errors(spec: &str) -> Vec<String> {
        let svc = format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: db }}\nspec:\n{spec}");
        let mut ir = ir_of(
            &[("meshplan.yaml", CONFIG), ("db.yaml", &svc)],
            &Positions::default(),
        );
        ir.targets = vec![Target::Consul];
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        Consul.emit(&ir, &mut out, &mut errors);
        errors.into_iter().map(|e| e.message).collect()
    }

    #[test]
    fn l7_settings_on_a_tcp_service_are_errors() {
        let e = errors(
            "  ports: [{ name: pg, port: 5432, protocol: tcp }]\n  resilience: { timeout: 2s }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("a timeout needs protocol http, http2 or grpc"),
            "{e:?}"
        );
    }

    #[test]
    fn one_protocol_per_service() {
        let e = errors("  ports:\n    - { name: http, port: 80, protocol: http }\n    - { name: pg, port: 5432, protocol: tcp }\n");
        assert!(
            e.iter()
                .any(|m| m.contains("one protocol per service, and its ports use http, tcp")),
            "{e:?}"
        );
    }

    #[test]
    fn without_namespaces_a_namespace_caller_is_reported() {
        let e = errors("  ports: [{ name: http, port: 80, protocol: http }]\n  access: { allow: [{ from: [{ namespace: ops }] }] }\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("cannot name namespace `ops`"), "{e:?}");
    }

    #[test]
    fn a_clean_http_service_reports_nothing() {
        assert!(errors("  ports: [{ name: http, port: 80, protocol: http }]\n  resilience: { timeout: 2s, retries: { attempts: 2 } }\n").is_empty());
    }
}
