//! The discovery chain: where a request to a service goes
//! (<https://developer.hashicorp.com/consul/docs/connect/l7-traffic>,
//! router → splitter → resolver).
//!
//! - ServiceRouter (service-router reference, `Routes`): "The first route
//!   to match in the list is terminal … Traffic that fails to match any
//!   of the provided routes will be routed to the default service"; a
//!   route destination "that omits the ServiceSubset field is eligible
//!   for splitting". `PrefixRewrite` "requires that either PathPrefix or
//!   PathExact be configured".
//! - Routers and splitters are "restricted to only services that define
//!   their protocol as HTTP-based": Consul refuses them otherwise ("does
//!   not permit advanced routing or splitting behavior").
//! - Timeouts: `RequestTimeout` is "the total amount of time permitted
//!   for the entire downstream request to be processed, including retry
//!   attempts"; unset, Envoy's route default of 15s applies (a resolver's
//!   `RequestTimeout`, default `15s`, applies when the chain starts at the
//!   resolver). The destination's sidecar bounds each try by
//!   `localRequestTimeoutMs`: "If not specified, inherits the Envoy
//!   default for route timeouts (15s)" (ServiceDefaults CRD).
//! - Retries (`Routes[].Destination{}.NumRetries`, `RetryOn`, …): Consul
//!   sets a retry policy when any retry field is set; `NumRetries`
//!   defaults to 1; Envoy retries only on the conditions listed.

use serde_json::Value;

use super::entries::Entry;
use super::http::HttpMatch;
use super::{http_like, text, Mesh, Sid};
use crate::model::{
    parse_duration_ms, Forward, ModelError, Problem, Request, Retries, Routing, NO_POD,
};

mod resolver;

use resolver::{resolve, Resolved, Target};

/// Envoy's default route timeout.
const ENVOY_ROUTE_TIMEOUT_MS: u64 = 15_000;

/// Where `r`, a request to `sid`, goes.
pub(super) fn route(mesh: &Mesh, sid: &Sid, r: &Request) -> Result<Routing, ModelError> {
    for e in mesh.entries.resolvers.values() {
        resolver::validate(e)?;
    }
    let http = http_like(&mesh.protocol(sid));
    let router = mesh.entries.routers.get(sid);
    if !http {
        if let Some(e) = router.or_else(|| mesh.entries.splitters.get(sid)) {
            return Err(e.invalid(format!(
                "discovery chain {:?} uses a protocol {:?} that does not permit advanced routing or splitting behavior",
                sid.1,
                mesh.protocol(sid)
            )));
        }
        let (weights, rule) = splitter_or_resolver(mesh, Target::new(sid.clone()))?;
        let mut f = forward(mesh, &weights)?;
        f.rule = rule;
        return Ok(finish(f));
    }
    if let Some(router) = router {
        // Every route is compiled (Consul validates the whole chain when
        // the entry is written); the first that matches is taken.
        let routes = router.spec.get("routes").and_then(Value::as_array);
        let mut chosen = None;
        for (i, route) in routes.into_iter().flatten().enumerate() {
            let m = HttpMatch::parse(route.get("match").and_then(|m| m.get("http")), true)
                .map_err(|p| router.err(p.at(format!("Route[{i}]"))))?;
            let dest = route.get("destination").filter(|d| !d.is_null());
            check_rewrite(router, i, &m, dest)?;
            let f = routed(mesh, sid, r, &m, dest, (router, i))?;
            if chosen.is_none() && m.matches(r) {
                chosen = Some(Forward {
                    rule: format!("{} route {i}", router.name),
                    ..f
                });
            }
        }
        if let Some(f) = chosen {
            return Ok(finish(f));
        }
        // The catch-all route Consul appends, to the service itself.
        let (weights, _) = splitter_or_resolver(mesh, Target::new(sid.clone()))?;
        let mut f = forward(mesh, &weights)?;
        f.rule = format!("{} default route", router.name);
        apply_timeouts(mesh, &weights, &mut f, ENVOY_ROUTE_TIMEOUT_MS);
        return Ok(finish(f));
    }
    let (weights, rule) = splitter_or_resolver(mesh, Target::new(sid.clone()))?;
    let mut f = forward(mesh, &weights)?;
    // A resolver's `RequestTimeout` applies where the chain starts at it.
    let outbound = match mesh.entries.splitters.get(sid) {
        Some(_) => ENVOY_ROUTE_TIMEOUT_MS,
        None => mesh
            .entries
            .resolvers
            .get(sid)
            .map(|e| duration(e, "requestTimeout"))
            .transpose()?
            .flatten()
            .unwrap_or(ENVOY_ROUTE_TIMEOUT_MS),
    };
    f.rule = rule;
    apply_timeouts(mesh, &weights, &mut f, outbound);
    Ok(finish(f))
}

