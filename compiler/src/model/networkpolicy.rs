//! The Kubernetes NetworkPolicy model: whether the pods behind a Service
//! admit a connection, read from `networking.k8s.io/v1` NetworkPolicy
//! bodies and written from the Kubernetes documentation
//! (<https://kubernetes.io/docs/concepts/services-networking/network-policies/>),
//! never from meshplan's emitter.
//!
//! - "The two sorts of pod isolation": a pod selected by a policy whose
//!   `policyTypes` holds `Ingress` (`Egress`) is isolated for ingress
//!   (egress); "the connections allowed are the union of what each policy
//!   allows" — policies are additive, order does not matter. A connection
//!   needs both the source pod's egress and the destination pod's ingress
//!   to allow it.
//! - `policyTypes` left out: "`Ingress` will always be set and `Egress`
//!   will be set if the NetworkPolicy has any egress rules" (section "The
//!   NetworkPolicy resource").
//! - Peers ("Behavior of `to` and `from` selectors"): `podSelector` alone
//!   selects pods of the policy's namespace, `namespaceSelector` alone all
//!   pods of the selected namespaces, both in one peer their AND; `ipBlock`
//!   "should be cluster-external IPs".
//! - A namespace's labels are known only as `kubernetes.io/metadata.name`
//!   ("Targeting a Namespace by its name": set on every namespace).
//! - Ports are the destination *pod's* ports: the request names a Service
//!   port, translated to its `targetPort` through the [`KubeService`]
//!   before policy applies. `protocol` defaults to TCP; `endPort` makes a
//!   range ("Targeting a range of ports").
//!
//! Assumptions (the cluster model carries no more): a named port is the
//! container port named like the Service port the request uses; pods'
//! IPs are unknown, so an `ipBlock` matches only a caller outside the
//! cluster, and only when it covers every address (`/0`, no `except`).
//! NetworkPolicy does not route: answers carry `routing: None`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    object_name, Answer, Cluster, Labels, Model, ModelError, Problem, Request, Source, Verdict,
};
use crate::object::MeshObject;

#[derive(Debug)]
pub struct NetworkPolicy;

impl Model for NetworkPolicy {
    fn answer(
        &self,
        objects: &[MeshObject],
        cluster: &Cluster,
        request: &Request,
    ) -> Result<Answer, ModelError> {
        let Some(svc) = cluster.service(&request.namespace, &request.service) else {
            return Ok(Answer::default());
        };
        let policies = objects
            .iter()
            .filter(|o| o.kind == "NetworkPolicy" && o.group() == "networking.k8s.io")
            .map(Policy::parse)
            .collect::<Result<Vec<_>, _>>()?;
        // The Service forwards its port to the pods' target port.
        let service_port = svc.ports.iter().find(|p| p.port == request.port);
        let port = DestPort {
            number: service_port.map_or(request.port, |p| p.target_port),
            name: service_port.map(|p| p.name.clone()),
        };
        let source = Party::of(&request.source);
        let mut verdicts = BTreeMap::new();
        if !svc.selector.is_empty() {
            for pod in cluster.select(&svc.namespace, &svc.selector) {
                let dest = Party::Pod {
                    namespace: &pod.namespace,
                    labels: &pod.labels,
                };
                verdicts.insert(pod.id.clone(), verdict(&policies, &source, &dest, &port));
            }
        }
        Ok(Answer {
            routing: None,
            authorization: Some(verdicts),
        })
    }
}

/// One end of a connection.
#[derive(Clone, Copy, Debug)]
enum Party<'a> {
    Pod {
        namespace: &'a str,
        labels: &'a Labels,
    },
    /// Outside the cluster (its address unknown).
    External,
}

static NO_LABELS: Labels = BTreeMap::new();

