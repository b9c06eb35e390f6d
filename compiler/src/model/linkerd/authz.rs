//! Linkerd's authorization: what the inbound proxy of each destination
//! pod decides for a request.
//!
//! Sources: the "Authorization Policy" reference and feature page
//! (linkerd/website `2-edge`): the default policy `all-unauthenticated`
//! admits everything on a port no Server selects; "When a Server resource
//! is present, all traffic to the port on its pods will be denied unless
//! explicitly authorized" (`accessPolicy`, default `deny`, names a
//! default policy for what no authorization admits); Servers "must not
//! overlap" (the admission controller refuses the second); an
//! AuthorizationPolicy targets a Server, an HTTPRoute of a Server, or its
//! Namespace ("all traffic to all Servers and HTTPRoutes defined in the
//! namespace"), and admits a client that satisfies all its
//! `requiredAuthenticationRefs` (MeshTLSAuthentication identities, `*`
//! and `*.suffix` allowed, or `identityRefs`; a ServiceAccount;
//! NetworkAuthentication CIDRs). Code read for the rest:
//! - policy controller `inbound/index.rs`: `client_authzs` (Server- and
//!   Namespace-targeted policies are the Server's authorizations),
//!   `route_client_authzs` (route-targeted ones the route's),
//!   `policy_client_authz` (no identity reference: any client, meshed or
//!   not; no network reference: every network; a missing authentication,
//!   or two of a kind, makes the policy illegal and ignored),
//!   `http_routes` (no route: a default route matching everything),
//!   `reindex_servers` (a port keeps the first Server that claims it);
//!   `meshtls_authentication.rs` (`identityRefs` to ServiceAccounts or
//!   Namespaces).
//! - proxy `linkerd/proxy/server-policy/src/http.rs` (`try_route`: the
//!   Server's authorizations are added to every route's) and
//!   `linkerd/app/inbound/src/policy/http.rs` (`authorize`: the request is
//!   classified to one route by the route precedence; none matches: 404;
//!   the first authorization that admits the client wins, else 403).
//!
//! Not modelled: kubelet probe authorizations (the cluster knows no probe
//! paths), `ServerAuthorization` (deprecated), pod-level default-policy
//! annotations (the cluster default `all-unauthenticated` is assumed).
//! Addresses are not known: a caller with a namespace is in the cluster
//! networks, one without is not; a NetworkAuthentication other than
//! `0.0.0.0/0` or `::/0` cannot be decided and is an error.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{select, servable};
use crate::model::httproute::{
    self, arr, service_pods, sort_routes, string, string_map, Route, RouteKind, GATEWAY_GROUP,
    LINKERD_GROUP,
};
use crate::model::{
    object_name, selects, Cluster, KubeService, ModelError, Pod, Problem, Request, Source, Verdict,
};
use crate::object::MeshObject;

type R<T> = Result<T, ModelError>;

/// The verdict of each pod the destination Service selects.
pub(super) fn verdicts(
    objects: &[MeshObject],
    cluster: &Cluster,
    request: &Request,
) -> R<BTreeMap<String, Verdict>> {
    let Some(svc) = cluster.service(&request.namespace, &request.service) else {
        return Ok(BTreeMap::new());
    };
    // The Server's `port` is the pod's: the Service port's target.
    let target = svc
        .ports
        .iter()
        .find(|p| p.port == request.port)
        .map_or(request.port, |p| p.target_port);
    let servers = objects
        .iter()
        .filter(|o| o.kind == "Server" && o.group() == LINKERD_GROUP)
        .map(server)
        .collect::<R<Vec<_>>>()?;
    let mut out = BTreeMap::new();
    for pod in service_pods(cluster, svc) {
        let mut claim = Vec::new();
        for s in &servers {
            if s.obj.namespace.as_deref() == Some(&pod.namespace)
                && s.selects(pod)?
                && s.port_is(target, svc)
            {
                claim.push(s);
            }
        }
        let verdict = match claim[..] {
            [] => Verdict::Allow { by: None },
            [s] => server_verdict(objects, cluster, s, request)?,
            [first, second, ..] => {
                let overlap = format!(
                    "selects port {target} of pod {} as {} does: Linkerd refuses overlapping Servers",
                    pod.id,
                    object_name(first.obj)
                );
                return Err(Problem::invalid(overlap).of(object_name(second.obj)));
            }
        };
        out.insert(pod.id.clone(), verdict);
    }
    Ok(out)
}

