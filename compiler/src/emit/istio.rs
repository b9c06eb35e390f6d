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

use std::borrow::Cow;
use std::collections::BTreeMap;

use meshplan_policy_lang::intent::service::{
    HashAlgorithm, LoadBalancerPolicy, Match, MtlsMode, RetryOn, StringMatch as IntentMatch,
};
use serde_json::Value;

use meshplan_policy_lang::intent::Target;

use super::{
    cookie_regex, prometheus, proto_duration, segment_prefix, EmitError, Emitter, Feature,
    PathBlock, Support,
};
use crate::api::networking_istio_io as net;
use crate::api::security_istio_io as sec;
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

fn obj(
    api: &'static str,
    kind: &'static str,
    s: &Service,
    name: &str,
    spec: &impl serde::Serialize,
) -> MeshObject {
    MeshObject::builder(NAME, api, kind, &s.namespace, name, &s.origin)
        .spec_typed(spec)
        .build()
}

fn selector(s: &Service) -> sec::WorkloadSelector<'_> {
    sec::WorkloadSelector {
        match_labels: &s.workload_selector,
    }
}

/// `Some(t)` unless `t` sets nothing (Istio's defaults apply).
fn set<T: Default + PartialEq>(t: T) -> Option<T> {
    (t != T::default()).then_some(t)
}

fn destination_rule(s: &Service) -> MeshObject {
    let policy = net::TrafficPolicy {
        connection_pool: s.connection_pool.as_ref().map(|cp| net::ConnectionPool {
            http: set(net::HttpPool {
                http1_max_pending_requests: cp.max_pending_requests,
                http2_max_requests: cp.max_requests,
                idle_timeout: cp.idle_timeout.map(proto_duration),
                max_requests_per_connection: cp.max_requests_per_connection,
            }),
            tcp: set(net::TcpPool {
                connect_timeout: cp.connect_timeout.map(proto_duration),
                max_connections: cp.max_connections,
            }),
        }),
        load_balancer: s.load_balancer.as_ref().map(|lb| load_balancer(lb)),
        outlier_detection: s.circuit_breaker.as_ref().map(|cb| net::OutlierDetection {
            base_ejection_time: cb.base_ejection_time.map(proto_duration),
            consecutive_5xx_errors: cb.consecutive_errors,
            interval: cb.interval.map(proto_duration),
            max_ejection_percent: cb.max_ejection_percent,
        }),
        tls: (s.mtls == MtlsMode::Strict).then_some(net::ClientTls {
            mode: "ISTIO_MUTUAL",
        }),
    };
    let spec = net::DestinationRuleSpec {
        host: s.fqdn(),
        subsets: s
            .versions
            .iter()
            .map(|v| net::Subset {
                labels: &v.labels,
                name: &v.name,
            })
            .collect(),
        traffic_policy: set(policy),
    };
    obj(NETWORKING, "DestinationRule", s, &s.name, &spec)
}

fn load_balancer(
    lb: &meshplan_policy_lang::intent::service::LoadBalancer,
) -> net::LoadBalancer<'_> {
    let simple = |p| net::LoadBalancer {
        consistent_hash: None,
        simple: Some(p),
    };
    match lb.policy {
        LoadBalancerPolicy::RoundRobin => simple("ROUND_ROBIN"),
        LoadBalancerPolicy::LeastRequest => simple("LEAST_REQUEST"),
        LoadBalancerPolicy::Random => simple("RANDOM"),
        LoadBalancerPolicy::ConsistentHash => {
            let h = lb.consistent_hash.as_ref();
            let mut key = net::ConsistentHash::default();
            if let Some(header) = h.and_then(|h| h.header.as_deref()) {
                key.http_header_name = Some(header);
            } else if let Some(c) = h.and_then(|h| h.cookie.as_ref()) {
                // A cookie without a lifetime is a session cookie.
                let ttl = c.ttl.map(proto_duration).unwrap_or_else(|| "0s".into());
                key.http_cookie = Some(net::HttpCookie { name: &c.name, ttl });
            } else if let Some(q) = h.and_then(|h| h.query_param.as_deref()) {
                key.http_query_parameter_name = Some(q);
            } else {
                key.use_source_ip = Some(true);
            }
            if h.and_then(|h| h.algorithm) == Some(HashAlgorithm::Maglev) {
                key.maglev = Some(net::Empty {});
            }
            net::LoadBalancer {
                consistent_hash: Some(key),
                simple: None,
            }
        }
    }
}

