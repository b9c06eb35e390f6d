//! Cilium (`cilium.io/v2`): identity-aware network policy, L4 and L7.
//!
//! Per service with an allow list that denies by default, or strict mTLS, a
//! **CiliumNetworkPolicy** `<name>` selecting its pods
//! (`enableDefaultDeny.ingress`: what no rule allows is dropped):
//! - one ingress rule per allow rule: callers by Cilium's identity labels —
//!   `k8s:io.kubernetes.pod.namespace` for a namespace (an `Exists` match
//!   for any namespace: in a namespaced policy an empty selector would mean
//!   only the policy's own namespace), plus
//!   `k8s:io.cilium.k8s.policy.serviceaccount` for a workload identity;
//!   the rule's container ports; methods and paths as L7 HTTP rules
//!   (Cilium's path is a regular expression matched against the whole
//!   path and query: exact paths are escaped and admit a query, `/p/*`
//!   becomes `/p/.*`);
//! - strict mTLS as `authentication.mode: required` on every rule (Cilium's
//!   mutual authentication must be enabled in the agent); a service with
//!   strict mTLS and no allow list gets one rule admitting every endpoint,
//!   authenticated.
//!
//! A service's SLOs become a **PrometheusRule** `<name>-slos-hubble` over
//! Hubble's HTTP metrics (see `prometheus.rs`).
//!
//! Traffic routing is not Cilium's part: Cilium implements GAMMA, so
//! pair `cilium` with `gateway-api` (or another routing target). Check
//! warns (MP2012) when Cilium's per-port merge would void an L7 rule.

use meshplan_policy_lang::intent::service::MtlsMode;
use meshplan_policy_lang::intent::Target;

use super::features::{Feature, Support, ROUTING};
use super::prometheus;
use super::{regex_escape, EmitError, Emitter};
use crate::api::cilium_io::{
    Authentication, CiliumNetworkPolicySpec, DefaultDeny, EndpointSelector, HttpRule, IngressRule,
    L7Rules, PortProtocol, PortRule, Requirement,
};
use crate::ir::{AllowRule, Ir, Peer, Service};
use crate::object::MeshObject;

const NAME: &str = "cilium";
const API: &str = "cilium.io/v2";
const NS: &str = "k8s:io.kubernetes.pod.namespace";
const SA: &str = "k8s:io.cilium.k8s.policy.serviceaccount";

#[derive(Debug)]
pub struct Cilium;

impl Emitter for Cilium {
    fn target(&self) -> Target {
        Target::Cilium
    }

    fn support(&self, f: Feature) -> Support {
        match f {
            Feature::AllowList | Feature::AllowListL7 => Support::Yes,
            // Over Hubble's HTTP metrics (`httpV2` with `labelsContext`
            // destination_namespace and destination_workload): docs/targets.
            Feature::SloRules => Support::Yes,
            Feature::StrictMtls => Support::Partial(
                "`authentication.mode: required`: needs Cilium's mutual authentication enabled in the agent",
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
            | Feature::Failover
            | Feature::FaultInjection
            | Feature::Mirroring
            | Feature::StickyCanary
            | Feature::RateLimit => Support::Elsewhere(
                ROUTING,
                "Cilium implements GAMMA: combine `cilium` with `gateway-api`",
            ),
        }
    }

    fn namespace_local(&self) -> bool {
        true
    }

    fn emit(&self, ir: &Ir, out: &mut Vec<MeshObject>, errors: &mut Vec<EmitError>) {
        let metrics = ir.metrics(crate::metrics::Flavor::Hubble);
        for s in &ir.services {
            if let Some(o) = policy(s) {
                out.push(o);
            }
            if let Some(r) = prometheus::slo_rules(NAME, &metrics, s, errors) {
                out.push(r);
            }
        }
    }
}

fn policy(s: &Service) -> Option<MeshObject> {
    let strict = s.mtls == MtlsMode::Strict;
    let access = s.access.as_ref().filter(|a| a.default_deny);
    let mut ingress: Vec<IngressRule> = match access {
        Some(a) => a.rules.iter().map(|r| rule(s, r)).collect(),
        None if strict => vec![IngressRule {
            from_endpoints: Some(vec![any_endpoint()]),
            ..IngressRule::default()
        }],
        None => return None,
    };
    if strict {
        for r in &mut ingress {
            r.authentication = Some(Authentication { mode: "required" });
        }
    }
    if ingress.is_empty() {
        // Deny everything: a rule that selects no peer.
        ingress.push(IngressRule::default());
    }
    let spec = CiliumNetworkPolicySpec {
        enable_default_deny: DefaultDeny { ingress: true },
        endpoint_selector: labels(s.workload_selector.iter()),
        ingress,
    };
    Some(
        MeshObject::builder(
            NAME,
            API,
            "CiliumNetworkPolicy",
            &s.namespace,
            &s.name,
            &s.origin,
        )
        .spec_typed(&spec)
        .build(),
    )
}

/// The endpoints carrying every one of `labels`.
fn labels<'a>(labels: impl Iterator<Item = (&'a String, &'a String)>) -> EndpointSelector {
    EndpointSelector {
        match_expressions: None,
        match_labels: Some(labels.map(|(k, v)| (k.clone(), v.clone())).collect()),
    }
}