impl<'a> Party<'a> {
    fn of(source: &'a Source) -> Party<'a> {
        match source {
            Source::Workload {
                namespace, labels, ..
            } => Party::Pod { namespace, labels },
            // A pod of that namespace whose labels are unknown.
            Source::Unauthenticated {
                namespace: Some(namespace),
            } => Party::Pod {
                namespace,
                labels: &NO_LABELS,
            },
            Source::Unauthenticated { namespace: None } => Party::External,
        }
    }
}

/// The destination pod's port the connection reaches.
#[derive(Debug)]
struct DestPort {
    number: u32,
    /// The Service port's name, taken as the container port's name.
    name: Option<String>,
}

/// The verdict of the source's egress, then of the destination's ingress.
fn verdict(policies: &[Policy], source: &Party, dest: &Party, port: &DestPort) -> Verdict {
    let egress = match source {
        Party::Pod { .. } => decide(policies, Direction::Egress, source, dest, port),
        Party::External => Verdict::Allow { by: None },
    };
    let by_egress = match egress {
        Verdict::Deny { .. } => return egress,
        Verdict::Allow { by } => by,
    };
    match decide(policies, Direction::Ingress, dest, source, port) {
        Verdict::Allow { by } => Verdict::Allow {
            by: by.or(by_egress),
        },
        deny => deny,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// Whether `subject`'s policies for `dir` admit `peer` on `port`
/// ("The two sorts of pod isolation": isolated pods admit what any
/// selecting policy allows; others admit everything).
fn decide(
    policies: &[Policy],
    dir: Direction,
    subject: &Party,
    peer: &Party,
    port: &DestPort,
) -> Verdict {
    let Party::Pod { namespace, labels } = *subject else {
        return Verdict::Allow { by: None };
    };
    let mut isolating = policies.iter().filter(|p| {
        p.namespace == namespace && p.rules(dir).is_some() && p.pod_selector.matches(labels)
    });
    let Some(first) = isolating.clone().next() else {
        return Verdict::Allow { by: None };
    };
    let allowing = isolating.find(|p| {
        p.rules(dir)
            .unwrap_or_default()
            .iter()
            .any(|r| r.admits(&p.namespace, peer, port))
    });
    match allowing {
        Some(p) => Verdict::Allow {
            by: Some(p.name.clone()),
        },
        None => Verdict::Deny {
            by: first.name.clone(),
        },
    }
}

#[derive(Debug)]
struct Policy {
    name: String,
    namespace: String,
    pod_selector: Selector,
    /// `Some` when the policy isolates for that direction (its rules,
    /// possibly none).
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

impl Policy {
    fn rules(&self, dir: Direction) -> Option<&[Rule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    fn parse(o: &MeshObject) -> Result<Policy, ModelError> {
        let name = object_name(o);
        let err = |p: Problem| p.of(name.clone());
        let body = o.body.value();
        let namespace = o
            .namespace
            .clone()
            .ok_or_else(|| err(Problem::invalid("a NetworkPolicy is namespaced")))?;
        let spec = body
            .get("spec")
            .and_then(Value::as_object)
            .ok_or_else(|| err(Problem::invalid("no spec")))?;
        let pod_selector = Selector::parse(
            spec.get("podSelector")
                .ok_or_else(|| err(Problem::invalid("spec.podSelector is required")))?,
        )
        .map_err(|p| err(p.at("spec.podSelector")))?;
        let rules = |key: &str, peers: &str| -> Result<Vec<Rule>, ModelError> {
            list(spec.get(key))
                .map_err(|p| err(p.at(format!("spec.{key}"))))?
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    Rule::parse(r, peers).map_err(|p| err(p.at(format!("spec.{key}[{i}]"))))
                })
                .collect()
        };
        let ingress = rules("ingress", "from")?;
        let egress = rules("egress", "to")?;
        let (mut has_ingress, mut has_egress) = (true, !egress.is_empty());
        if let Some(types) = spec.get("policyTypes") {
            (has_ingress, has_egress) = (false, false);
            for t in list(Some(types)).map_err(|p| err(p.at("spec.policyTypes")))? {
                match t.as_str() {
                    Some("Ingress") => has_ingress = true,
                    Some("Egress") => has_egress = true,
                    _ => {
                        let unknown = Problem::invalid(format!("unknown type {t}"));
                        return Err(err(unknown.at("spec.policyTypes")));
                    }
                }
            }
        }
        Ok(Policy {
            name: name.clone(),
            namespace,
            pod_selector,
            ingress: has_ingress.then_some(ingress),
            egress: has_egress.then_some(egress),
        })
    }
}

/// An ingress (egress) rule: traffic matching both `from` (`to`) and
/// `ports`; either left out or empty matches everything (API reference,
/// NetworkPolicyIngressRule).
#[derive(Debug)]
struct Rule {
    peers: Vec<Peer>,
    ports: Vec<PortSpec>,
}

impl Rule {
    fn parse(v: &Value, peers_key: &str) -> Result<Rule, Problem> {
        let peers = list(v.get(peers_key))?
            .iter()
            .map(Peer::parse)
            .collect::<Result<_, _>>()?;
        let ports = list(v.get("ports"))?
            .iter()
            .map(PortSpec::parse)
            .collect::<Result<_, _>>()?;
        Ok(Rule { peers, ports })
    }

    fn admits(&self, policy_ns: &str, peer: &Party, port: &DestPort) -> bool {
        (self.peers.is_empty() || self.peers.iter().any(|p| p.matches(policy_ns, peer)))
            && (self.ports.is_empty() || self.ports.iter().any(|p| p.matches(port)))
    }
}

#[derive(Debug)]
enum Peer {
    Pods {
        namespaces: Option<Selector>,
        pods: Option<Selector>,
    },
    IpBlock {
        /// Whether the block covers every address.
        everything: bool,
    },
}

impl Peer {
    fn parse(v: &Value) -> Result<Peer, Problem> {
        if let Some(block) = v.get("ipBlock") {
            if v.get("podSelector").is_some() || v.get("namespaceSelector").is_some() {
                return Err(Problem::invalid(
                    "ipBlock cannot be combined with selectors",
                ));
            }
            let cidr = block
                .get("cidr")
                .and_then(Value::as_str)
                .ok_or_else(|| Problem::invalid("ipBlock.cidr is required"))?;
            let except = list(block.get("except"))?;
            let everything = cidr.ends_with("/0") && except.is_empty();
            return Ok(Peer::IpBlock { everything });
        }
        let sel = |k: &str| v.get(k).map(Selector::parse).transpose();
        let (namespaces, pods) = (sel("namespaceSelector")?, sel("podSelector")?);
        if namespaces.is_none() && pods.is_none() {
            return Err(Problem::invalid(
                "a peer needs podSelector, namespaceSelector or ipBlock",
            ));
        }
        Ok(Peer::Pods { namespaces, pods })
    }

    /// "Behavior of `to` and `from` selectors".
    fn matches(&self, policy_ns: &str, party: &Party) -> bool {
        match (self, party) {
            (Peer::IpBlock { everything }, Party::External) => *everything,
            (Peer::IpBlock { .. }, Party::Pod { .. }) | (Peer::Pods { .. }, Party::External) => {
                false
            }
            (Peer::Pods { namespaces, pods }, Party::Pod { namespace, labels }) => {
                let ns_ok = match namespaces {
                    // "Targeting a Namespace by its name".
                    Some(sel) => sel.matches(&Labels::from([(
                        "kubernetes.io/metadata.name".to_owned(),
                        (*namespace).to_owned(),
                    )])),
                    None => *namespace == policy_ns,
                };
                ns_ok && pods.as_ref().is_none_or(|s| s.matches(labels))
            }
        }
    }
}

#[derive(Debug)]
struct PortSpec {
    protocol: String,
    port: Option<PortRef>,
    end_port: Option<u32>,
}

#[derive(Debug)]
enum PortRef {
    Number(u32),
    Name(String),
}

impl PortSpec {
    fn parse(v: &Value) -> Result<PortSpec, Problem> {
        let protocol = match v.get("protocol") {
            None | Some(Value::Null) => "TCP".to_owned(),
            Some(p) => p
                .as_str()
                .ok_or_else(|| Problem::invalid("protocol must be a string"))?
                .to_owned(),
        };
        let port = match v.get("port") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(match s.parse::<u32>() {
                Ok(n) => PortRef::Number(n),
                Err(_) => PortRef::Name(s.clone()),
            }),
            Some(p) => Some(PortRef::Number(
                p.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| Problem::invalid("port must be a number or a name"))?,
            )),
        };
        let end_port = match v.get("endPort") {
            None | Some(Value::Null) => None,
            Some(e) => Some(
                e.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| Problem::invalid("endPort must be a number"))?,
            ),
        };
        if end_port.is_some() && !matches!(port, Some(PortRef::Number(_))) {
            return Err(Problem::invalid("endPort needs a numerical port"));
        }
        Ok(PortSpec {
            protocol,
            port,
            end_port,
        })
    }

