//! Linkerd's inbound authorization of an allow list: Servers, inbound
//! routes and the AuthorizationPolicies on them.
//!
//! Linkerd classifies each request to a Server into **one** inbound route
//! (the most specific match: the characters of the path matched, then a
//! method; on a tie the older route, then the name), and admits it when
//! an AuthorizationPolicy on that route or on the Server admits the caller
//! (authorization-policy reference; server-policy docs: a request matching
//! no route of a Server that has routes is refused). The allow list admits
//! a request when *any* rule naming its caller matches it. A route per
//! rule would therefore refuse a caller whose rule matches a request that
//! another rule's route is more specific for (two services both allowed
//! `GET`; one allowed `GET`, another `/admin/*`).
//!
//! So the routes are the **cells** of the rules' conditions: each rule's
//! items (method × path), closed under conjunction (an item holding when
//! two do: the longer path, the method), each item authorized for every
//! rule whose items cover it, items with the same rules sharing a route.
//!
//! # Guarantees
//!
//! - Never wider than the allow list: an item is authorized only for
//!   rules covering it, so a request it matches matches those rules.
//! - Exactly the allow list: the conjunction of one matching item of each
//!   rule a request matches is in the closure, matches it, ranks at least
//!   as high as any other matching item (every path condition matches the
//!   whole path, so paths tie, and it has a method if any does), and its
//!   route is named first among ties (routes are named by how many rules
//!   they authorize, most first).
//! - Rules without methods or paths, and every rule on a tcp port, are
//!   authorized on the Server (all its routes).

use std::collections::{BTreeMap, BTreeSet};

use meshplan_policy_lang::intent::service::MtlsMode;
use meshplan_policy_lang::intent::Protocol;

use super::{identity, server, server_name, MAX_MATCHES, NAME, POLICY, POLICY_ALPHA};
use crate::api::gateway_networking_k8s_io::{
    self as gateway, GrpcMethodMatch, GrpcRouteMatch, GrpcRouteRule, HttpRouteMatch, HttpRouteRule,
    MatchType, ParentRef, PathMatch, RouteSpec,
};
use crate::api::policy_linkerd_io::{
    AuthorizationPolicySpec, HttpRouteSpec, MeshTlsAuthenticationSpec, Network,
    NetworkAuthenticationSpec, Ref, GROUP,
};
use crate::emit::{regex_escape, EmitError, Feature};
use crate::ir::{AllowRule, Ir, Peer, Port, Service};
use crate::object::{MeshObject, ObjectBuilder};

/// The Gateway API version of the inbound GRPCRoute, which Linkerd reads.
const GATEWAY: &str = "gateway.networking.k8s.io/v1";
/// Cells per port beyond which the rules are reported, not rendered.
const MAX_CELLS: usize = 64;

/// A path condition of an allow rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PathPattern {
    Exact(String),
    /// A glob `prefix*`: any path starting with `prefix`.
    Glob(String),
}

/// One cell: a method and a path, each possibly any.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    method: Option<String>,
    path: Option<PathPattern>,
}

