//! Where the caller's sidecar sends a request: the VirtualService for the
//! host, else Istio's default route
//! (<https://istio.io/latest/docs/reference/config/networking/virtual-service/>).

use std::collections::BTreeMap;

use serde_json::Value;

use super::hosts::{fqdn, host_matches, service_fqdn};
use super::matching::{block_matches, redirect, rewritten_path};
use super::{settings, Obj, World};
use crate::model::{
    selects, Forward, KubeService, Labels, ModelError, Request, Routing, Source, NO_POD,
};

/// The sidecar a request leaves from.
struct Client<'a> {
    namespace: &'a str,
    labels: &'a Labels,
}

/// One Envoy route: an `http` rule with one of its match blocks (none:
/// the rule matches every request).
struct Rule<'v> {
    index: usize,
    route: &'v Value,
    block: Option<&'v Value>,
}

pub(super) fn route(w: &World, r: &Request) -> Result<Routing, ModelError> {
    let Some(svc) = w.service(&r.namespace, &r.service) else {
        return Ok(Routing::NoRoute);
    };
    let Some(port) = svc.ports.iter().find(|p| p.port == r.port) else {
        return Ok(Routing::NoRoute);
    };
    let http = super::is_http(&port.protocol);
    // VirtualServices program the client's sidecar ("the reserved word
    // `mesh` is used to imply all the sidecars in the mesh", `gateways`):
    // a caller without one reaches the Service through kube-proxy.
    let Source::Workload {
        namespace, labels, ..
    } = &r.source
    else {
        let rule = format!("Service {}/{} (no client sidecar)", svc.namespace, svc.name);
        return Ok(kubernetes(w, svc, rule, false));
    };
    let client = Client { namespace, labels };
    let host = service_fqdn(svc);
    for vs in virtual_services(w, &host)? {
        if http {
            let rules = http_rules(vs, r.port, &client)?;
            // A VirtualService without routes for the port leaves the
            // host to the default route (istio/istio `route.go`
            // `buildSidecarVirtualHostsForVirtualService`).
            if !rules.is_empty() {
                return http_route(w, vs, &rules, r, &client);
            }
        } else if let Some(routing) = tcp_route(w, vs, r, &client)? {
            return Ok(routing);
        }
    }
    let rule = format!(
        "the default route of Service {}/{}",
        svc.namespace, svc.name
    );
    Ok(kubernetes(w, svc, rule, http))
}

/// The VirtualServices for `host` that program sidecars (no `gateways`,
/// or `mesh` among them), exact hosts before wildcards. For sidecars Istio
/// binds a host to one VirtualService, the oldest
/// (<https://istio.io/latest/docs/ops/best-practices/traffic-management/#split-virtual-services>:
/// merging "is only supported for gateways"); here, the first by
/// namespace and name.
fn virtual_services<'w>(w: &'w World, host: &str) -> Result<Vec<&'w Obj>, ModelError> {
    let mut found = Vec::new();
    for vs in &w.virtual_services {
        let gateways = vs.texts(&vs.spec, "gateways")?;
        if !gateways.is_empty() && !gateways.contains(&"mesh") {
            continue;
        }
        let mut best: Option<bool> = None;
        for h in vs.texts(&vs.spec, "hosts")? {
            let h = fqdn(h, &vs.namespace);
            if host_matches(&h, host) {
                let wildcard = h.starts_with('*');
                best = Some(best.map_or(wildcard, |b| b && wildcard));
            }
        }
        if let Some(wildcard) = best {
            found.push((wildcard, vs));
        }
    }
    found.sort_by_key(|(wildcard, _)| *wildcard);
    Ok(found.into_iter().map(|(_, vs)| vs).collect())
}

/// Whether a match block applies to this sidecar: match-level `gateways`
/// must name `mesh`, `sourceLabels` must select the caller and
/// `sourceNamespace` name its namespace (`HTTPMatchRequest`,
/// `L4MatchAttributes`).
fn source_matches(o: &Obj, block: &Value, client: &Client) -> Result<bool, ModelError> {
    let gateways = o.texts(block, "gateways")?;
    if !gateways.is_empty() {
        return Ok(gateways.contains(&"mesh"));
    }
    if !selects(&o.labels(block, "sourceLabels")?, client.labels) {
        return Ok(false);
    }
    Ok(o.text(block, "sourceNamespace")?
        .is_none_or(|ns| ns.is_empty() || ns == client.namespace))
}

/// Whether a block's `port` ("Specifies the ports on the host that is
/// being addressed") admits the Service port.
fn port_matches(o: &Obj, block: &Value, port: u32) -> Result<bool, ModelError> {
    Ok(o.int(block, "port")?
        .is_none_or(|p| p == 0 || p == i64::from(port)))
}

