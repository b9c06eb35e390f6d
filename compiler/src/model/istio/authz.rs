//! Whether each destination pod's sidecar admits a request:
//! PeerAuthentication, then AuthorizationPolicy.

use std::collections::BTreeMap;

use serde_json::Value;

use super::matching::authority;
use super::{Obj, World, ROOT_NAMESPACE};
use crate::model::{selects, ModelError, Pod, Request, Source, Verdict};

/// What the destination's sidecar knows of a request.
struct Attrs<'a> {
    /// The caller's mTLS identity (`<trust-domain>/ns/<ns>/sa/<sa>`) and
    /// namespace; `None` over plaintext.
    peer: Option<(String, &'a str)>,
    trust_domain: &'a str,
    r: &'a Request,
    host: String,
    /// The container port the connection reaches.
    port: u32,
    http: bool,
}

pub(super) fn authorize(w: &World, r: &Request) -> Result<BTreeMap<String, Verdict>, ModelError> {
    let mut out = BTreeMap::new();
    let Some(svc) = w.service(&r.namespace, &r.service) else {
        return Ok(out);
    };
    let port = svc.ports.iter().find(|p| p.port == r.port);
    let target = port.map_or(r.port, |p| p.target_port);
    let http = port.is_none_or(|p| super::is_http(&p.protocol));
    for pod in w.pods_of(svc) {
        out.insert(pod.id.clone(), verdict(w, pod, r, target, http)?);
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Unset,
    Disable,
    Permissive,
    Strict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Allow,
    Deny,
    Audit,
    Custom,
}

fn verdict(
    w: &World,
    pod: &Pod,
    r: &Request,
    port: u32,
    http: bool,
) -> Result<Verdict, ModelError> {
    let (mode, mode_by) = mtls_mode(w, pod, port)?;
    // STRICT: "Connection is an mTLS tunnel (TLS with client cert must be
    // presented)" (PeerAuthentication.MutualTLS.Mode).
    if mode == Mode::Strict && matches!(r.source, Source::Unauthenticated { .. }) {
        let by = mode_by.map_or_else(|| "PeerAuthentication STRICT".to_owned(), |o| o.id.clone());
        return Ok(Verdict::Deny { by });
    }
    // DISABLE: "Connection is not tunneled": no peer identity reaches the
    // policy, even from a meshed caller.
    let peer = match &r.source {
        Source::Workload {
            namespace,
            service_account,
            ..
        } if mode != Mode::Disable => Some((
            format!(
                "{}/ns/{namespace}/sa/{service_account}",
                w.cluster.trust_domain
            ),
            namespace.as_str(),
        )),
        _ => None,
    };
    let a = Attrs {
        peer,
        trust_domain: &w.cluster.trust_domain,
        r,
        host: authority(r),
        port,
        http,
    };
    decide(&applicable(w, pod)?, &a)
}

/// The evaluation order of the AuthorizationPolicy reference: "1. If
/// there are any CUSTOM policies that match the request, evaluate and
/// deny the request if the evaluation result is deny. 2. If there are any
/// DENY policies that match the request, deny the request. 3. If there
/// are no ALLOW policies for the workload, allow the request. 4. If any of
/// the ALLOW policies match the request, allow the request. 5. Deny the
/// request." AUDIT policies "do not affect whether requests are allowed
/// or denied".
fn decide(policies: &[(&Obj, Action)], a: &Attrs) -> Result<Verdict, ModelError> {
    for (o, action) in policies {
        if *action == Action::Custom && policy_matches(o, a, false)? {
            return Err(o.unmodelled(
                "action CUSTOM: an external authorizer decides, which the model cannot",
            ));
        }
    }
    for (o, action) in policies {
        if *action == Action::Deny && policy_matches(o, a, true)? {
            return Ok(Verdict::Deny { by: o.id.clone() });
        }
    }
    let allows: Vec<&Obj> = policies
        .iter()
        .filter(|(_, action)| *action == Action::Allow)
        .map(|(o, _)| *o)
        .collect();
    let Some(first) = allows.first() else {
        return Ok(Verdict::Allow { by: None });
    };
    for o in &allows {
        if policy_matches(o, a, false)? {
            return Ok(Verdict::Allow {
                by: Some(o.id.clone()),
            });
        }
    }
    // The deciding object of a default deny: an allow-nothing policy if
    // one applies, else the first ALLOW policy.
    let mut decider = *first;
    for o in &allows {
        if o.list(&o.spec, "rules")?.is_empty() {
            decider = o;
            break;
        }
    }
    Ok(Verdict::Deny {
        by: decider.id.clone(),
    })
}

/// The policies that apply to `pod`: "The selector will match with
/// workloads in the same namespace as the authorization policy. If the
/// authorization policy is in the root namespace, the selector will
/// additionally match with workloads in all namespaces. If the selector
/// and the targetRef are not set, the selector will match all workloads"
/// (`AuthorizationPolicy.selector`). A `targetRef(s)` policy applies to
/// gateways and waypoints, not sidecars; an `istio.io/dry-run` one is not
/// enforced.
fn applicable<'w>(w: &'w World, pod: &Pod) -> Result<Vec<(&'w Obj, Action)>, ModelError> {
    let mut out = Vec::new();
    for o in &w.authorization_policies {
        if o.namespace != pod.namespace && o.namespace != ROOT_NAMESPACE {
            continue;
        }
        if Obj::get(&o.spec, "targetRef").is_some() || Obj::get(&o.spec, "targetRefs").is_some() {
            continue;
        }
        if o.metadata["annotations"]["istio.io/dry-run"].as_str() == Some("true") {
            continue;
        }
        let selector = o.labels(
            Obj::get(&o.spec, "selector").unwrap_or(&Value::Null),
            "matchLabels",
        )?;
        if !selects(&selector, &pod.labels) {
            continue;
        }
        let action = match o.text(&o.spec, "action")?.unwrap_or("ALLOW") {
            "ALLOW" => Action::Allow,
            "DENY" => Action::Deny,
            "AUDIT" => Action::Audit,
            "CUSTOM" => Action::Custom,
            other => return Err(o.invalid(format!("spec.action: unknown `{other}`"))),
        };
        out.push((o, action));
    }
    Ok(out)
}