impl Item {
    /// Whether every request `other` matches, `self` matches.
    fn covers(&self, other: &Item) -> bool {
        let method = match (&self.method, &other.method) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        let path = match (&self.path, &other.path) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(PathPattern::Exact(a)), Some(PathPattern::Exact(b))) => a == b,
            (Some(PathPattern::Exact(_)), Some(PathPattern::Glob(_))) => false,
            (Some(PathPattern::Glob(g)), Some(PathPattern::Exact(e) | PathPattern::Glob(e))) => {
                e.starts_with(g.as_str())
            }
        };
        method && path
    }

    /// The item holding exactly when both do, if any request can.
    fn and(&self, other: &Item) -> Option<Item> {
        let method = match (&self.method, &other.method) {
            (Some(a), Some(b)) if a != b => return None,
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        let path = match (&self.path, &other.path) {
            (Some(a), Some(b)) => {
                let (a_item, b_item) = (
                    Item {
                        method: None,
                        path: Some(a.clone()),
                    },
                    Item {
                        method: None,
                        path: Some(b.clone()),
                    },
                );
                if a_item.covers(&b_item) {
                    Some(b.clone())
                } else if b_item.covers(&a_item) {
                    Some(a.clone())
                } else {
                    return None;
                }
            }
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        Some(Item { method, path })
    }
}

/// The items of `rule`: its methods × its paths.
fn items(rule: &AllowRule) -> Vec<Item> {
    let methods: Vec<Option<String>> = if rule.methods.is_empty() {
        vec![None]
    } else {
        rule.methods.iter().cloned().map(Some).collect()
    };
    let paths: Vec<Option<PathPattern>> = if rule.paths.is_empty() {
        vec![None]
    } else {
        rule.paths
            .iter()
            .map(|p| {
                Some(match p.strip_suffix('*') {
                    Some(prefix) => PathPattern::Glob(prefix.to_owned()),
                    None => PathPattern::Exact(p.clone()),
                })
            })
            .collect()
    };
    let mut out = Vec::new();
    for m in &methods {
        for p in &paths {
            out.push(Item {
                method: m.clone(),
                path: p.clone(),
            });
        }
    }
    out
}

/// The cells of the L7 rules `rules` (index, rule): each closed item with
/// the rules covering it, grouped, the groups authorizing most first.
/// `None` when there are more than [`MAX_CELLS`].
fn cells(rules: &[(usize, &AllowRule)]) -> Option<Vec<(BTreeSet<usize>, Vec<Item>)>> {
    let own: Vec<(usize, Vec<Item>)> = rules.iter().map(|(i, r)| (*i, items(r))).collect();
    let mut all: BTreeSet<Item> = own.iter().flat_map(|(_, it)| it.iter().cloned()).collect();
    loop {
        let current: Vec<Item> = all.iter().cloned().collect();
        let mut grew = false;
        for (n, a) in current.iter().enumerate() {
            for b in &current[n + 1..] {
                if let Some(c) = a.and(b) {
                    grew |= all.insert(c);
                }
            }
        }
        if all.len() > MAX_CELLS {
            return None;
        }
        if !grew {
            break;
        }
    }
    let mut groups: BTreeMap<BTreeSet<usize>, Vec<Item>> = BTreeMap::new();
    for item in all {
        let covering: BTreeSet<usize> = own
            .iter()
            .filter(|(_, its)| its.iter().any(|x| x.covers(&item)))
            .map(|(i, _)| *i)
            .collect();
        groups.entry(covering).or_default().push(item);
    }
    let mut groups: Vec<(BTreeSet<usize>, Vec<Item>)> = groups.into_iter().collect();
    // Most rules first: on a tie of precedence, the earlier name wins.
    groups.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    Some(groups)
}

/// The Servers, MeshTLSAuthentications, inbound routes and
/// AuthorizationPolicies of `s`'s allow list (or, without one, the Servers
/// strict mTLS needs).
pub(super) fn authorization(
    ir: &Ir,
    s: &Service,
    out: &mut Vec<MeshObject>,
    errors: &mut Vec<EmitError>,
) {
    let Some(access) = s.access.as_ref().filter(|a| a.default_deny) else {
        if s.mtls == MtlsMode::Strict {
            for p in &s.ports {
                out.push(server(s, p, "all-authenticated"));
            }
        }
        return;
    };
    for (i, rule) in access.rules.iter().enumerate() {
        let b = MeshObject::builder(
            NAME,
            POLICY_ALPHA,
            kind_of(s, rule),
            &s.namespace,
            &authn(s, i),
            &s.origin,
        );
        out.push(authentication(ir, s, rule, b).build());
    }
    for p in &s.ports {
        out.push(server(s, p, "deny"));
        port(s, p, &access.rules, out, errors);
    }
}

/// How a rule's callers authenticate: their mesh identities, or — for
/// `anyone` without strict mTLS — any network, so that callers without an
/// identity (kubelet probes) get in too (authorization-policy reference,
/// `NetworkAuthentication`).
fn authentication(ir: &Ir, s: &Service, rule: &AllowRule, b: ObjectBuilder) -> ObjectBuilder {
    if kind_of(s, rule) == "NetworkAuthentication" {
        return b.spec_typed(&NetworkAuthenticationSpec {
            networks: vec![Network { cidr: "0.0.0.0/0" }, Network { cidr: "::/0" }],
        });
    }
    let identities: Vec<String> = rule.from.iter().map(|p| identity(ir, p)).collect();
    b.spec_typed(&MeshTlsAuthenticationSpec { identities })
}

fn kind_of(s: &Service, rule: &AllowRule) -> &'static str {
    if rule.from.contains(&Peer::Anyone) && s.mtls != MtlsMode::Strict {
        "NetworkAuthentication"
    } else {
        "MeshTLSAuthentication"
    }
}

fn authn(s: &Service, rule: usize) -> String {
    format!("{}-allow-{rule}", s.name)
}