/// A route's destinations: subsets of the service's host, or of another
/// service's (its DestinationRule defines them) on the port the intent
/// chose; a service without versions is its host alone.
fn destinations<'a>(
    s: &Service,
    backends: &'a [Backend],
    port: Option<u32>,
) -> Vec<net::RouteDestination<'a>> {
    let dest = |b: Option<&'a Backend>| {
        let (host, port) = match b.and_then(|b| b.service.as_deref()) {
            Some(other) => (other.fqdn(), Some(other.port)),
            None => (s.fqdn(), port),
        };
        net::Destination {
            host,
            port: port.map(|number| net::PortSelector { number }),
            subset: b.map(|b| b.version.as_str()).filter(|v| !v.is_empty()),
        }
    };
    // A sticky canary's cookie: `headers.response.add` of the destination
    // (HTTPRouteDestination `headers`: "Header manipulation rules",
    // applied only when that destination answers).
    let cookie = |b: &'a Backend| {
        b.set_cookie.as_deref().map(|c| net::Headers {
            response: net::HeaderOperations {
                add: [("Set-Cookie", c)].into(),
            },
        })
    };
    match backends {
        [] => vec![net::RouteDestination {
            destination: dest(None),
            headers: None,
            weight: None,
        }],
        [one] => vec![net::RouteDestination {
            destination: dest(Some(one)),
            headers: cookie(one),
            weight: None,
        }],
        many => many
            .iter()
            .map(|b| net::RouteDestination {
                destination: dest(Some(b)),
                headers: cookie(b),
                weight: Some(b.weight),
            })
            .collect(),
    }
}

/// `{exact|prefix|regex: v}`, the shape Istio uses for string matches.
fn string_match(m: &IntentMatch) -> net::StringMatch<'_> {
    if let Some(v) = &m.exact {
        net::StringMatch::Exact(Cow::Borrowed(v))
    } else if let Some(v) = &m.prefix {
        net::StringMatch::Prefix(Cow::Borrowed(v))
    } else {
        net::StringMatch::Regex(Cow::Borrowed(m.regex.as_deref().unwrap_or_default()))
    }
}

