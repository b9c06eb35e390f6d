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

use meshplan_policy_lang::intent::service::{
    HashAlgorithm, LoadBalancerPolicy, Match, StringMatch,
};
use serde_json::{json, Map, Value};

use super::obj;
use crate::emit::istio::retry_on;
use crate::emit::{
    cookie_regex, gateway_duration, regex_escape, segment_prefix, Feature, PathBlock,
};
use crate::ir::{Backend, Ir, OtherService, Route, RouteAction, Service};
use crate::object::MeshObject;

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

pub(super) fn splitter(s: &Service) -> Option<MeshObject> {
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