/// `NoRoute` when no share reaches a pod.
fn finish(f: Forward) -> Routing {
    if f.pods.keys().all(|k| k == NO_POD) {
        Routing::NoRoute
    } else {
        Routing::Forward(f)
    }
}

fn check_rewrite(
    router: &Entry,
    i: usize,
    m: &HttpMatch,
    dest: Option<&Value>,
) -> Result<(), ModelError> {
    if !text(dest, "prefixRewrite").is_empty() && m.rewritable().is_none() {
        return Err(router.invalid(format!(
            "Route[{i}] cannot make use of PrefixRewrite without configuring either PathExact or PathPrefix"
        )));
    }
    Ok(())
}

/// A matched route (`at`: the router and the route's index): its
/// destination, rewrite, timeout and retries.
fn routed(
    mesh: &Mesh,
    sid: &Sid,
    r: &Request,
    m: &HttpMatch,
    dest: Option<&Value>,
    at: (&Entry, usize),
) -> Result<Forward, ModelError> {
    let err = |p: Problem| at.0.err(p.at(format!("Route[{}]", at.1)));
    let svc = match text(dest, "service") {
        "" => sid.1.clone(),
        s => s.to_owned(),
    };
    let ns = match text(dest, "namespace") {
        "" => sid.0.clone(),
        n => n.to_owned(),
    };
    let target = Target {
        subset: text(dest, "serviceSubset").to_owned(),
        ..Target::new((ns, svc))
    };
    let weights = if target.subset.is_empty() {
        splitter_or_resolver(mesh, target)?.0
    } else {
        vec![(target, 100.0)]
    };
    let mut f = forward(mesh, &weights)?;
    let rewrite = text(dest, "prefixRewrite");
    if let (false, Some(prefix)) = (rewrite.is_empty(), m.rewritable()) {
        let rest = r.path.get(prefix.len()..).unwrap_or_default();
        f.rewritten_path = Some(format!("{rewrite}{rest}"));
    }
    f.retries = dest.map(retries).transpose().map_err(err)?.flatten();
    let outbound = match dest {
        Some(d) => request_timeout(d).map_err(err)?,
        None => None,
    };
    apply_timeouts(
        mesh,
        &weights,
        &mut f,
        outbound.unwrap_or(ENVOY_ROUTE_TIMEOUT_MS),
    );
    Ok(f)
}

/// A positive duration field of a config entry.
fn duration(e: &Entry, key: &str) -> Result<Option<u64>, ModelError> {
    match e.spec.get(key).and_then(Value::as_str) {
        None | Some("") => Ok(None),
        Some(d) => parse_duration_ms(d)
            .map(|ms| (ms > 0).then_some(ms))
            .ok_or_else(|| e.invalid(format!("{key}: bad duration {d:?}"))),
    }
}

fn request_timeout(dest: &Value) -> Result<Option<u64>, Problem> {
    match dest.get("requestTimeout").and_then(Value::as_str) {
        None | Some("") => Ok(None),
        Some(d) => parse_duration_ms(d)
            .map(|ms| (ms > 0).then_some(ms))
            .ok_or_else(|| Problem::invalid(format!("requestTimeout: bad duration {d:?}"))),
    }
}

