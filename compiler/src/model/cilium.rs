//! The Cilium model: whether the pods behind a Service admit a request,
//! read from CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy
//! (`cilium.io/v2`) bodies and written from Cilium's documentation, never
//! from meshplan's emitter. Cilium does not route here: `routing: None`.
//!
//! - Default deny (<https://docs.cilium.io/en/stable/security/policy/intro/>,
//!   "Policy Enforcement Modes", default mode: "If any rule selects an
//!   Endpoint and the rule has an ingress section, the endpoint goes into
//!   default deny at ingress"), refined by `enableDefaultDeny`: "If not
//!   specified, the default is true for each traffic direction that has
//!   rules … If multiple policies apply to an endpoint, that endpoint's
//!   default deny will be enabled if any policy requests it" (CRD schema).
//! - Allow rules add up; deny rules "take precedence over allow policies"
//!   (<https://docs.cilium.io/en/stable/security/policy/deny/>).
//! - L7 (<https://docs.cilium.io/en/stable/security/policy/layer7/>):
//!   rules of one port are combined; "If a layer 4 rule is specified in
//!   the policy, and a similar layer 4 rule with layer 7 rules is also
//!   specified, then the layer 7 portions of the latter rule will have no
//!   effect"; a request no L7 rule admits gets "HTTP 403 access denied".
//!   Traffic that is not HTTP cannot pass an HTTP rule.
//! - `authentication.mode: required`
//!   (<https://docs.cilium.io/en/stable/network/servicemesh/mutual-authentication/mutual-authentication-example/>):
//!   traffic is allowed only once both Cilium identities are mutually
//!   authenticated; reserved identities such as `world` are never
//!   authenticated (cilium/cilium#29400, "Do not handle mutual auth for
//!   reserved ids"), and "policy enforcement will still block requests
//!   that require authentication" (Helm reference,
//!   `authentication.enabled`): such a rule does not admit `world`.
//! - Policies are enforced at both ends: the source pod's egress, then
//!   the destination pod's ingress; ports are the pods' ports (after the
//!   Service's translation of its port to `targetPort`).
//!
//! Sources: a [`Source::Workload`] is a pod with its labels, namespace and
//! service account; `Unauthenticated { namespace: Some(ns) }` a pod of
//! `ns` whose labels are unknown (none but the namespace);
//! `namespace: None` the `world` entity. Assumed: the cluster is named
//! `default`, a named port is the container port named like the Service
//! port, CIDR rules match only `world` and only when they cover every
//! address. Host policies (`nodeSelector`) are ignored.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{object_name, Answer, Cluster, Model, ModelError, Problem, Request, Source, Verdict};
use crate::object::MeshObject;

mod rules;
mod selector;

use rules::{Direction, Peer, Port, Rule};
use selector::{pod_labels, world_labels, EndpointLabels, Selector};

#[derive(Debug)]
pub struct Cilium;

impl Model for Cilium {
    fn answer(
        &self,
        objects: &[MeshObject],
        cluster: &Cluster,
        request: &Request,
    ) -> Result<Answer, ModelError> {
        let Some(svc) = cluster.service(&request.namespace, &request.service) else {
            return Ok(Answer::default());
        };
        let mut policies = Vec::new();
        for o in objects.iter().filter(|o| o.group() == "cilium.io") {
            policies.extend(Policy::parse(o)?);
        }
        let service_port = svc.ports.iter().find(|p| p.port == request.port);
        let port = Port {
            number: service_port.map_or(request.port, |p| p.target_port),
            name: service_port.map(|p| p.name.clone()),
            http: service_port.is_some_and(|p| p.protocol != "tcp"),
        };
        let source = match &request.source {
            Source::Workload {
                namespace,
                service_account,
                labels,
            } => Peer {
                labels: pod_labels(namespace, Some(service_account), labels.iter()),
                in_cluster: true,
            },
            Source::Unauthenticated {
                namespace: Some(ns),
            } => Peer {
                labels: pod_labels(ns, None, std::iter::empty()),
                in_cluster: true,
            },
            Source::Unauthenticated { namespace: None } => Peer {
                labels: world_labels(),
                in_cluster: false,
            },
        };
        let mut verdicts = BTreeMap::new();
        if !svc.selector.is_empty() {
            for pod in cluster.select(&svc.namespace, &svc.selector) {
                let dest = Peer {
                    labels: pod_labels(
                        &pod.namespace,
                        Some(&pod.service_account),
                        pod.labels.iter(),
                    ),
                    in_cluster: true,
                };
                let v = verdict(&policies, &source, &dest, &port, request);
                verdicts.insert(pod.id.clone(), v);
            }
        }
        Ok(Answer {
            routing: None,
            authorization: Some(verdicts),
        })
    }
}

/// One rule set (`spec` or an item of `specs`) of a policy.
#[derive(Debug)]
struct Policy {
    name: String,
    selector: Selector,
    ingress: Vec<Rule>,
    ingress_deny: Vec<Rule>,
    egress: Vec<Rule>,
    egress_deny: Vec<Rule>,
    /// Whether the policy puts its endpoints in default deny, per
    /// direction.
    deny_ingress: bool,
    deny_egress: bool,
}