fn any_endpoint() -> EndpointSelector {
    EndpointSelector {
        match_expressions: Some(vec![Requirement {
            key: NS,
            operator: "Exists",
        }]),
        match_labels: None,
    }
}

fn endpoint(p: &Peer) -> EndpointSelector {
    let by = |pairs: &[(&str, &String)]| EndpointSelector {
        match_expressions: None,
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).clone()))
                .collect(),
        ),
    };
    match p {
        Peer::ServiceAccount {
            namespace, name, ..
        } => by(&[(NS, namespace), (SA, name)]),
        Peer::Namespace(ns) => by(&[(NS, ns)]),
        Peer::AnyNamespace | Peer::Anyone => any_endpoint(),
    }
}

/// A path of the allow list as Cilium's regular expression. Cilium
/// matches it against Envoy's `:path`, query string included (its L7
/// policy docs): an exact path admits any query (`/login?next=/`), as the
/// allow list and the other meshes do.
fn path_regex(p: &str) -> String {
    match p.strip_suffix('*') {
        Some(prefix) => format!("{}.*", regex_escape(prefix)),
        None => format!("{}(\\?.*)?", regex_escape(p)),
    }
}

fn rule(s: &Service, r: &AllowRule) -> IngressRule {
    // Anyone: every entity, inside the cluster or not (a kubelet probe is
    // the `host` entity, a client outside it `world`).
    let mut out = if r.from.contains(&Peer::Anyone) {
        IngressRule {
            from_entities: Some(vec!["all"]),
            ..IngressRule::default()
        }
    } else {
        IngressRule {
            from_endpoints: Some(r.from.iter().map(endpoint).collect()),
            ..IngressRule::default()
        }
    };
    let l7 = !r.methods.is_empty() || !r.paths.is_empty();
    // L7 rules need ports: the rule's, or every L7 port of the service.
    let ports: Vec<&crate::ir::Port> = if r.ports.is_empty() && l7 {
        s.l7_ports().collect()
    } else {
        r.ports.iter().collect()
    };
    if ports.is_empty() {
        return out;
    }
    let ports = ports
        .iter()
        .map(|p| PortProtocol {
            port: p.target_port.to_string(),
            protocol: "TCP",
        })
        .collect();
    let rules = l7.then(|| {
        let methods: Vec<Option<&str>> = if r.methods.is_empty() {
            vec![None]
        } else {
            r.methods.iter().map(|m| Some(m.as_str())).collect()
        };
        let paths: Vec<Option<String>> = if r.paths.is_empty() {
            vec![None]
        } else {
            r.paths.iter().map(|p| Some(path_regex(p))).collect()
        };
        let mut http = Vec::new();
        for m in &methods {
            for p in &paths {
                http.push(HttpRule {
                    method: m.map(|m| format!("^{}$", regex_escape(m))),
                    path: p.as_ref().map(|p| format!("^{p}$")),
                });
            }
        }
        L7Rules { http }
    });
    out.to_ports = Some(vec![PortRule { ports, rules }]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_anchored_regular_expressions() {
        assert_eq!(path_regex("/cart"), "/cart(\\?.*)?");
        assert_eq!(path_regex("/cart/*"), "/cart/.*");
        assert_eq!(path_regex("/a.b"), "/a\\.b(\\?.*)?");
    }
}