/// The routes and policies of one port.
fn port(
    s: &Service,
    p: &Port,
    rules: &[AllowRule],
    out: &mut Vec<MeshObject>,
    errors: &mut Vec<EmitError>,
) {
    let on_port: Vec<(usize, &AllowRule)> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.ports.is_empty() || r.ports.iter().any(|x| x.name == p.name))
        .collect();
    let (l7, whole): (Vec<_>, Vec<_>) = on_port
        .into_iter()
        .partition(|(_, r)| (!r.methods.is_empty() || !r.paths.is_empty()) && p.protocol.is_l7());
    let server = server_name(s, p);
    for (i, _) in &whole {
        out.push(policy(
            s,
            &format!("{}-{}", authn(s, *i), p.name),
            policy_ref("Server", &server),
            *i,
            kind_of(s, &rules[*i]),
        ));
    }
    if l7.is_empty() {
        return;
    }
    let Some(groups) = cells(&l7) else {
        errors.push(
            EmitError::new(NAME, &s.origin, format!("service `{}`: the allow rules with methods and paths on port `{}` overlap in more than {MAX_CELLS} ways: Linkerd's one route per request cannot hold them", s.key(), p.name))
                .of(Feature::AllowListL7),
        );
        return;
    };
    for (k, (covering, items)) in groups.iter().enumerate() {
        let route = format!("{}-{}-r{k:02}", s.name, p.name);
        let (object, target) = match p.protocol {
            Protocol::Grpc => match grpc_route(s, p, &route, items, errors) {
                Some(o) => (o, grpc_route_ref(&route)),
                None => continue,
            },
            _ => (
                http_route(s, p, &route, items),
                policy_ref("HTTPRoute", &route),
            ),
        };
        out.push(object);
        for i in covering {
            out.push(policy(
                s,
                &format!("{}-{}-r{k:02}", authn(s, *i), p.name),
                target,
                *i,
                kind_of(s, &rules[*i]),
            ));
        }
    }
    if !whole.is_empty() {
        // Requests matching no rule's route still reach the Server's
        // policies: a route with no condition ranks below every other.
        let name = format!("{}-{}-all", s.name, p.name);
        out.push(match p.protocol {
            Protocol::Grpc => grpc_route(
                s,
                p,
                &name,
                &[Item {
                    method: None,
                    path: None,
                }],
                errors,
            )
            .expect("a condition-free item is a call"),
            _ => http_route(
                s,
                p,
                &name,
                &[Item {
                    method: None,
                    path: None,
                }],
            ),
        });
    }
}

/// An AuthorizationPolicy admitting rule `rule`'s callers at `target`.
fn policy(s: &Service, name: &str, target: Ref<'_>, rule: usize, kind: &str) -> MeshObject {
    let authn = authn(s, rule);
    let spec = AuthorizationPolicySpec {
        required_authentication_refs: vec![policy_ref(kind, &authn)],
        target_ref: target,
    };
    MeshObject::builder(
        NAME,
        POLICY_ALPHA,
        "AuthorizationPolicy",
        &s.namespace,
        name,
        &s.origin,
    )
    .spec_typed(&spec)
    .build()
}

/// A reference to a `policy.linkerd.io` object.
fn policy_ref<'a>(kind: &'a str, name: &'a str) -> Ref<'a> {
    Ref {
        group: GROUP,
        kind,
        name,
    }
}

/// A reference to a Gateway API GRPCRoute.
fn grpc_route_ref(name: &str) -> Ref<'_> {
    Ref {
        group: gateway::GROUP,
        kind: "GRPCRoute",
        name,
    }
}

/// An inbound HTTPRoute matching `items`. A glob `/api/*` is a string
/// prefix (it admits `/api/x`, not `/api`); a `PathPrefix` matches whole
/// segments, so it is a regular expression, which Linkerd matches whole.
fn http_route(s: &Service, p: &Port, name: &str, items: &[Item]) -> MeshObject {
    let mut matches: Vec<HttpRouteMatch> = items
        .iter()
        .map(|it| HttpRouteMatch {
            method: it.method.clone(),
            path: it.path.as_ref().map(|p| match p {
                PathPattern::Exact(e) => PathMatch {
                    kind: MatchType::Exact,
                    value: e.clone(),
                },
                PathPattern::Glob(g) => PathMatch {
                    kind: MatchType::RegularExpression,
                    value: format!("{}.*", regex_escape(g)),
                },
            }),
            ..HttpRouteMatch::default()
        })
        .collect();
    let mut rules = Vec::with_capacity(matches.len().div_ceil(MAX_MATCHES));
    while !matches.is_empty() {
        let rest = matches.split_off(matches.len().min(MAX_MATCHES));
        rules.push(HttpRouteRule {
            matches,
            ..HttpRouteRule::default()
        });
        matches = rest;
    }
    let server = server_name(s, p);
    let spec = HttpRouteSpec {
        parent_refs: vec![server_parent(&server)],
        rules,
    };
    MeshObject::builder(NAME, POLICY, "HTTPRoute", &s.namespace, name, &s.origin)
        .spec_typed(&spec)
        .build()
}