/// The routes Istio builds for this port and sidecar, in order: each
/// `http` rule once per match block whose port and source conditions
/// hold; a rule without `match` matches everything, and nothing after it
/// is reachable.
fn http_rules<'v>(vs: &'v Obj, port: u32, client: &Client) -> Result<Vec<Rule<'v>>, ModelError> {
    let mut rules = Vec::new();
    for (index, route) in vs.list(&vs.spec, "http")?.iter().enumerate() {
        let blocks = vs.list(route, "match")?;
        if blocks.is_empty() {
            rules.push(Rule {
                index,
                route,
                block: None,
            });
            break;
        }
        for block in blocks {
            if port_matches(vs, block, port)? && source_matches(vs, block, client)? {
                rules.push(Rule {
                    index,
                    route,
                    block: Some(block),
                });
            }
        }
    }
    Ok(rules)
}

/// The first route whose block holds; none: Envoy answers 404 (NR).
fn http_route(
    w: &World,
    vs: &Obj,
    rules: &[Rule],
    r: &Request,
    client: &Client,
) -> Result<Routing, ModelError> {
    for rule in rules {
        if let Some(block) = rule.block {
            if !block_matches(vs, block, r)? {
                continue;
            }
        }
        return http_action(w, vs, rule, r, client);
    }
    Ok(Routing::NoRoute)
}

/// What a matched rule does: redirect, or forward to its destinations
/// ("A HTTP rule can either return a direct_response, redirect or forward
/// (default) traffic").
fn http_action(
    w: &World,
    vs: &Obj,
    rule: &Rule,
    r: &Request,
    client: &Client,
) -> Result<Routing, ModelError> {
    let route = rule.route;
    if let Some(rd) = Obj::get(route, "redirect") {
        return Ok(Routing::Redirect(redirect(vs, rd, rule.block, &r.path)?));
    }
    if Obj::get(route, "directResponse").is_some() {
        return Err(vs.unmodelled(format!(
            "http[{}].directResponse: the contract has no answer for a direct response",
            rule.index
        )));
    }
    if Obj::get(route, "delegate").is_some() {
        return Err(vs.unmodelled(format!("http[{}].delegate: not modelled", rule.index)));
    }
    let mut f = Forward {
        pods: shares(w, vs, vs.list(route, "route")?, client.namespace)?,
        timeout_ms: settings::timeout(vs, route)?,
        retries: settings::retries(vs, route)?,
        fault: settings::fault(vs, route)?,
        mirror: settings::mirror(w, vs, route, client.namespace)?,
        set_cookie: set_cookies(w, vs, route, client.namespace)?,
        rule: format!("{} rule {}", vs.id, rule.index),
        ..Forward::default()
    };
    if let Some(rw) = Obj::get(route, "rewrite") {
        // A rewrite that leaves the path as it was (`uri: /` without a
        // URI condition) is no rewrite.
        f.rewritten_path = rewritten_path(vs, rw, rule.block, &r.path)?.filter(|p| *p != r.path);
        f.rewritten_host = vs
            .text(rw, "authority")?
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
    }
    if f.rewritten_host.is_none() {
        f.rewritten_host = header_authority(vs, route)?;
    }
    Ok(forward_or_none(f))
}

/// An authority set through `headers.request` (`set` over `add`), which
/// Istio turns into a host rewrite (istio/istio `route.go`
/// `translateAppendHeaders`).
fn header_authority(vs: &Obj, route: &Value) -> Result<Option<String>, ModelError> {
    let Some(req) = Obj::get(route, "headers").and_then(|h| Obj::get(h, "request")) else {
        return Ok(None);
    };
    for op in ["set", "add"] {
        for key in [":authority", "host"] {
            if let Some(m) = vs.map(req, op)? {
                if let Some(v) = m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                    return Ok(v.1.as_str().map(str::to_owned));
                }
            }
        }
    }
    Ok(None)
}

/// The first `tcp` rule whose block holds (no `match`: every
/// connection); `None`: no rule matched, and Istio's listener falls back
/// to the Service's default cluster
/// (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#TCPRoute>).
fn tcp_route(
    w: &World,
    vs: &Obj,
    r: &Request,
    client: &Client,
) -> Result<Option<Routing>, ModelError> {
    for (i, route) in vs.list(&vs.spec, "tcp")?.iter().enumerate() {
        let blocks = vs.list(route, "match")?;
        let mut hit = blocks.is_empty();
        for block in blocks {
            if Obj::get(block, "destinationSubnets").is_some()
                || Obj::get(block, "sourceSubnet").is_some()
            {
                return Err(vs.unmodelled(format!("tcp[{i}].match: the model knows no addresses")));
            }
            if port_matches(vs, block, r.port)? && source_matches(vs, block, client)? {
                hit = true;
                break;
            }
        }
        if hit {
            let f = Forward {
                pods: shares(w, vs, vs.list(route, "route")?, client.namespace)?,
                rule: format!("{} tcp rule {i}", vs.id),
                ..Forward::default()
            };
            return Ok(Some(forward_or_none(f)));
        }
    }
    Ok(None)
}

