//! Authorization at the destination's sidecar.
//!
//! - mTLS: in transparent proxy mode the sidecar accepts only mTLS unless
//!   the service's `mutualTLSMode` (ServiceDefaults, else ProxyDefaults)
//!   is `permissive`, and then "Intentions are not enforced … for non-mTLS
//!   connections" (<https://developer.hashicorp.com/consul/docs/k8s/connect/onboarding-tproxy-mode>);
//!   `permissive` needs the Mesh entry's
//!   `allowEnablingPermissiveMutualTLS`.
//! - Intentions (<https://developer.hashicorp.com/consul/docs/connect/intentions>,
//!   "Precedence and match order"): of the intentions whose destination
//!   (exact or `*`) and source (exact or `*`, by namespace and name) match,
//!   the one of highest precedence decides (the table: exact names over
//!   wildcards, destination before source); "only one intention can
//!   control authorization between a pair of services".
//! - An L4 intention allows or denies. An L7 one's permissions apply
//!   "top to bottom … the first permission to match in the list is
//!   terminal"; "traffic that fails to match any of the provided
//!   permissions in this intention will be subject to the default
//!   intention behavior" (service-intentions reference, `Permissions`).
//!   L7 intentions "are restricted to only destination services that
//!   define their protocol as HTTP-based"; one reaching a TCP service
//!   through a wildcard destination is treated as a deny (Consul's RBAC
//!   generation).
//! - No intention matches: the default policy, assumed `allow` (see the
//!   module overview).

use serde_json::Value;

use super::entries::Entry;
use super::http::HttpMatch;
use super::{http_like, text, workload, Mesh, Sid};
use crate::model::{ModelError, Request, Verdict};

/// The verdict of the destination `dest` on `r`.
pub(super) fn authorize(mesh: &Mesh, dest: &Sid, r: &Request) -> Result<Verdict, ModelError> {
    let Some((ns, sa, labels)) = workload(&r.source) else {
        return plaintext(mesh, dest);
    };
    let caller = mesh.caller(ns, sa, labels);
    match deciding(mesh, dest, &caller)? {
        None => Ok(Verdict::Allow { by: None }),
        Some((entry, source)) => apply(mesh, dest, entry, source, r),
    }
}

/// A request without mTLS.
fn plaintext(mesh: &Mesh, dest: &Sid) -> Result<Verdict, ModelError> {
    let defaults = mesh
        .entries
        .defaults
        .get(dest)
        .filter(|e| !text(Some(&e.spec), "mutualTLSMode").is_empty());
    let setting = defaults.or(mesh
        .entries
        .proxy_defaults
        .as_ref()
        .filter(|e| !text(Some(&e.spec), "mutualTLSMode").is_empty()));
    match setting.map(|e| (e, text(Some(&e.spec), "mutualTLSMode"))) {
        None => Ok(Verdict::Deny {
            by: "Consul mTLS (mutualTLSMode defaults to strict)".into(),
        }),
        Some((e, "strict")) => Ok(Verdict::Deny { by: e.name.clone() }),
        Some((e, "permissive")) => {
            if let Some(m) = &mesh.entries.mesh {
                if m.spec
                    .get("allowEnablingPermissiveMutualTLS")
                    .and_then(Value::as_bool)
                    != Some(true)
                {
                    return Err(e.invalid(format!(
                        "MutualTLSMode=permissive is not allowed: {} does not set allowEnablingPermissiveMutualTLS",
                        m.name
                    )));
                }
            }
            Ok(Verdict::Allow {
                by: Some(e.name.clone()),
            })
        }
        Some((e, mode)) => Err(e.invalid(format!("unknown mutualTLSMode {mode:?}"))),
    }
}

fn wild(pattern: &str, value: &str) -> bool {
    pattern == "*" || pattern == value
}

/// The precedence table: destination exactness first, then source's.
fn precedence(dest: &Sid, src_ns: &str, src_name: &str) -> u32 {
    let d = match (dest.0.as_str(), dest.1.as_str()) {
        ("*", _) => 0,
        (_, "*") => 1,
        _ => 2,
    };
    let s = match (src_ns, src_name) {
        ("*", _) => 1,
        (_, "*") => 2,
        _ => 3,
    };
    d * 3 + s
}