/// The match blocks of one intent match item, each with the part of a
/// path prefix it covers. Istio's `uri.prefix` is a plain string prefix
/// (Envoy's route `prefix`), so a segment-wise prefix becomes two blocks
/// (`segment_prefix`), ORed as Istio ORs a route's match blocks.
fn http_match<'a>(
    s: &Service,
    m: &'a Match,
) -> Result<Vec<(net::HttpMatch<'a>, Option<PathBlock>)>, EmitError> {
    if m.cookies.len() > 1 {
        return Err(EmitError::new(
            NAME,
            &s.origin,
            "Istio matches cookies through the single `cookie` header: one match item can test one cookie; split the cookies into separate match items",
        ));
    }
    let mut v = net::HttpMatch {
        headers: m
            .headers
            .iter()
            .map(|(k, sm)| (k.as_str(), string_match(sm)))
            .collect(),
        method: m
            .method
            .as_ref()
            .map(|method| net::StringMatch::Exact(Cow::Owned(method.to_ascii_uppercase()))),
        query_params: m
            .query_params
            .iter()
            .map(|(k, sm)| (k.as_str(), string_match(sm)))
            .collect(),
        uri: None,
    };
    for (name, sm) in &m.cookies {
        let regex = Cow::Owned(cookie_regex(name, sm));
        v.headers.insert("cookie", net::StringMatch::Regex(regex));
    }
    let Some(p) = &m.path else {
        return Ok(vec![(v, None)]);
    };
    let Some(prefix) = &p.prefix else {
        v.uri = Some(string_match(p));
        return Ok(vec![(v, None)]);
    };
    Ok(segment_prefix(prefix)
        .into_iter()
        .map(|block| {
            let uri = match &block {
                PathBlock::Whole(p) => net::StringMatch::Exact(Cow::Owned(p.clone())),
                PathBlock::Below(p) => net::StringMatch::Prefix(Cow::Owned(p.clone())),
            };
            let v = net::HttpMatch {
                uri: Some(uri),
                ..v.clone()
            };
            (v, Some(block))
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
    let default = s.routes.last().and_then(|r| match &r.action {
        RouteAction::Forward(b) => Some(b.as_slice()),
        RouteAction::Redirect(_) => None,
    });
    let tcp = s
        .ports
        .iter()
        .filter(|p| !p.protocol.is_l7())
        .map(|p| {
            let mut route = destinations(s, default.unwrap_or_default(), Some(p.port));
            // A tcp route's destinations carry no headers (TCPRoute has
            // none): a sticky canary's cookie is for http.
            for d in &mut route {
                d.headers = None;
            }
            net::TcpRoute {
                matches: [net::L4Match { port: p.port }],
                route,
            }
        })
        .collect();
    let spec = net::VirtualServiceSpec {
        hosts: vec![s.fqdn()],
        http,
        tcp,
    };
    Ok(obj(NETWORKING, "VirtualService", s, &s.name, &spec))
}

/// The http routes of one intent route: one, or one per rewrite target
/// when a path-prefix rewrite must replace `/api` in `/api` but `/api/` in
/// `/api/v1` (Istio replaces the matched string; the intent, the matched
/// segments). Consecutive, so first match still picks the same route.
fn http_routes<'a>(s: &Service, r: &'a Route) -> Result<Vec<net::HttpRoute<'a>>, EmitError> {
    let mut blocks = Vec::new();
    for m in &r.matches {
        blocks.extend(http_match(s, m)?);
    }
    let Some(to) = r.rewrite.as_ref().and_then(|rw| rw.path_prefix.as_deref()) else {
        let blocks = blocks.into_iter().map(|(v, _)| v).collect();
        return Ok(vec![http_route(s, r, blocks, None)]);
    };
    // A route per rewrite target, in the order of the first block of each.
    let mut groups: Vec<(String, Vec<net::HttpMatch<'a>>)> = Vec::new();
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
        return Ok(vec![http_route(s, r, Vec::new(), Some(uri))]);
    }
    Ok(groups
        .into_iter()
        .map(|(uri, blocks)| http_route(s, r, blocks, Some(uri)))
        .collect())
}

/// One http route: `blocks` ORed, `uri` the path-prefix rewrite.
fn http_route<'a>(
    s: &Service,
    r: &'a Route,
    blocks: Vec<net::HttpMatch<'a>>,
    uri: Option<String>,
) -> net::HttpRoute<'a> {
    let route = net::HttpRoute {
        matches: blocks,
        name: &r.name,
        ..net::HttpRoute::default()
    };
    match &r.action {
        RouteAction::Redirect(rd) => net::HttpRoute {
            redirect: Some(net::Redirect {
                authority: rd.host.as_deref(),
                redirect_code: rd.code.unwrap_or(302),
                uri: rd.path.as_deref(),
            }),
            ..route
        },
        RouteAction::Forward(backends) => {
            let route = net::HttpRoute {
                rewrite: r.rewrite.as_ref().map(|rw| net::Rewrite {
                    authority: rw.host.as_deref(),
                    uri,
                }),
                route: Some(destinations(s, backends, None)),
                ..route
            };
            forward_settings(s, r, backends, route)
        }
    }
}

/// Timeout, retries, fault and mirror of a forwarding route.
fn forward_settings<'a>(
    s: &Service,
    r: &'a Route,
    backends: &[Backend],
    route: net::HttpRoute<'a>,
) -> net::HttpRoute<'a> {
    let percent = |value| net::Percent { value };
    let fault = r.faults.as_ref().map(|f| net::Fault {
        abort: f.abort.as_ref().map(|a| net::Abort {
            http_status: a.http_status,
            percentage: percent(a.percentage),
        }),
        delay: f.delay.as_ref().map(|d| net::Delay {
            fixed_delay: proto_duration(d.delay),
            percentage: percent(d.percentage),
        }),
    });
    let retries = s.retries.as_ref().map(|rt| net::Retries {
        attempts: rt.attempts,
        per_try_timeout: rt.per_try_timeout.map(proto_duration),
        retry_on: (!rt.retry_on.is_empty()).then(|| {
            let on: Vec<&str> = rt.retry_on.iter().map(|r| retry_on(*r)).collect();
            on.join(",")
        }),
    });
    // Mirroring to a version this route already answers from would only
    // double its load.
    let mirror = r.mirror.as_ref().filter(|m| {
        !backends
            .iter()
            .any(|b| b.is_own(&m.version) && b.weight > 0)
    });
    net::HttpRoute {
        fault,
        mirror: mirror.map(|m| net::Destination {
            host: s.fqdn(),
            port: None,
            subset: Some(&m.version),
        }),
        mirror_percentage: mirror.map(|m| percent(m.percentage)),
        retries,
        timeout: r.timeout.or(s.timeout).map(proto_duration),
        ..route
    }
}