struct Server<'a> {
    obj: &'a MeshObject,
    spec: Value,
}

fn server(o: &MeshObject) -> R<Server<'_>> {
    let v = o.body.value();
    Ok(Server {
        obj: o,
        spec: v.get("spec").cloned().unwrap_or(Value::Null),
    })
}

impl Server<'_> {
    fn err(&self, problem: Problem) -> ModelError {
        problem.of(object_name(self.obj))
    }

    fn text(&self, k: &str) -> R<Option<&str>> {
        string(&self.spec, k).map_err(|p| self.err(p))
    }

    /// `podSelector` (`matchLabels` and `matchExpressions`; `{}` selects
    /// every pod). Without one (an ExternalWorkload `selector`): no pod.
    fn selects(&self, pod: &Pod) -> R<bool> {
        let Some(sel) = self.spec.get("podSelector").filter(|s| !s.is_null()) else {
            return Ok(false);
        };
        let labels = string_map(sel, "matchLabels").map_err(|p| self.err(p))?;
        if !selects(&labels, &pod.labels) {
            return Ok(false);
        }
        for e in arr(sel, "matchExpressions").map_err(|p| self.err(p))? {
            let key = string(e, "key")
                .map_err(|p| self.err(p))?
                .unwrap_or_default();
            let values: Vec<&str> = arr(e, "values")
                .map_err(|p| self.err(p))?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let have = pod.labels.get(key).map(String::as_str);
            let ok = match string(e, "operator").map_err(|p| self.err(p))? {
                Some("In") => have.is_some_and(|h| values.contains(&h)),
                Some("NotIn") => have.is_none_or(|h| !values.contains(&h)),
                Some("Exists") => have.is_some(),
                Some("DoesNotExist") => have.is_none(),
                op => {
                    let unknown = format!("unknown selector operator {op:?}");
                    return Err(self.err(Problem::invalid(unknown)));
                }
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether `port` names the container port `target`: a number, or a
    /// name (resolved through the Service's port names, the cluster
    /// knowing no container port names).
    fn port_is(&self, target: u32, svc: &KubeService) -> bool {
        match self.spec.get("port") {
            Some(Value::Number(n)) => n.as_u64() == Some(u64::from(target)),
            Some(Value::String(name)) => svc
                .ports
                .iter()
                .any(|p| p.name == *name && p.target_port == target),
            _ => false,
        }
    }
}

/// Who an authorization admits.
#[derive(Debug)]
struct Authz {
    by: String,
    /// `None`: any client, meshed or not; else identities.
    ids: Option<Vec<String>>,
    nets: Nets,
}

#[derive(Debug)]
enum Nets {
    All,
    Cluster,
}

fn server_verdict(
    objects: &[MeshObject],
    cluster: &Cluster,
    s: &Server<'_>,
    request: &Request,
) -> R<Verdict> {
    let ns = s.obj.namespace.clone().unwrap_or_default();
    let mut authz = Vec::new();
    let proto = s.text("proxyProtocol")?.unwrap_or("unknown");
    if !matches!(proto, "opaque" | "TLS") {
        let kind = if proto == "gRPC" {
            RouteKind::Grpc
        } else {
            RouteKind::Http
        };
        let mut routes: Vec<Route<'_>> =
            httproute::routes(objects, &[GATEWAY_GROUP, LINKERD_GROUP])?
                .into_iter()
                .filter(|r| r.kind == kind && servable(r) && attaches_to(r, &ns, &s.obj.name))
                .collect();
        sort_routes(&mut routes);
        if !routes.is_empty() {
            let refs: Vec<&Route<'_>> = routes.iter().collect();
            let Some(c) = select(&refs, request)? else {
                return Ok(Verdict::Deny {
                    by: format!("no route of {} matches (404)", object_name(s.obj)),
                });
            };
            let r = &routes[c.route];
            authz.extend(policies(objects, cluster, &ns, |t| targets_route(t, r))?);
        }
    }
    authz.extend(policies(objects, cluster, &ns, |t| {
        targets_server(t, &s.obj.name, &ns)
    })?);
    authz.extend(access_policy(s)?);
    for a in &authz {
        if admits(a, &request.source, &cluster.trust_domain) {
            return Ok(Verdict::Allow {
                by: Some(a.by.clone()),
            });
        }
    }
    Ok(Verdict::Deny {
        by: object_name(s.obj),
    })
}

/// A route whose parent is the Server (inbound route).
fn attaches_to(r: &Route<'_>, ns: &str, server: &str) -> bool {
    r.parents.iter().any(|p| {
        p.group == LINKERD_GROUP && p.kind == "Server" && p.namespace == ns && p.name == server
    })
}

fn ref_group(t: &Value) -> &str {
    t.get("group").and_then(Value::as_str).unwrap_or_default()
}

fn ref_is(t: &Value, kind: &str, name: &str) -> bool {
    t.get("kind").and_then(Value::as_str) == Some(kind)
        && t.get("name").and_then(Value::as_str) == Some(name)
}

fn targets_route(t: &Value, r: &Route<'_>) -> bool {
    ref_is(t, r.object.kind, &r.name) && ref_group(t) == r.object.group()
}

fn targets_server(t: &Value, server: &str, ns: &str) -> bool {
    (ref_is(t, "Server", server) && ref_group(t) == LINKERD_GROUP)
        || (ref_is(t, "Namespace", ns) && matches!(ref_group(t), "" | "core"))
}

/// The authorizations of the AuthorizationPolicies of `ns` whose
/// `targetRef` satisfies `target`; an illegal policy is ignored.
fn policies(
    objects: &[MeshObject],
    cluster: &Cluster,
    ns: &str,
    target: impl Fn(&Value) -> bool,
) -> R<Vec<Authz>> {
    let mut out = Vec::new();
    for o in objects.iter().filter(|o| {
        o.kind == "AuthorizationPolicy"
            && o.group() == LINKERD_GROUP
            && o.namespace.as_deref() == Some(ns)
    }) {
        let v = o.body.value();
        let null = Value::Null;
        let spec = v.get("spec").unwrap_or(&null);
        if !target(spec.get("targetRef").unwrap_or(&null)) {
            continue;
        }
        let refs = arr(spec, "requiredAuthenticationRefs").map_err(|p| p.of(object_name(o)))?;
        if let Some(a) = policy_authz(objects, cluster, o, ns, refs)? {
            out.push(a);
        }
    }
    Ok(out)
}

/// `policy_client_authz`: at most one identity source (a
/// MeshTLSAuthentication or a ServiceAccount) and one
/// NetworkAuthentication, each found; else `None`.
fn policy_authz(
    objects: &[MeshObject],
    cluster: &Cluster,
    o: &MeshObject,
    ns: &str,
    refs: &[Value],
) -> R<Option<Authz>> {
    let td = &cluster.trust_domain;
    let (mut ids, mut nets) = (None, None);
    for r in refs {
        let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
        let r_ns = r.get("namespace").and_then(Value::as_str).unwrap_or(ns);
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or_default();
        let found = match (kind, ref_group(r)) {
            ("MeshTLSAuthentication", LINKERD_GROUP) if ids.is_none() => {
                ids = meshtls(objects, r_ns, name, td)?;
                ids.is_some()
            }
            ("ServiceAccount", "" | "core") if ids.is_none() => {
                ids = Some(vec![identity(r_ns, name, td)]);
                true
            }
            ("NetworkAuthentication", LINKERD_GROUP) if nets.is_none() => {
                nets = network(objects, r_ns, name)?;
                nets.is_some()
            }
            _ => false,
        };
        if !found {
            return Ok(None);
        }
    }
    Ok(Some(Authz {
        by: object_name(o),
        ids,
        nets: nets.unwrap_or(Nets::All),
    }))
}

/// A mesh identity: `<sa>.<ns>.serviceaccount.identity.linkerd.<trust domain>`.
fn identity(ns: &str, sa: &str, td: &str) -> String {
    format!("{sa}.{ns}.serviceaccount.identity.linkerd.{td}")
}

fn find<'o>(objects: &'o [MeshObject], kind: &str, ns: &str, name: &str) -> Option<&'o MeshObject> {
    objects.iter().find(|o| {
        o.kind == kind
            && o.group() == LINKERD_GROUP
            && o.namespace.as_deref() == Some(ns)
            && o.name == name
    })
}