    /// The request travels over TCP.
    fn matches(&self, port: &DestPort) -> bool {
        self.protocol.eq_ignore_ascii_case("TCP")
            && match &self.port {
                None => true,
                Some(PortRef::Number(n)) => {
                    (*n..=self.end_port.unwrap_or(*n)).contains(&port.number)
                }
                Some(PortRef::Name(name)) => port.name.as_deref() == Some(name.as_str()),
            }
    }
}

/// A Kubernetes label selector: `matchLabels` and `matchExpressions`,
/// ANDed; empty selects everything.
#[derive(Debug, Default)]
struct Selector {
    labels: Labels,
    exprs: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    fn parse(v: &Value) -> Result<Selector, Problem> {
        let mut sel = Selector::default();
        if let Some(m) = v.get("matchLabels").filter(|m| !m.is_null()) {
            for (k, val) in m
                .as_object()
                .ok_or_else(|| Problem::invalid("matchLabels must be a map"))?
            {
                let val = val
                    .as_str()
                    .ok_or_else(|| Problem::invalid("a label value must be a string"))?;
                sel.labels.insert(k.clone(), val.to_owned());
            }
        }
        for e in list(v.get("matchExpressions"))? {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| Problem::invalid("key is required"))?;
            let op = e
                .get("operator")
                .and_then(Value::as_str)
                .ok_or_else(|| Problem::invalid("operator is required"))?;
            if !matches!(op, "In" | "NotIn" | "Exists" | "DoesNotExist") {
                return Err(Problem::invalid(format!("unknown operator {op}")));
            }
            let values = list(e.get("values"))?
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| Problem::invalid("values are strings"))
                })
                .collect::<Result<_, _>>()?;
            sel.exprs.push((key.to_owned(), op.to_owned(), values));
        }
        Ok(sel)
    }

    fn matches(&self, labels: &Labels) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|(k, op, values)| {
                let got = labels.get(k);
                match op.as_str() {
                    "In" => got.is_some_and(|g| values.contains(g)),
                    "NotIn" => got.is_none_or(|g| !values.contains(g)),
                    "Exists" => got.is_some(),
                    _ => got.is_none(),
                }
            })
    }
}

