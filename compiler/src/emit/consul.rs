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
//!
//! This file assembles a service's entries and writes its ServiceDefaults;
//! the discovery chain (router, splitter, resolver) is in `routing.rs`,
//! the intentions in `intentions.rs`.

use std::collections::BTreeMap;

use meshplan_policy_lang::intent::service::MtlsMode;
use meshplan_policy_lang::intent::{Protocol, Target};
use serde::Serialize;

use super::features::{Feature, Support};
use super::prometheus;
use super::{gateway_duration, whole_per_second, EmitError, Emitter};
use crate::api::consul_hashicorp_com::{
    InstanceLevelRateLimit, PassiveHealthCheck, RateLimits, ServiceDefaultsSpec, UpstreamConfig,
    UpstreamLimits, UpstreamOverride,
};
use crate::ir::{Ir, RouteAction, Service};
use crate::object::MeshObject;

mod intentions;
mod routing;

use intentions::intentions;
use routing::{resolver, router, splitter};

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
        let upstreams: Vec<(&Service, UpstreamOverride)> = ir
            .services
            .iter()
            .filter_map(|d| upstream_override(ir, d).map(|v| (d, v)))
            .collect();
        let routed_in = routed_in(ir);
        let metrics = ir.metrics(crate::metrics::Flavor::Consul);
        for s in &ir.services {
            // What the other services ask of their callers.
            let overrides: Vec<&UpstreamOverride> = upstreams
                .iter()
                .filter(|(d, _)| !std::ptr::eq(*d, s))
                .map(|(_, v)| v)
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
                overrides,
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

fn obj(kind: &'static str, s: &Service, spec: &impl Serialize) -> MeshObject {
    MeshObject::builder(NAME, API, kind, &s.namespace, &s.host, &s.origin)
        .spec_typed(spec)
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
fn upstream_override<'a>(ir: &Ir, d: &'a Service) -> Option<UpstreamOverride<'a>> {
    let passive_health_check = d.circuit_breaker.as_ref().map(|cb| PassiveHealthCheck {
        base_ejection_time: cb.base_ejection_time.map(gateway_duration),
        enforcing_consecutive5xx: 100,
        interval: cb.interval.map(gateway_duration),
        max_ejection_percent: cb.max_ejection_percent,
        max_failures: cb.consecutive_errors,
    });
    let limits = d
        .connection_pool
        .as_ref()
        .map(|pool| UpstreamLimits {
            max_concurrent_requests: pool.max_requests,
            max_pending_requests: pool.max_pending_requests,
        })
        .filter(|l| l.max_concurrent_requests.is_some() || l.max_pending_requests.is_some());
    if passive_health_check.is_none() && limits.is_none() {
        return None;
    }
    Some(UpstreamOverride {
        limits,
        name: &d.host,
        namespace: ir.consul_namespaces.then_some(d.namespace.as_str()),
        passive_health_check,
    })
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
    protocol: &'static str,
    overrides: Vec<&UpstreamOverride>,
    routed_in: Option<u64>,
    report: &mut impl FnMut(String),
    errors: &mut Vec<EmitError>,
) -> MeshObject {
    let mut spec = ServiceDefaultsSpec {
        local_request_timeout_ms: None,
        max_inbound_connections: None,
        mutual_tls_mode: match s.mtls {
            MtlsMode::Strict => Some("strict"),
            MtlsMode::Permissive => Some("permissive"),
            MtlsMode::Unmanaged => None,
        },
        protocol,
        rate_limits: None,
        upstream_config: (!overrides.is_empty()).then_some(UpstreamConfig { overrides }),
    };
    if let Some(pool) = &s.connection_pool {
        spec.max_inbound_connections = pool.max_connections;
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
            spec.rate_limits = Some(RateLimits {
                instance_level: InstanceLevelRateLimit {
                    requests_max_burst: rl.burst,
                    requests_per_second: rps,
                },
            });
        }
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
    spec.local_request_timeout_ms = longest.filter(|ms| *ms > 15_000);
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
    obj("ServiceDefaults", s, &spec)
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