/// Each pod's percent of a rule's destinations. "A destination will
/// receive weight/(sum of all weights) requests. If there is only one
/// destination in a rule, it will receive all traffic. Otherwise, if
/// weight is 0, the destination will not receive any traffic"
/// (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRouteDestination>);
/// a destination's share is split equally among its pods (round robin).
fn shares(
    w: &World,
    owner: &Obj,
    destinations: &[Value],
    client_ns: &str,
) -> Result<BTreeMap<String, f64>, ModelError> {
    let weighted = weighted(owner, destinations)?;
    let total: f64 = weighted.iter().map(|(_, n)| n).sum();
    if total <= 0.0 {
        return Err(owner.invalid("route: no destination with a weight"));
    }
    let mut pods = BTreeMap::new();
    for (d, n) in weighted {
        let destination = Obj::get(d, "destination")
            .ok_or_else(|| owner.invalid("route[].destination: required"))?;
        let share = n * 100.0 / total;
        let targets = w.destination_pods(owner, destination, client_ns)?;
        if targets.is_empty() {
            *pods.entry(NO_POD.to_owned()).or_insert(0.0) += share;
            continue;
        }
        let each = share / targets.len() as f64;
        for p in targets {
            *pods.entry(p.id.clone()).or_insert(0.0) += each;
        }
    }
    Ok(pods)
}

/// The destinations that receive traffic, with their weights: the only
/// one, else those of a positive weight.
fn weighted<'v>(
    owner: &Obj,
    destinations: &'v [Value],
) -> Result<Vec<(&'v Value, f64)>, ModelError> {
    let mut out = Vec::new();
    if let [only] = destinations {
        out.push((only, 100.0));
        return Ok(out);
    }
    for d in destinations {
        match owner.int(d, "weight")?.unwrap_or(0) {
            n if n < 0 => return Err(owner.invalid("route[].weight: negative")),
            0 => {}
            n => out.push((d, n as f64)),
        }
    }
    Ok(out)
}

/// The `Set-Cookie` header each pod's answers get: a destination's
/// `headers.response` (`set`, else `add`), else the rule's
/// (`HTTPRoute.headers` applies to every destination; `Headers`:
/// "header manipulation rules" of requests and responses).
fn set_cookies(
    w: &World,
    owner: &Obj,
    route: &Value,
    client_ns: &str,
) -> Result<BTreeMap<String, String>, ModelError> {
    let cookie = |v: &Value| -> Result<Option<String>, ModelError> {
        let Some(resp) = Obj::get(v, "headers").and_then(|h| Obj::get(h, "response")) else {
            return Ok(None);
        };
        for op in ["set", "add"] {
            if let Some(m) = owner.map(resp, op)? {
                if let Some((_, v)) = m.iter().find(|(k, _)| k.eq_ignore_ascii_case("set-cookie")) {
                    return Ok(v.as_str().map(str::to_owned));
                }
            }
        }
        Ok(None)
    };
    let whole = cookie(route)?;
    let mut out = BTreeMap::new();
    for (d, _) in weighted(owner, owner.list(route, "route")?)? {
        let Some(c) = cookie(d)?.or_else(|| whole.clone()) else {
            continue;
        };
        let destination = Obj::get(d, "destination")
            .ok_or_else(|| owner.invalid("route[].destination: required"))?;
        for p in w.destination_pods(owner, destination, client_ns)? {
            out.insert(p.id.clone(), c.clone());
        }
    }
    Ok(out)
}

/// A forward whose every share reaches no pod is no route.
fn forward_or_none(f: Forward) -> Routing {
    if f.pods.keys().all(|k| k == NO_POD) {
        Routing::NoRoute
    } else {
        Routing::Forward(f)
    }
}

/// The Service's pods, equally: Istio's default route to the Service's
/// endpoints, "round robin" by default
/// (<https://istio.io/latest/docs/concepts/traffic-management/#load-balancing-options>),
/// with the mesh's default retries on HTTP (`sidecar_http`); or
/// kube-proxy's balancing for a caller without a sidecar.
fn kubernetes(w: &World, svc: &KubeService, rule: String, sidecar_http: bool) -> Routing {
    let pods = w.pods_of(svc);
    if pods.is_empty() {
        return Routing::NoRoute;
    }
    let each = 100.0 / pods.len() as f64;
    Routing::Forward(Forward {
        pods: pods.iter().map(|p| (p.id.clone(), each)).collect(),
        retries: sidecar_http.then(settings::default_retries),
        rule,
        ..Forward::default()
    })
}
