//! Consul's discovery chain for one service: the **ServiceRouter** (a
//! route per match alternative, then a catch-all carrying the service's
//! timeout and retries), the **ServiceSplitter** (the default route's
//! weights per subset) and the **ServiceResolver** (subsets per version,
//! load balancing, failover).
//!
//! Kept apart from `consul.rs` because these three entries are one
//! concern — where a request goes, each stage handing on to the next by
//! subset or service name — while the parent assembles every entry of a
//! service and holds its per-service settings (ServiceDefaults).

use std::collections::BTreeMap;

use meshplan_policy_lang::intent::service::{
    HashAlgorithm, LoadBalancerPolicy, Match, StringMatch,
};

use super::obj;
use crate::api::consul_hashicorp_com::{
    CookieConfig, Destination, Failover, FailoverTarget, HashPolicy, HeaderModifiers, HttpMatch,
    LoadBalancer, Route as ConsulRoute, RouteMatch, ServiceResolverSpec, ServiceRouterSpec,
    ServiceSplitterSpec, Split, Subset, ValueMatch,
};
use crate::emit::istio::retry_on;
use crate::emit::{
    cookie_regex, gateway_duration, regex_escape, segment_prefix, Feature, PathBlock,
};
use crate::ir::{Backend, Ir, OtherService, Route, RouteAction, Service};
use crate::object::{json_str, MeshObject};

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

pub(super) fn resolver(
    ir: &Ir,
    s: &Service,
    report: &mut impl FnMut(String),
) -> Option<MeshObject> {
    let mut spec = ServiceResolverSpec::default();
    if !s.versions.is_empty() {
        let subsets = s
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
                    .map(|(k, val)| format!("Service.Meta.{k} == {}", json_str(val)))
                    .collect::<Vec<_>>()
                    .join(" and ");
                (v.name.as_str(), Subset { filter })
            })
            .collect();
        spec.subsets = Some(subsets);
        spec.default_subset = default_version(s);
    }
    spec.connect_timeout = s
        .connection_pool
        .as_ref()
        .and_then(|p| p.connect_timeout)
        .map(gateway_duration);
    spec.load_balancer = load_balancer(s, report);
    if !s.failover.is_empty() {
        let targets = s
            .failover
            .iter()
            .filter_map(|f| failover_target(ir, s, f, report))
            .collect();
        spec.failover = Some(BTreeMap::from([("*", Failover { targets })]));
    }
    let empty = spec.subsets.is_none()
        && spec.connect_timeout.is_none()
        && spec.load_balancer.is_none()
        && spec.failover.is_none();
    (!empty).then(|| obj("ServiceResolver", s, &spec))
}

/// The service's load balancer, hashing as its session affinity asks.
fn load_balancer<'a>(s: &'a Service, report: &mut impl FnMut(String)) -> Option<LoadBalancer<'a>> {
    let lb = s.load_balancer.as_ref()?;
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
    let mut hash_policies = None;
    if let Some(h) = &lb.consistent_hash {
        let hash = if let Some(name) = &h.header {
            HashPolicy {
                field: Some("header"),
                field_value: Some(name),
                ..HashPolicy::default()
            }
        } else if let Some(c) = &h.cookie {
            HashPolicy {
                cookie_config: c.ttl.map(|ttl| CookieConfig {
                    ttl: gateway_duration(ttl),
                }),
                field: Some("cookie"),
                field_value: Some(&c.name),
                ..HashPolicy::default()
            }
        } else if let Some(q) = &h.query_param {
            HashPolicy {
                field: Some("query_parameter"),
                field_value: Some(q),
                ..HashPolicy::default()
            }
        } else {
            HashPolicy {
                source_ip: Some(true),
                ..HashPolicy::default()
            }
        };
        if lb.policy != LoadBalancerPolicy::ConsistentHash {
            report("Consul hashes only with the ring_hash (or maglev) policy: set `policy: consistentHash`".into());
        } else {
            hash_policies = Some(vec![hash]);
        }
    }
    Some(LoadBalancer {
        hash_policies,
        policy,
    })
}

/// A failover target as Consul names it.
fn failover_target<'a>(
    ir: &Ir,
    s: &Service,
    f: &'a crate::ir::Failover,
    report: &mut impl FnMut(String),
) -> Option<FailoverTarget<'a>> {
    let mut t = FailoverTarget {
        datacenter: f.datacenter.as_deref(),
        peer: f.peer.as_deref(),
        ..FailoverTarget::default()
    };
    if let Some((ns, name)) = &f.service {
        if ns != &s.namespace && !ir.consul_namespaces {
            report(format!("failover to `{ns}/{name}`: Consul without namespaces cannot name another namespace (set `consul.namespaces: true` for Consul Enterprise)"));
            return None;
        }
        t.service = Some(name);
        t.namespace = ir.consul_namespaces.then_some(ns.as_str());
    }
    Some(t)
}

pub(super) fn splitter(s: &Service) -> Option<MeshObject> {
    if !Feature::WeightedSplit.used_by(s) {
        return None;
    }
    let RouteAction::Forward(backends) = &s.routes.last()?.action else {
        return None;
    };
    let splits = backends
        .iter()
        .map(|b| Split {
            // A sticky canary's cookie, on this split's responses
            // (service-splitter reference, `Splits[].ResponseHeaders`).
            response_headers: b.set_cookie.as_deref().map(|c| HeaderModifiers {
                add: BTreeMap::from([("Set-Cookie", c)]),
            }),
            service_subset: &b.version,
            weight: b.weight,
        })
        .collect();
    Some(obj("ServiceSplitter", s, &ServiceSplitterSpec { splits }))
}