/// The whole request's timeout: the outbound route's, each try bounded
/// by the destination sidecar's local request timeout.
fn apply_timeouts(mesh: &Mesh, weights: &[(Target, f64)], f: &mut Forward, outbound: u64) {
    let local = weights
        .iter()
        .filter_map(|(t, _)| local_timeout(mesh, &t.sid))
        .min();
    match (&mut f.retries, local) {
        (Some(retries), Some(l)) if l < outbound => {
            retries.per_try_timeout_ms = Some(l);
            f.timeout_ms = Some(outbound);
        }
        (_, l) => f.timeout_ms = Some(l.map_or(outbound, |l| l.min(outbound))),
    }
}

/// `localRequestTimeoutMs` of a destination (`None`: disabled by 0).
fn local_timeout(mesh: &Mesh, sid: &Sid) -> Option<u64> {
    let from_defaults = mesh
        .entries
        .defaults
        .get(sid)
        .and_then(|e| e.spec.get("localRequestTimeoutMs"))
        .and_then(Value::as_u64);
    let from_proxy = || {
        mesh.entries
            .proxy_defaults
            .as_ref()
            .and_then(|e| e.spec.get("config"))
            .and_then(|c| c.get("local_request_timeout_ms"))
            .and_then(Value::as_u64)
    };
    match from_defaults.or_else(from_proxy) {
        Some(0) => None,
        Some(ms) => Some(ms),
        None => Some(ENVOY_ROUTE_TIMEOUT_MS),
    }
}

/// A route destination's retry policy (service-router reference,
/// `Routes[].Destination{}.NumRetries`: "Default: 1 … To disable retries,
/// unset all other retry settings"; `RetryOn`, `RetryOnStatusCodes`,
/// `RetryOnConnectFailure`). Consul passes the conditions to Envoy's
/// `retry_on`, which retries on nothing else; status codes no listed
/// condition covers are written as numbers.
fn retries(dest: &Value) -> Result<Option<Retries>, Problem> {
    let num = dest.get("numRetries").and_then(Value::as_u64).unwrap_or(0);
    let connect = dest.get("retryOnConnectFailure").and_then(Value::as_bool) == Some(true);
    let codes: Vec<u64> = dest
        .get("retryOnStatusCodes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    const CONDITIONS: &[&str] = &[
        "5xx",
        "gateway-error",
        "reset",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ];
    let mut on = Vec::new();
    for c in dest
        .get("retryOn")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match c.as_str() {
            Some(c) if CONDITIONS.contains(&c) => on.push(c.to_owned()),
            _ => {
                let why = format!("contains an invalid retry condition: {c}");
                return Err(Problem::invalid(why));
            }
        }
    }
    if num == 0 && !connect && codes.is_empty() && on.is_empty() {
        return Ok(None);
    }
    if connect {
        on.push("connect-failure".into());
    }
    let named = |code: u64| {
        let has = |c: &str| on.iter().any(|x| x == c);
        (has("5xx") && (500..600).contains(&code))
            || (has("gateway-error") && (502..=504).contains(&code))
            || (has("retriable-4xx") && code == 409)
    };
    let extra: Vec<String> = codes
        .iter()
        .filter(|c| !named(**c))
        .map(u64::to_string)
        .collect();
    on.extend(extra);
    on.sort();
    on.dedup();
    // Envoy retries only on the conditions listed: none, no retry.
    Ok((!on.is_empty()).then(|| Retries {
        attempts: u32::try_from(num).unwrap_or(u32::MAX).max(1),
        per_try_timeout_ms: None,
        on,
    }))
}