/// "A match occurs when at least one rule matches the request. If not
/// set, the match will never occur" (`AuthorizationPolicy.rules`).
fn policy_matches(o: &Obj, a: &Attrs, deny: bool) -> Result<bool, ModelError> {
    for rule in o.list(&o.spec, "rules")? {
        if rule_matches(o, rule, a, deny)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// "A match occurs when at least one source, one operation and all
/// conditions matches the request. An empty rule is always matched"
/// (`Rule`).
fn rule_matches(o: &Obj, rule: &Value, a: &Attrs, deny: bool) -> Result<bool, ModelError> {
    let from = o.list(rule, "from")?;
    if !from.is_empty() && !any(from, |f| source_matches(o, Obj::get(f, "source"), a))? {
        return Ok(false);
    }
    let to = o.list(rule, "to")?;
    if !to.is_empty()
        && !any(to, |t| {
            operation_matches(o, Obj::get(t, "operation"), a, deny)
        })?
    {
        return Ok(false);
    }
    for c in o.list(rule, "when")? {
        if !condition_matches(o, c, a, deny)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn any(
    items: &[Value],
    mut f: impl FnMut(&Value) -> Result<bool, ModelError>,
) -> Result<bool, ModelError> {
    for i in items {
        if f(i)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Istio's value matching: "Exact match: `abc` will match on value
/// `abc`. Prefix match: `abc*` will match on value `abc` and `abcd`.
/// Suffix match: `*abc` will match on value `abc` and `xabc`. Presence
/// match: `*` will match when value is not empty" (`Rule`).
fn value_match(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return !value.is_empty();
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return value.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return value.ends_with(suffix);
    }
    pattern == value
}

/// A principal pattern against a peer identity. "In authorization
/// policy, `cluster.local` is a pointer that points to the current trust
/// domain" (<https://istio.io/latest/docs/tasks/security/authorization/authz-td-migration/>,
/// "Best practices"); a `spiffe://` prefix is dropped.
fn principal_match(pattern: &str, principal: &str, trust_domain: &str) -> bool {
    let pattern = pattern.strip_prefix("spiffe://").unwrap_or(pattern);
    value_match(pattern, principal)
        || pattern
            .strip_prefix("cluster.local/")
            .is_some_and(|rest| value_match(&format!("{trust_domain}/{rest}"), principal))
}

/// `key` (one of its values matches) and `notKey` (none does) against an
/// attribute (`None`: absent, which matches no value).
fn pair(
    o: &Obj,
    v: &Value,
    (key, not_key): (&str, &str),
    value: Option<&str>,
    m: impl Fn(&str, &str) -> bool,
) -> Result<bool, ModelError> {
    let yes = o.texts(v, key)?;
    let no = o.texts(v, not_key)?;
    let hit = |list: &[&str]| value.is_some_and(|x| list.iter().any(|p| m(p, x)));
    Ok((yes.is_empty() || hit(&yes)) && !hit(&no))
}

/// `Source`: "Fields in the source are ANDed together". `principals` and
/// `namespaces` are "derived from the peer certificate" and require mTLS;
/// request principals come from a JWT, which the model's requests never
/// carry.
fn source_matches(o: &Obj, s: Option<&Value>, a: &Attrs) -> Result<bool, ModelError> {
    let Some(s) = s else {
        return Ok(true);
    };
    for key in [
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
    ] {
        if !o.texts(s, key)?.is_empty() {
            return Err(o.unmodelled(format!("source.{key}: the model knows no addresses")));
        }
    }
    let principal = a.peer.as_ref().map(|(p, _)| p.as_str());
    let namespace = a.peer.as_ref().map(|(_, n)| *n);
    let td = a.trust_domain;
    Ok(
        pair(o, s, ("principals", "notPrincipals"), principal, |p, v| {
            principal_match(p, v, td)
        })? && pair(
            o,
            s,
            ("namespaces", "notNamespaces"),
            namespace,
            value_match,
        )? && pair(
            o,
            s,
            ("requestPrincipals", "notRequestPrincipals"),
            None,
            value_match,
        )?,
    )
}

/// `Operation`: "Fields in the operation are ANDed together"; `ports`
/// are the ports "as specified in the connection" (the container port).
/// `hosts`, `methods` and `paths` "Must be used only with HTTP": on TCP
/// "the rule becomes invalid" in an ALLOW policy (it never matches),
/// while "For a DENY rule, missing attributes are treated as matches"
/// (<https://istio.io/latest/docs/tasks/security/authorization/authz-tcp/>).
fn operation_matches(
    o: &Obj,
    op: Option<&Value>,
    a: &Attrs,
    deny: bool,
) -> Result<bool, ModelError> {
    let Some(op) = op else {
        return Ok(true);
    };
    let port = a.port.to_string();
    if !pair(o, op, ("ports", "notPorts"), Some(&port), value_match)? {
        return Ok(false);
    }
    const HTTP_ONLY: [(&str, &str); 3] = [
        ("hosts", "notHosts"),
        ("methods", "notMethods"),
        ("paths", "notPaths"),
    ];
    if !a.http {
        let mut uses_http = false;
        for (k, n) in HTTP_ONLY {
            uses_http |= !o.texts(op, k)?.is_empty() || !o.texts(op, n)?.is_empty();
        }
        return Ok(!uses_http || deny);
    }
    let host_match =
        |p: &str, v: &str| value_match(&p.to_ascii_lowercase(), &v.to_ascii_lowercase());
    Ok(pair(o, op, HTTP_ONLY[0], Some(&a.host), host_match)?
        && pair(o, op, HTTP_ONLY[1], Some(&a.r.method), value_match)?
        && pair(o, op, HTTP_ONLY[2], Some(&a.r.path), value_match)?)
}

/// `when`: the attributes the model knows
/// (<https://istio.io/latest/docs/reference/config/security/conditions/>);
/// `request.auth.*` is absent (no JWT), `request.headers` is HTTP-only.
fn condition_matches(o: &Obj, c: &Value, a: &Attrs, deny: bool) -> Result<bool, ModelError> {
    let key = o
        .text(c, "key")?
        .ok_or_else(|| o.invalid("when[].key: required"))?;
    let port = a.port.to_string();
    let value: Option<&str> = match key {
        "source.principal" => {
            let td = a.trust_domain;
            let principal = a.peer.as_ref().map(|(p, _)| p.as_str());
            return pair(o, c, ("values", "notValues"), principal, |p, v| {
                principal_match(p, v, td)
            });
        }
        "source.namespace" => a.peer.as_ref().map(|(_, n)| *n),
        "destination.port" => Some(&port),
        k if k.starts_with("request.auth.") => None,
        k if k.starts_with("request.headers[") && k.ends_with(']') => {
            if !a.http {
                return Ok(deny);
            }
            let name = k["request.headers[".len()..k.len() - 1].to_ascii_lowercase();
            a.r.headers.get(&name).map(String::as_str)
        }
        _ => return Err(o.unmodelled(format!("when: the model cannot evaluate `{key}`"))),
    };
    pair(o, c, ("values", "notValues"), value, value_match)
}

/// The mTLS mode at `pod`'s `port`. "Istio applies the narrowest matching
/// policy for each workload using the following order:
/// workload-specific, namespace-wide, mesh-wide"; of several, "Istio
/// picks the oldest" (<https://istio.io/latest/docs/concepts/security/#peer-authentication>).
/// `UNSET` inherits "from parent, if has one. Otherwise treated as
/// PERMISSIVE"; `portLevelMtls` "only apply when a workload selector is
/// specified", and selector policies in the root namespace are ignored
/// (<https://istio.io/latest/docs/reference/config/security/peer_authentication/>).
fn mtls_mode<'w>(
    w: &'w World,
    pod: &Pod,
    port: u32,
) -> Result<(Mode, Option<&'w Obj>), ModelError> {
    let mut mesh = None;
    let mut namespace = None;
    let mut workload = None;
    for o in &w.peer_authentications {
        let selector = o.labels(
            Obj::get(&o.spec, "selector").unwrap_or(&Value::Null),
            "matchLabels",
        )?;
        if selector.is_empty() {
            if o.namespace == ROOT_NAMESPACE {
                mesh = mesh.or(Some(o));
            }
            if o.namespace == pod.namespace {
                namespace = namespace.or(Some(o));
            }
        } else if o.namespace == pod.namespace
            && o.namespace != ROOT_NAMESPACE
            && selects(&selector, &pod.labels)
        {
            workload = workload.or(Some(o));
        }
    }
    let mut mode = (Mode::Permissive, None);
    for o in [mesh, namespace, workload].into_iter().flatten() {
        let m = mode_of(o, Obj::get(&o.spec, "mtls"))?;
        if m != Mode::Unset {
            mode = (m, Some(o));
        }
    }
    if let Some(o) = workload {
        if let Some(levels) = o.map(&o.spec, "portLevelMtls")? {
            let m = mode_of(o, levels.get(&port.to_string()))?;
            if m != Mode::Unset {
                mode = (m, Some(o));
            }
        }
    }
    Ok(mode)
}

fn mode_of(o: &Obj, mtls: Option<&Value>) -> Result<Mode, ModelError> {
    let Some(mtls) = mtls.filter(|v| !v.is_null()) else {
        return Ok(Mode::Unset);
    };
    match o.text(mtls, "mode")?.unwrap_or("UNSET") {
        "UNSET" => Ok(Mode::Unset),
        "DISABLE" => Ok(Mode::Disable),
        "PERMISSIVE" => Ok(Mode::Permissive),
        "STRICT" => Ok(Mode::Strict),
        other => Err(o.invalid(format!("mtls.mode: unknown `{other}`"))),
    }
}