/// A MeshTLSAuthentication's identity patterns; `None` when missing or
/// invalid (no identity, an `identityRefs` kind other than ServiceAccount
/// or Namespace).
fn meshtls(objects: &[MeshObject], ns: &str, name: &str, td: &str) -> R<Option<Vec<String>>> {
    let Some(o) = find(objects, "MeshTLSAuthentication", ns, name) else {
        return Ok(None);
    };
    let err = |p: Problem| p.of(object_name(o));
    let v = o.body.value();
    let null = Value::Null;
    let spec = v.get("spec").unwrap_or(&null);
    let mut ids: Vec<String> = arr(spec, "identities")
        .map_err(err)?
        .iter()
        .filter_map(|i| i.as_str().map(str::to_owned))
        .collect();
    for r in arr(spec, "identityRefs").map_err(err)? {
        let r_name = r.get("name").and_then(Value::as_str).unwrap_or_default();
        match r.get("kind").and_then(Value::as_str) {
            Some("ServiceAccount") => {
                let r_ns = r.get("namespace").and_then(Value::as_str).unwrap_or(ns);
                ids.push(identity(r_ns, r_name, td));
            }
            Some("Namespace") => {
                ids.push(format!("*.{r_name}.serviceaccount.identity.linkerd.{td}"))
            }
            _ => return Ok(None),
        }
    }
    Ok((!ids.is_empty()).then_some(ids))
}