/// The intention (entry and source) of highest precedence matching
/// `caller` → `dest`.
fn deciding<'m>(
    mesh: &'m Mesh,
    dest: &Sid,
    caller: &Sid,
) -> Result<Option<(&'m Entry, &'m Value)>, ModelError> {
    let http = http_like(&mesh.protocol(dest));
    let mut best: Option<(u32, &Entry, &Value)> = None;
    for (d, e) in &mesh.entries.intentions {
        if !(wild(&d.0, &dest.0) && wild(&d.1, &dest.1)) {
            continue;
        }
        if e.spec.get("jwt").is_some_and(|j| !j.is_null()) {
            return Err(e.unmodelled("JWT requirements are not modelled"));
        }
        let sources = match e.spec.get("sources") {
            None | Some(Value::Null) => &[][..],
            Some(s) => s
                .as_array()
                .ok_or_else(|| e.invalid("sources must be a list"))?,
        };
        let mut seen = Vec::new();
        for s in sources {
            let (ns, name) = validate(e, d, s)?;
            if seen.contains(&(ns, name)) {
                return Err(e.invalid(format!("duplicate source {ns}/{name}")));
            }
            seen.push((ns, name));
            let l7 = s
                .get("permissions")
                .and_then(Value::as_array)
                .is_some_and(|p| !p.is_empty());
            if l7 && !http && d == dest {
                return Err(e.invalid(format!(
                    "L7 permissions need an HTTP-based protocol; {} is {}",
                    dest.1,
                    mesh.protocol(dest)
                )));
            }
            // Peers, partitions and sameness groups are not this cluster.
            let remote = ["peer", "samenessGroup"]
                .iter()
                .any(|k| !text(Some(s), k).is_empty())
                || !matches!(text(Some(s), "partition"), "" | "default");
            if remote || !(wild(ns, &caller.0) && wild(name, &caller.1)) {
                continue;
            }
            let p = precedence(d, ns, name);
            if best.is_none_or(|(b, _, _)| p > b) {
                best = Some((p, e, s));
            }
        }
    }
    Ok(best.map(|(_, e, s)| (e, s)))
}

/// A source's namespace and name; checks it is an L4 or an L7 intention.
fn validate<'v>(e: &Entry, dest: &'v Sid, s: &'v Value) -> Result<(&'v str, &'v str), ModelError> {
    let name = text(Some(s), "name");
    if name.is_empty() {
        return Err(e.invalid("a source needs a name"));
    }
    let ns = match text(Some(s), "namespace") {
        // "Defaults to the namespace of the destination service".
        "" => dest.0.as_str(),
        ns => ns,
    };
    if s.get("jwt").is_some_and(|j| !j.is_null()) {
        return Err(e.unmodelled("JWT requirements are not modelled"));
    }
    let action = text(Some(s), "action");
    let perms = s
        .get("permissions")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty());
    match (action, perms) {
        ("allow" | "deny", None) => Ok((ns, name)),
        ("", Some(_)) => Ok((ns, name)),
        ("", None) => Err(e.invalid(format!("source {name}: action or permissions is required"))),
        (_, Some(_)) => Err(e.invalid(format!(
            "source {name}: action and permissions are mutually exclusive"
        ))),
        (a, None) => Err(e.invalid(format!("source {name}: unknown action {a:?}"))),
    }
}

/// What the deciding intention does with `r`.
fn apply(
    mesh: &Mesh,
    dest: &Sid,
    e: &Entry,
    s: &Value,
    r: &Request,
) -> Result<Verdict, ModelError> {
    let Some(perms) = s
        .get("permissions")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    else {
        return Ok(match text(Some(s), "action") {
            "allow" => Verdict::Allow {
                by: Some(e.name.clone()),
            },
            _ => Verdict::Deny { by: e.name.clone() },
        });
    };
    if !http_like(&mesh.protocol(dest)) {
        // Through a wildcard destination (an exact one is refused).
        return Ok(Verdict::Deny { by: e.name.clone() });
    }
    for (i, p) in perms.iter().enumerate() {
        let action = text(Some(p), "action");
        if !matches!(action, "allow" | "deny") {
            return Err(e.invalid(format!("permission {i}: action must be allow or deny")));
        }
        let http = p.get("http").filter(|h| !h.is_null());
        let http = http.ok_or_else(|| e.invalid(format!("permission {i}: http is required")))?;
        let m = HttpMatch::parse(Some(http), false)
            .map_err(|p| e.err(p.at(format!("permission {i}"))))?;
        if m.matches(r) {
            return Ok(match action {
                "allow" => Verdict::Allow {
                    by: Some(e.name.clone()),
                },
                _ => Verdict::Deny { by: e.name.clone() },
            });
        }
    }
    // No permission matched: the default intention policy.
    Ok(Verdict::Allow { by: None })
}