fn string_match<'a>(name: &'a str, m: &'a StringMatch) -> ValueMatch<'a> {
    if let Some(v) = &m.exact {
        ValueMatch {
            exact: Some(v),
            name,
            ..ValueMatch::default()
        }
    } else if let Some(v) = &m.prefix {
        ValueMatch {
            name,
            prefix: Some(v),
            ..ValueMatch::default()
        }
    } else {
        regex_match(name, m.regex.clone().unwrap_or_default())
    }
}

fn regex_match(name: &str, regex: String) -> ValueMatch<'_> {
    ValueMatch {
        name,
        regex: Some(regex),
        ..ValueMatch::default()
    }
}

/// The ServiceRouter matches of one intent match item, each with the part
/// of a path prefix it covers: Consul's `pathPrefix` is Envoy's plain
/// string prefix, so a segment-wise prefix becomes `pathExact` and a
/// `pathPrefix` ending in `/` (`segment_prefix`).
fn http_match(m: &Match) -> Vec<(HttpMatch<'_>, Option<PathBlock>)> {
    let mut header: Vec<ValueMatch> = m.headers.iter().map(|(k, v)| string_match(k, v)).collect();
    header.extend(
        m.cookies
            .iter()
            .map(|(k, v)| regex_match("cookie", cookie_regex(k, v))),
    );
    let query_param = m
        .query_params
        .iter()
        .map(|(k, v)| match &v.prefix {
            // Consul matches query parameters exactly or by regex.
            Some(p) => regex_match(k, format!("^{}.*", regex_escape(p))),
            None => string_match(k, v),
        })
        .collect();
    let mut http = HttpMatch {
        header,
        methods: m.method.as_deref().into_iter().collect(),
        query_param,
        ..HttpMatch::default()
    };
    let Some(p) = &m.path else {
        return vec![(http, None)];
    };
    let Some(prefix) = &p.prefix else {
        match &p.exact {
            Some(v) => http.path_exact = Some(v.clone()),
            None => http.path_regex = Some(p.regex.clone().unwrap_or_default()),
        }
        return vec![(http, None)];
    };
    segment_prefix(prefix)
        .into_iter()
        .map(|block| {
            let mut http = http.clone();
            match &block {
                PathBlock::Whole(p) => http.path_exact = Some(p.clone()),
                PathBlock::Below(p) => http.path_prefix = Some(p.clone()),
            }
            (http, Some(block))
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

fn destination<'a>(
    s: &Service,
    r: &Route,
    to: &To<'a>,
    block: Option<&PathBlock>,
    report: &mut impl FnMut(String),
) -> Destination<'a> {
    let mut d = Destination::default();
    match *to {
        To::Splitter => {}
        To::Subset(v) => d.service_subset = Some(v),
        To::Service(name, ns) => {
            d.service = Some(name);
            d.namespace = ns;
        }
    }
    d.request_timeout = r.timeout.or(s.timeout).map(gateway_duration);
    if let Some(rt) = &s.retries {
        d.num_retries = Some(rt.attempts);
        // Consul retries only on the conditions it is given (its
        // service-router reference): none would mean no retries at all,
        // so no conditions in the intent are Envoy's usual `5xx` and
        // `connect-failure`.
        d.retry_on = Some(if rt.retry_on.is_empty() {
            vec!["5xx", "connect-failure"]
        } else {
            rt.retry_on.iter().map(|o| retry_on(*o)).collect()
        });
    }
    if let Some(rw) = &r.rewrite {
        if let Some(p) = &rw.path_prefix {
            // Envoy replaces the matched string: `/api/` below a
            // segment-wise prefix, the whole path on an exact match.
            d.prefix_rewrite = Some(block.map_or_else(|| p.clone(), |b| b.rewrite(p)));
        }
        if rw.host.is_some() {
            report(format!(
                "route `{}`: Consul's ServiceRouter cannot rewrite the host",
                r.name
            ));
        }
    }
    d
}

pub(super) fn router(ir: &Ir, s: &Service, report: &mut impl FnMut(String)) -> Option<MeshObject> {
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
            routes.push(ConsulRoute {
                destination: destination(s, r, &subset, Some(&root), report),
                route_match: any_path(),
            });
        }
        for m in &r.matches {
            for (mut http, block) in http_match(m) {
                let rewrites = r
                    .rewrite
                    .as_ref()
                    .is_some_and(|rw| rw.path_prefix.is_some());
                let block = match block {
                    None if rewrites && m.path.is_none() => {
                        http.path_prefix = Some("/".into());
                        Some(root.clone())
                    }
                    b => b,
                };
                routes.push(ConsulRoute {
                    destination: destination(s, r, &subset, block.as_ref(), report),
                    route_match: RouteMatch { http },
                });
            }
        }
    }
    if default.timeout.or(s.timeout).is_some() || s.retries.is_some() {
        // On to the splitter (no subset), with the service's settings.
        routes.push(ConsulRoute {
            destination: destination(s, default, &To::Splitter, None, report),
            route_match: any_path(),
        });
    }
    (!routes.is_empty()).then(|| obj("ServiceRouter", s, &ServiceRouterSpec { routes }))
}

/// A match of every request: the path prefix `/`.
fn any_path<'a>() -> RouteMatch<'a> {
    RouteMatch {
        http: HttpMatch {
            path_prefix: Some("/".into()),
            ..HttpMatch::default()
        },
    }
}