/// The weights of a target's splitter (flattened), else the target
/// itself; with the rule for answers.
fn splitter_or_resolver(
    mesh: &Mesh,
    target: Target,
) -> Result<(Vec<(Target, f64)>, String), ModelError> {
    match split(mesh, &target.sid, 0)? {
        Some(weights) => {
            let name = mesh
                .entries
                .splitters
                .get(&target.sid)
                .map(|e| e.name.clone());
            Ok((weights, name.unwrap_or_default()))
        }
        None => {
            let rule = match mesh.entries.resolvers.get(&target.sid) {
                Some(e) => e.name.clone(),
                None => "the default route".into(),
            };
            Ok((vec![(target, 100.0)], rule))
        }
    }
}

/// A service's splitter, flattened through the splitters of the other
/// services it splits to (service-splitter reference, `Splits`: "The sum
/// of weights across all splits must add up to 100").
fn split(mesh: &Mesh, sid: &Sid, depth: usize) -> Result<Option<Vec<(Target, f64)>>, ModelError> {
    let Some(e) = mesh.entries.splitters.get(sid) else {
        return Ok(None);
    };
    if depth > 8 {
        return Err(e.invalid("detected circular splitters"));
    }
    let splits = e
        .spec
        .get("splits")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty());
    let splits = splits.ok_or_else(|| e.invalid("no splits configured"))?;
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let mut sum = 0i64;
    for s in splits {
        let w = s.get("weight").and_then(Value::as_f64).unwrap_or(0.0);
        // "The smallest representable weight is 1/10000 or .01%".
        sum += (w * 100.0).round() as i64;
        let svc = match text(Some(s), "service") {
            "" => sid.1.clone(),
            x => x.to_owned(),
        };
        let ns = match text(Some(s), "namespace") {
            "" => sid.0.clone(),
            x => x.to_owned(),
        };
        let subset = text(Some(s), "serviceSubset").to_owned();
        let key = (ns.clone(), svc.clone(), subset.clone());
        if seen.contains(&key) {
            return Err(e.invalid(format!("split destination occurs more than once: {key:?}")));
        }
        seen.push(key);
        let t_sid = (ns, svc);
        let cookie = split_cookie(s);
        if t_sid != *sid && subset.is_empty() {
            if let Some(nested) = split(mesh, &t_sid, depth + 1)? {
                out.extend(nested.into_iter().map(|(mut t, w2)| {
                    t.set_cookie = t.set_cookie.or_else(|| cookie.clone());
                    (t, w * w2 / 100.0)
                }));
                continue;
            }
        }
        out.push((
            Target {
                subset,
                set_cookie: cookie,
                ..Target::new(t_sid)
            },
            w,
        ));
    }
    if sum != 10_000 {
        return Err(e.invalid(format!(
            "the sum of all split weights must be 100, not {}",
            sum as f64 / 100.0
        )));
    }
    Ok(Some(out))
}

/// The `Set-Cookie` header a split's `responseHeaders` set or add (`Set`
/// over `Add`).
fn split_cookie(split: &Value) -> Option<String> {
    let headers = split.get("responseHeaders")?;
    ["set", "add"].iter().find_map(|op| {
        let m = headers.get(op)?.as_object()?;
        let (_, v) = m
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))?;
        v.as_str().map(str::to_owned)
    })
}

/// The pods each weight reaches: equal shares of a target's instances,
/// [`NO_POD`] for a target with none here.
fn forward(mesh: &Mesh, weights: &[(Target, f64)]) -> Result<Forward, ModelError> {
    let mut f = Forward::default();
    for (target, w) in weights.iter().filter(|(_, w)| *w > 0.0) {
        match resolve(mesh, target.clone(), false)? {
            Resolved::Local(ids) if !ids.is_empty() => {
                let share = w / ids.len() as f64;
                for id in ids {
                    if let Some(c) = &target.set_cookie {
                        f.set_cookie.insert(id.clone(), c.clone());
                    }
                    *f.pods.entry(id).or_insert(0.0) += share;
                }
            }
            _ => *f.pods.entry(NO_POD.to_owned()).or_insert(0.0) += w,
        }
    }
    Ok(f)
}
