//! Plain Kubernetes NetworkPolicy (`networking.k8s.io/v1`, L3/L4): for
//! clusters without a mesh, or as defence in depth beside one.
//!
//! Per service whose allow list denies by default, a **NetworkPolicy**
//! `<name>` selecting its pods, with one ingress rule per allow rule: the
//! callers (a namespace by its `kubernetes.io/metadata.name` label, any
//! namespace, or a service account's pods — NetworkPolicy selects pods by
//! labels, so a service account is resolved to the pods of the intents
//! that run as it) and the rule's container ports.
//!
//! Per namespace whose every service denies by default,
//! **`meshplan-default-deny`**: all ingress and egress of the namespace's
//! pods is denied, except DNS (port 53 to any namespace, so name resolution
//! keeps working) and the control planes of the meshes rendered alongside.
//! Egress those pods need is derived from the allow lists: a caller in such
//! a namespace gets an egress policy (`meshplan-egress` for a whole
//! namespace, `<service>-egress` for one service's pods) to the services
//! that allow it, and to every service that has no allow list. Anything
//! else they call (outside the repository) needs the team's own
//! NetworkPolicy: policies add up.
//!
//! Methods and paths are L7: NetworkPolicy allows their ports, and leaves
//! the methods and paths to an L7 target rendered alongside (reported when
//! there is none). Routing is left to a routing target.

use std::collections::BTreeMap;

use meshplan_policy_lang::intent::labels::Labels;
use meshplan_policy_lang::intent::Target;

use super::features::{Feature, Support, L7_POLICY, METRICS, MTLS, ROUTING};
use super::{EmitError, Emitter};
use crate::api::networking_k8s_io::{
    EgressRule, IngressRule, LabelSelector, NetworkPolicySpec, Peer as NetPeer, Port as NetPort,
};
use crate::ir::{AllowRule, Ir, Origin, Peer, Service};
use crate::object::MeshObject;

const NAME: &str = "networkpolicy";
const API: &str = "networking.k8s.io/v1";
const NS_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Debug)]
pub struct NetworkPolicy;

impl Emitter for NetworkPolicy {
    fn target(&self) -> Target {
        Target::NetworkPolicy
    }

    fn support(&self, f: Feature) -> Support {
        match f {
            Feature::AllowList => Support::Partial(
                "a service account is resolved to the pods of the intents that run as it; one no intent runs as is reported",
            ),
            Feature::AllowListL7 => Support::Elsewhere(
                L7_POLICY,
                "the rule's ports are allowed at L4; methods and paths need an L7 target",
            ),
            Feature::StrictMtls => {
                Support::Elsewhere(MTLS, "NetworkPolicy does not authenticate workloads")
            }
            Feature::SloRules => Support::Elsewhere(METRICS, ""),
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
            | Feature::RateLimit => Support::Elsewhere(ROUTING, "NetworkPolicy does not route"),
        }
    }

    fn emit(&self, ir: &Ir, out: &mut Vec<MeshObject>, errors: &mut Vec<EmitError>) {
        let denied = denied_namespaces(ir);
        let mut egress = Egress::default();
        for s in &ir.services {
            let Some(access) = s.access.as_ref().filter(|a| a.default_deny) else {
                // Open to every caller: callers in denied namespaces need
                // egress to it.
                for ns in &denied {
                    egress.add(ns, None, s, &[]);
                }
                continue;
            };
            let mut ingress = Vec::new();
            for rule in &access.rules {
                if rule.from.contains(&Peer::Anyone) {
                    // A rule without `from` admits every source.
                    ingress.push(IngressRule {
                        from: None,
                        ports: ports(&rule.ports),
                    });
                    for ns in &denied {
                        egress.add(ns, None, s, &rule.ports);
                    }
                    continue;
                }
                let mut from = Vec::new();
                for p in &rule.from {
                    match peer(ir, s, p) {
                        Ok(v) => from.extend(v),
                        Err(e) => errors.push(e),
                    }
                    caller_egress(ir, p, &denied, s, rule, &mut egress);
                }
                if from.is_empty() {
                    continue;
                }
                ingress.push(IngressRule {
                    from: Some(from),
                    ports: ports(&rule.ports),
                });
            }
            let spec = NetworkPolicySpec {
                egress: None,
                ingress: Some(ingress),
                pod_selector: LabelSelector::matching(&s.workload_selector),
                policy_types: vec!["Ingress"],
            };
            out.push(
                MeshObject::builder(NAME, API, "NetworkPolicy", &s.namespace, &s.name, &s.origin)
                    .spec_typed(&spec)
                    .build(),
            );
        }
        for ns in &denied {
            let first = ir
                .services
                .iter()
                .find(|s| &s.namespace == ns)
                .expect("a denied namespace has a service");
            out.push(default_deny(ir, ns, &first.origin));
        }
        out.extend(egress.objects());
    }
}