/// A NetworkAuthentication: every address, or an error (the cluster has
/// no addresses to decide by); `None` when missing.
fn network(objects: &[MeshObject], ns: &str, name: &str) -> R<Option<Nets>> {
    let Some(o) = find(objects, "NetworkAuthentication", ns, name) else {
        return Ok(None);
    };
    let v = o.body.value();
    let null = Value::Null;
    let nets = arr(v.get("spec").unwrap_or(&null), "networks").map_err(|p| p.of(object_name(o)))?;
    let everything = nets.iter().any(|n| {
        matches!(
            n.get("cidr").and_then(Value::as_str),
            Some("0.0.0.0/0" | "::/0")
        ) && arr(n, "except").is_ok_and(<[Value]>::is_empty)
    });
    if everything {
        return Ok(Some(Nets::All));
    }
    Err(Problem::unmodelled(
        "names networks the model cannot place callers in (only 0.0.0.0/0 and ::/0 are decided)",
    )
    .of(object_name(o)))
}

/// The Server's `accessPolicy` as a default authorization (default
/// `deny`: none).
fn access_policy(s: &Server<'_>) -> R<Option<Authz>> {
    let policy = s.text("accessPolicy")?.unwrap_or("deny");
    let any_id = || Some(vec!["*".to_owned()]);
    let (ids, nets) = match policy {
        "deny" => return Ok(None),
        "all-unauthenticated" | "audit" => (None, Nets::All),
        "cluster-unauthenticated" => (None, Nets::Cluster),
        "all-authenticated" => (any_id(), Nets::All),
        "cluster-authenticated" => (any_id(), Nets::Cluster),
        other => {
            let unknown = format!("unknown accessPolicy `{other}`");
            return Err(s.err(Problem::invalid(unknown)));
        }
    };
    Ok(Some(Authz {
        by: format!("{} accessPolicy {policy}", object_name(s.obj)),
        ids,
        nets,
    }))
}

/// Whether `a` admits `source`: its network, then its identities (a
/// pattern `*` is any meshed client, `*.<suffix>` any identity ending in
/// `.<suffix>`).
fn admits(a: &Authz, source: &Source, td: &str) -> bool {
    let in_cluster = !matches!(source, Source::Unauthenticated { namespace: None });
    if matches!(a.nets, Nets::Cluster) && !in_cluster {
        return false;
    }
    let Some(ids) = &a.ids else {
        return true;
    };
    let Source::Workload {
        namespace,
        service_account,
        ..
    } = source
    else {
        return false;
    };
    let id = identity(namespace, service_account, td);
    ids.iter().any(|p| match p.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => suffix.starts_with('.') && id.ends_with(suffix),
        None => *p == id,
    })
}

#[cfg(test)]
mod tests;