/// A list field: absent or null is empty.
fn list(v: Option<&Value>) -> Result<&[Value], Problem> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(Problem::invalid("must be a list")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::testing::{self, labels};
    use crate::model::{KubeService, Pod, ServicePort};

    fn policy(ns: &str, name: &str, spec: Value) -> MeshObject {
        testing::obj("networking.k8s.io/v1", "NetworkPolicy", ns, name, spec, &[])
    }

    fn pod(ns: &str, id: &str, kv: &[(&str, &str)]) -> Pod {
        Pod {
            id: id.into(),
            namespace: ns.into(),
            labels: labels(kv),
            service_account: "default".into(),
            ports: vec![6379],
        }
    }

    /// The docs' example cluster: a `role=db` pod behind Service `db`
    /// (port 80 → 6379), a frontend and a pod elsewhere.
    fn cluster() -> Cluster {
        Cluster {
            trust_domain: "cluster.local".into(),
            pods: vec![
                pod("default", "default/db", &[("role", "db")]),
                pod("default", "default/frontend", &[("role", "frontend")]),
                pod("other", "other/client", &[("role", "client")]),
            ],
            services: vec![KubeService {
                namespace: "default".into(),
                name: "db".into(),
                selector: labels(&[("role", "db")]),
                ports: vec![ServicePort {
                    name: "redis".into(),
                    port: 80,
                    target_port: 6379,
                    protocol: "tcp".into(),
                }],
            }],
        }
    }

    fn from(c: &Cluster, pod: &str) -> Request {
        Request {
            source: c
                .source(pod)
                .unwrap_or(Source::Unauthenticated { namespace: None }),
            namespace: "default".into(),
            service: "db".into(),
            port: 80,
            method: "GET".into(),
            path: "/".into(),
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
        }
    }

    fn allowed(objects: &[MeshObject], request: &Request) -> bool {
        let answer = NetworkPolicy.answer(objects, &cluster(), request).unwrap();
        assert_eq!(answer.routing, None);
        answer.authorization.unwrap()["default/db"].allowed()
    }

    /// The "test-network-policy" example of the NetworkPolicy resource.
    fn docs_example() -> MeshObject {
        policy(
            "default",
            "test-network-policy",
            json!({
                "podSelector": {"matchLabels": {"role": "db"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{
                    "from": [
                        {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                        {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                        {"podSelector": {"matchLabels": {"role": "frontend"}}}
                    ],
                    "ports": [{"protocol": "TCP", "port": 6379}]
                }],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 5978}]}]
            }),
        )
    }

    #[test]
    fn without_policies_pods_are_not_isolated() {
        let c = cluster();
        let answer = NetworkPolicy
            .answer(&[], &c, &from(&c, "other/client"))
            .unwrap();
        assert_eq!(
            answer.authorization.unwrap()["default/db"],
            Verdict::Allow { by: None }
        );
    }

    #[test]
    fn the_docs_example_admits_the_frontend_on_the_target_port() {
        let c = cluster();
        let objects = [docs_example()];
        assert!(allowed(&objects, &from(&c, "default/frontend")));
        // Another namespace without the `project` label: refused.
        assert!(!allowed(&objects, &from(&c, "other/client")));
        // Outside the cluster: the ipBlock is not all addresses.
        assert!(!allowed(&objects, &from(&c, "nobody")));
    }

    #[test]
    fn ports_are_the_pods_ports_and_may_be_named() {
        let c = cluster();
        let named = |port: Value| {
            policy(
                "default",
                "p",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": port}]}]}),
            )
        };
        assert!(allowed(&[named(json!(6379))], &from(&c, "other/client")));
        assert!(!allowed(&[named(json!(80))], &from(&c, "other/client")));
        assert!(allowed(&[named(json!("redis"))], &from(&c, "other/client")));
        let range = policy(
            "default",
            "r",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 6000, "endPort": 7000}]}]}),
        );
        assert!(allowed(&[range], &from(&c, "other/client")));
    }

    #[test]
    fn a_peer_with_both_selectors_is_their_and() {
        let c = cluster();
        let and = policy(
            "default",
            "and",
            json!({"podSelector": {}, "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}},
                "podSelector": {"matchLabels": {"role": "client"}}
            }]}]}),
        );
        assert!(allowed(&[and], &from(&c, "other/client")));
        let pods_only = policy(
            "default",
            "pods",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
        );
        // podSelector alone: the policy's own namespace.
        assert!(!allowed(&[pods_only], &from(&c, "other/client")));
    }

    #[test]
    fn the_source_egress_must_allow_too() {
        let c = cluster();
        let deny_egress = policy(
            "other",
            "default-deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        );
        assert!(!allowed(&[deny_egress], &from(&c, "other/client")));
        let allow_db = policy(
            "other",
            "to-db",
            json!({"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "db"}}}]}]}),
        );
        let answer = NetworkPolicy
            .answer(&[allow_db], &c, &from(&c, "other/client"))
            .unwrap();
        assert_eq!(
            answer.authorization.unwrap()["default/db"],
            Verdict::Allow {
                by: Some("NetworkPolicy other/to-db".into())
            }
        );
    }

    #[test]
    fn default_deny_ingress_names_the_isolating_policy() {
        let c = cluster();
        let deny = policy(
            "default",
            "default-deny-ingress",
            json!({"podSelector": {}}),
        );
        let answer = NetworkPolicy
            .answer(&[deny], &c, &from(&c, "default/frontend"))
            .unwrap();
        assert_eq!(
            answer.authorization.unwrap()["default/db"],
            Verdict::Deny {
                by: "NetworkPolicy default/default-deny-ingress".into()
            }
        );
    }

    #[test]
    fn an_all_addresses_block_admits_the_outside() {
        let c = cluster();
        let world = policy(
            "default",
            "w",
            json!({"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["db"]}]},
                   "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
        );
        assert!(allowed(&[world], &from(&c, "nobody")));
    }

    #[test]
    fn malformed_policies_are_errors() {
        let c = cluster();
        let bad = policy(
            "default",
            "bad",
            json!({"podSelector": {}, "ingress": [{"from": [{}]}]}),
        );
        assert!(NetworkPolicy
            .answer(&[bad], &c, &from(&c, "default/frontend"))
            .is_err());
        let no_selector = policy("default", "bad", json!({"ingress": []}));
        assert!(NetworkPolicy
            .answer(&[no_selector], &c, &from(&c, "default/frontend"))
            .is_err());
    }
}