/// Namespaces whose every service denies by default (like Istio's
/// namespace-wide policy: a namespace with an open service would be broken
/// by a namespace-wide deny).
fn denied_namespaces(ir: &Ir) -> Vec<String> {
    let mut by_ns: BTreeMap<&str, bool> = BTreeMap::new();
    for s in &ir.services {
        let deny = s.access.as_ref().is_some_and(|a| a.default_deny);
        *by_ns.entry(&s.namespace).or_insert(true) &= deny;
    }
    by_ns
        .into_iter()
        .filter(|(_, d)| *d)
        .map(|(n, _)| n.to_owned())
        .collect()
}

/// The namespace `ns`, by the label Kubernetes gives every namespace.
fn namespace_selector(ns: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(NS_LABEL.to_owned(), ns.to_owned())])),
    }
}

/// Every pod of the namespaces `selector` selects.
fn namespaces(selector: LabelSelector) -> NetPeer {
    NetPeer {
        namespace_selector: Some(selector),
        pod_selector: None,
    }
}

/// The pods of namespace `ns` carrying `labels`.
fn pods_in(ns: &str, labels: &Labels) -> NetPeer {
    NetPeer {
        namespace_selector: Some(namespace_selector(ns)),
        pod_selector: Some(LabelSelector::matching(labels)),
    }
}

/// The pods running as a service account: those of the repository's
/// intents that use it.
fn pods_of<'a>(ir: &'a Ir, namespace: &str, sa: &str) -> Vec<&'a Service> {
    ir.services
        .iter()
        .filter(|s| s.namespace == namespace && s.service_account == sa)
        .collect()
}

/// The `from` entries admitting the callers `p` to service `s`.
fn peer(ir: &Ir, s: &Service, p: &Peer) -> Result<Vec<NetPeer>, EmitError> {
    match p {
        Peer::Namespace(ns) => Ok(vec![namespaces(namespace_selector(ns))]),
        Peer::AnyNamespace => Ok(vec![namespaces(LabelSelector::default())]),
        Peer::Anyone => Ok(Vec::new()),
        Peer::ServiceAccount {
            namespace, name, ..
        } => {
            let pods = pods_of(ir, namespace, name);
            if pods.is_empty() {
                let message = format!("service `{}`: NetworkPolicy selects pods by labels, and no intent of this repository runs as service account `{namespace}/{name}`: allow its namespace, or add its intent", s.key());
                return Err(EmitError::new(NAME, &s.origin, message));
            }
            Ok(pods
                .iter()
                .map(|c| pods_in(namespace, &c.workload_selector))
                .collect())
        }
    }
}

/// The container ports of a rule (`None`: every port).
fn ports(ports: &[crate::ir::Port]) -> Option<Vec<NetPort>> {
    (!ports.is_empty()).then(|| {
        ports
            .iter()
            .map(|p| NetPort {
                port: p.target_port,
                protocol: "TCP",
            })
            .collect()
    })
}