impl Policy {
    fn parse(o: &MeshObject) -> Result<Vec<Policy>, ModelError> {
        let ns = match o.kind {
            "CiliumNetworkPolicy" => o.namespace.as_deref(),
            "CiliumClusterwideNetworkPolicy" => None,
            _ => return Ok(Vec::new()),
        };
        let name = object_name(o);
        let err = |p: Problem| p.of(name.clone());
        let body = o.body.value();
        let mut specs: Vec<&Value> = body
            .get("spec")
            .filter(|s| !s.is_null())
            .into_iter()
            .collect();
        if let Some(list) = body.get("specs").and_then(Value::as_array) {
            specs.extend(list);
        }
        if specs.is_empty() {
            return Err(err(Problem::invalid("no spec or specs")));
        }
        let mut out = Vec::new();
        for spec in specs {
            let Some(sel) = spec.get("endpointSelector").filter(|s| !s.is_null()) else {
                if spec.get("nodeSelector").is_some_and(|s| !s.is_null()) {
                    // A host policy: not about pods.
                    continue;
                }
                return Err(err(Problem::invalid(
                    "endpointSelector or nodeSelector is required",
                )));
            };
            let selector = Selector::parse(sel)
                .map_err(|p| err(p.at("endpointSelector")))?
                .scoped(ns, true);
            let rules = |key: &str, dir: Direction| -> Result<Vec<Rule>, ModelError> {
                let items = match spec.get(key) {
                    None | Some(Value::Null) => return Ok(Vec::new()),
                    Some(v) => v
                        .as_array()
                        .ok_or_else(|| err(Problem::invalid(format!("{key} must be a list"))))?,
                };
                items
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        Rule::parse(r, dir, ns).map_err(|p| err(p.at(format!("{key}[{i}]"))))
                    })
                    .collect()
            };
            let ingress = rules("ingress", Direction::Ingress)?;
            let ingress_deny = rules("ingressDeny", Direction::Ingress)?;
            let egress = rules("egress", Direction::Egress)?;
            let egress_deny = rules("egressDeny", Direction::Egress)?;
            let default_deny = |dir: &str, has_rules: bool| {
                spec.get("enableDefaultDeny")
                    .and_then(|d| d.get(dir))
                    .and_then(Value::as_bool)
                    .unwrap_or(has_rules)
            };
            out.push(Policy {
                name: name.clone(),
                selector,
                deny_ingress: default_deny(
                    "ingress",
                    !ingress.is_empty() || !ingress_deny.is_empty(),
                ),
                deny_egress: default_deny("egress", !egress.is_empty() || !egress_deny.is_empty()),
                ingress,
                ingress_deny,
                egress,
                egress_deny,
            });
        }
        Ok(out)
    }

    fn rules(&self, dir: Direction) -> (&[Rule], &[Rule], bool) {
        match dir {
            Direction::Ingress => (&self.ingress, &self.ingress_deny, self.deny_ingress),
            Direction::Egress => (&self.egress, &self.egress_deny, self.deny_egress),
        }
    }
}

/// The verdict of the source pod's egress, then the destination's ingress.
fn verdict(policies: &[Policy], source: &Peer, dest: &Peer, port: &Port, r: &Request) -> Verdict {
    let by_egress = if source.in_cluster {
        match decide(policies, Direction::Egress, &source.labels, dest, port, r) {
            Verdict::Allow { by } => by,
            deny => return deny,
        }
    } else {
        None
    };
    match decide(policies, Direction::Ingress, &dest.labels, source, port, r) {
        Verdict::Allow { by } => Verdict::Allow {
            by: by.or(by_egress),
        },
        deny => deny,
    }
}

/// What the policies selecting `subject` decide for `peer` on `port` in
/// direction `dir`.
fn decide(
    policies: &[Policy],
    dir: Direction,
    subject: &EndpointLabels,
    peer: &Peer,
    port: &Port,
    r: &Request,
) -> Verdict {
    let selecting: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.selector.matches(subject))
        .collect();
    // "Deny policies take precedence over allow policies."
    for p in &selecting {
        let (_, deny, _) = p.rules(dir);
        if deny
            .iter()
            .any(|d| d.selects(peer) && d.on_port(port).is_some())
        {
            return Verdict::Deny { by: p.name.clone() };
        }
    }
    let default_deny = selecting.iter().find(|p| p.rules(dir).2);
    let matched: Vec<(&Policy, &Rule, &rules::Http)> = selecting
        .iter()
        .flat_map(|p| p.rules(dir).0.iter().map(move |rule| (*p, rule)))
        .filter(|(_, rule)| rule.selects(peer))
        .filter_map(|(p, rule)| rule.on_port(port).map(|http| (p, rule, http)))
        .collect();
    let Some(first) = matched.first() else {
        return match default_deny {
            Some(p) => Verdict::Deny { by: p.name.clone() },
            None => Verdict::Allow { by: None },
        };
    };
    // Authentication is required for the peer and port when any rule
    // admitting them requires it.
    if let Some((p, rule, _)) = matched.iter().find(|(_, rule, _)| rule.auth.is_some()) {
        if !peer.in_cluster || rule.auth.as_deref() == Some("test-always-fail") {
            return Verdict::Deny { by: p.name.clone() };
        }
    }
    // An L4 rule voids the L7 rules of the same port.
    if let Some((p, _, _)) = matched.iter().find(|(_, _, http)| http.is_none()) {
        return Verdict::Allow {
            by: Some(p.name.clone()),
        };
    }
    let admitting = matched.iter().find(|(_, _, http)| {
        port.http
            && http
                .as_ref()
                .is_some_and(|rules| rules.iter().any(|h| h.admits(r)))
    });
    match admitting {
        Some((p, _, _)) => Verdict::Allow {
            by: Some(p.name.clone()),
        },
        // 403 from the L7 proxy.
        None => Verdict::Deny {
            by: first.0.name.clone(),
        },
    }
}

#[cfg(test)]
mod tests;