fn peer_authentication(s: &Service) -> Option<MeshObject> {
    let mode = match s.mtls {
        MtlsMode::Strict => "STRICT",
        MtlsMode::Permissive => "PERMISSIVE",
        MtlsMode::Unmanaged => return None,
    };
    let spec = sec::PeerAuthenticationSpec {
        mtls: sec::PeerMtls { mode },
        selector: selector(s),
    };
    Some(obj(SECURITY, "PeerAuthentication", s, &s.name, &spec))
}

fn authorization_policy(ir: &Ir, s: &Service) -> Option<MeshObject> {
    let access = s.access.as_ref().filter(|a| a.default_deny)?;
    let rules = access
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
                let source = sec::Source {
                    principals,
                    ..sec::Source::default()
                };
                from.push(sec::From { source });
            }
            if !namespaces.is_empty() {
                let source = sec::Source {
                    namespaces,
                    ..sec::Source::default()
                };
                from.push(sec::From { source });
            }
            let operation = sec::Operation {
                methods: r.methods.clone(),
                paths: r.paths.clone(),
                // Authorization sees the workload's (container) port.
                ports: r.ports.iter().map(|p| p.target_port.to_string()).collect(),
            };
            let empty = operation.methods.is_empty()
                && operation.paths.is_empty()
                && operation.ports.is_empty();
            sec::Rule {
                from,
                to: match empty {
                    true => Vec::new(),
                    false => vec![sec::To { operation }],
                },
            }
        })
        .collect();
    let spec = sec::AuthorizationPolicySpec {
        action: Some("ALLOW"),
        rules,
        selector: Some(selector(s)),
    };
    Some(obj(SECURITY, "AuthorizationPolicy", s, &s.name, &spec))
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
            .spec_typed(&sec::AuthorizationPolicySpec::default())
            .build()
        })
        .collect()
}

fn rate_limit_filter(s: &Service) -> Option<MeshObject> {
    let rl = s.rate_limit.as_ref()?;
    let enabled = |runtime_key| net::RuntimeFraction {
        default_value: net::Fraction {
            denominator: "HUNDRED",
            numerator: 100,
        },
        runtime_key,
    };
    let patch = |port_number| {
        net::ConfigPatch {
        apply_to: "HTTP_FILTER",
        matches: net::PatchMatch {
            context: "SIDECAR_INBOUND",
            listener: net::ListenerMatch {
                filter_chain: net::FilterChainMatch {
                    filter: net::Named {
                        name: "envoy.filters.network.http_connection_manager",
                    },
                },
                port_number,
            },
        },
        patch: net::Patch {
            operation: "INSERT_BEFORE",
            value: net::HttpFilter {
                name: "envoy.filters.http.local_ratelimit",
                typed_config: net::TypedStruct {
                    type_: "type.googleapis.com/udpa.type.v1.TypedStruct",
                    type_url: "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                    value: net::LocalRateLimit {
                        filter_enabled: enabled("local_rate_limit_enabled"),
                        filter_enforced: enabled("local_rate_limit_enforced"),
                        stat_prefix: "http_local_rate_limiter",
                        token_bucket: net::TokenBucket {
                            fill_interval: proto_duration(rl.per),
                            max_tokens: rl.burst,
                            tokens_per_fill: rl.requests,
                        },
                    },
                },
            },
        },
    }
    };
    let spec = net::EnvoyFilterSpec {
        config_patches: rl.ports.iter().map(|p| patch(p.target_port)).collect(),
        workload_selector: net::WorkloadLabels {
            labels: &s.workload_selector,
        },
    };
    Some(obj(
        ENVOY_FILTER,
        "EnvoyFilter",
        s,
        &format!("{}-ratelimit", s.name),
        &spec,
    ))
}