/// Egress to `dest` for the callers `p` that live in a denied namespace.
fn caller_egress<'a>(
    ir: &'a Ir,
    p: &Peer,
    denied: &[String],
    dest: &Service,
    rule: &AllowRule,
    egress: &mut Egress<'a>,
) {
    match p {
        Peer::Namespace(ns) if denied.contains(ns) => egress.add(ns, None, dest, &rule.ports),
        Peer::AnyNamespace => {
            for ns in denied {
                egress.add(ns, None, dest, &rule.ports);
            }
        }
        Peer::ServiceAccount {
            namespace, name, ..
        } if denied.contains(namespace) => {
            for c in pods_of(ir, namespace, name) {
                egress.add(namespace, Some(c), dest, &rule.ports);
            }
        }
        _ => {}
    }
}

/// Egress rules, by the namespace and the calling service (`None`: the
/// whole namespace).
#[derive(Default)]
struct Egress<'a> {
    by_caller: BTreeMap<(String, Option<String>), EgressPolicy<'a>>,
}

struct EgressPolicy<'a> {
    caller: Option<&'a Service>,
    rules: Vec<EgressRule>,
    origin: Origin,
}

impl<'a> Egress<'a> {
    fn add(
        &mut self,
        ns: &str,
        caller: Option<&'a Service>,
        dest: &Service,
        ports: &[crate::ir::Port],
    ) {
        let key = (ns.to_owned(), caller.map(|c| c.name.clone()));
        let origin = caller.map_or_else(|| dest.origin.clone(), |c| c.origin.clone());
        let entry = self.by_caller.entry(key).or_insert_with(|| EgressPolicy {
            caller,
            rules: Vec::new(),
            origin,
        });
        let rule = EgressRule {
            ports: self::ports(ports),
            to: vec![pods_in(&dest.namespace, &dest.workload_selector)],
        };
        if !entry.rules.contains(&rule) {
            entry.rules.push(rule);
        }
    }

    fn objects(self) -> Vec<MeshObject> {
        self.by_caller
            .into_iter()
            .map(|((ns, _), p)| {
                let (name, selector) = match p.caller {
                    Some(c) => (
                        format!("{}-egress", c.name),
                        LabelSelector::matching(&c.workload_selector),
                    ),
                    None => ("meshplan-egress".to_owned(), LabelSelector::default()),
                };
                let spec = NetworkPolicySpec {
                    egress: Some(p.rules),
                    ingress: None,
                    pod_selector: selector,
                    policy_types: vec!["Egress"],
                };
                MeshObject::builder(NAME, API, "NetworkPolicy", &ns, &name, &p.origin)
                    .spec_typed(&spec)
                    .build()
            })
            .collect()
    }
}

/// Where each mesh's control plane runs by default: its proxies must
/// reach it.
fn control_planes(ir: &Ir) -> Vec<&'static str> {
    let mut v: Vec<&str> = ir
        .targets
        .iter()
        .filter_map(|t| match t {
            Target::Istio => Some("istio-system"),
            Target::Linkerd => Some("linkerd"),
            Target::Consul => Some("consul"),
            Target::Cilium => Some("kube-system"),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn default_deny(ir: &Ir, ns: &str, origin: &Origin) -> MeshObject {
    let dns = |protocol| NetPort { port: 53, protocol };
    let mut egress = vec![EgressRule {
        ports: Some(vec![dns("UDP"), dns("TCP")]),
        to: vec![namespaces(LabelSelector::default())],
    }];
    for cp in control_planes(ir) {
        egress.push(EgressRule {
            ports: None,
            to: vec![namespaces(namespace_selector(cp))],
        });
    }
    let spec = NetworkPolicySpec {
        egress: Some(egress),
        ingress: None,
        pod_selector: LabelSelector::default(),
        policy_types: vec!["Ingress", "Egress"],
    };
    MeshObject::builder(
        NAME,
        API,
        "NetworkPolicy",
        ns,
        "meshplan-default-deny",
        origin,
    )
    .spec_typed(&spec)
    .build()
}