/// An inbound GRPCRoute matching `items`: Linkerd classifies a gRPC
/// Server's requests by GRPCRoutes only, which match a gRPC service and
/// method, not a path. A path is `/package.Service/Method` (exact) or
/// `/package.Service/*` (every method); any other path, or a method other
/// than `POST` (every gRPC call is a POST), is reported and matches
/// nothing. `None` when no item can be written.
fn grpc_route(
    s: &Service,
    p: &Port,
    name: &str,
    items: &[Item],
    errors: &mut Vec<EmitError>,
) -> Option<MeshObject> {
    let mut matches = Vec::new();
    let mut any = false;
    for it in items {
        if it.method.as_deref().is_some_and(|m| m != "POST") {
            continue;
        }
        let call = match &it.path {
            None => {
                any = true;
                continue;
            }
            Some(PathPattern::Glob(g)) => g
                .strip_prefix('/')
                .and_then(|rest| rest.strip_suffix('/'))
                .filter(|svc| !svc.is_empty() && !svc.contains(['/', '*']))
                .map(|svc| grpc_call(svc, None)),
            Some(PathPattern::Exact(e)) => e
                .strip_prefix('/')
                .and_then(|rest| rest.split_once('/'))
                .filter(|(svc, m)| !svc.is_empty() && !m.is_empty() && !m.contains('/'))
                .map(|(svc, m)| grpc_call(svc, Some(m))),
        };
        match call {
            Some(c) => matches.push(c),
            None => errors.push(
                EmitError::new(NAME, &s.origin, format!("service `{}`: on gRPC port `{}`, Linkerd authorizes by gRPC service and method: a path must be `/package.Service/Method` or `/package.Service/*`", s.key(), p.name))
                    .of(Feature::AllowListL7),
            ),
        }
    }
    let rules: Vec<GrpcRouteRule> = if any {
        vec![GrpcRouteRule::default()]
    } else if matches.is_empty() {
        return None;
    } else {
        matches
            .chunks(MAX_MATCHES)
            .map(|c| GrpcRouteRule {
                matches: c.to_vec(),
                ..GrpcRouteRule::default()
            })
            .collect()
    };
    let server = server_name(s, p);
    let spec = RouteSpec {
        parent_refs: vec![server_parent(&server)],
        rules,
    };
    Some(
        MeshObject::builder(NAME, GATEWAY, "GRPCRoute", &s.namespace, name, &s.origin)
            .spec_typed(&spec)
            .build(),
    )
}

/// A match of the calls to gRPC service `service`: its `method`, or every
/// one.
fn grpc_call(service: &str, method: Option<&str>) -> GrpcRouteMatch {
    GrpcRouteMatch {
        method: Some(GrpcMethodMatch {
            method: method.map(str::to_owned),
            service: service.to_owned(),
            kind: MatchType::Exact,
        }),
        ..GrpcRouteMatch::default()
    }
}

/// The parent of an inbound route: the Server whose requests it
/// classifies.
fn server_parent(server: &str) -> ParentRef<'_> {
    ParentRef {
        group: GROUP,
        kind: "Server",
        name: server,
        port: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: &[&str], paths: &[&str]) -> AllowRule {
        AllowRule {
            from: vec![],
            ports: vec![],
            methods: methods.iter().map(|m| m.to_string()).collect(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn two_rules_with_one_condition_share_one_route() {
        // Before: a route per rule, and Linkerd classified every GET to
        // the first: the second rule's callers were refused.
        let (a, b) = (rule(&["GET"], &[]), rule(&["GET"], &[]));
        let g = cells(&[(0, &a), (1, &b)]).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].0, BTreeSet::from([0, 1]));
    }

    #[test]
    fn overlapping_rules_get_their_intersection_first() {
        let (a, b) = (rule(&["GET"], &[]), rule(&[], &["/admin/*"]));
        let g = cells(&[(0, &a), (1, &b)]).unwrap();
        // GET /admin/* is authorized for both, and named first.
        assert_eq!(g[0].0, BTreeSet::from([0, 1]));
        assert_eq!(
            g[0].1,
            [Item {
                method: Some("GET".into()),
                path: Some(PathPattern::Glob("/admin/".into()))
            }]
        );
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn disjoint_rules_keep_their_own_routes() {
        let (a, b) = (rule(&["GET"], &["/a"]), rule(&["POST"], &["/a"]));
        let g = cells(&[(0, &a), (1, &b)]).unwrap();
        assert_eq!(g.len(), 2);
        assert!(g.iter().all(|(c, _)| c.len() == 1));
    }
}
