//! Cilium's endpoint labels and endpoint selectors.
//!
//! - An endpoint's labels carry a source: a pod's Kubernetes labels are
//!   `k8s:`; Cilium adds `k8s:io.kubernetes.pod.namespace`,
//!   `k8s:io.cilium.k8s.policy.serviceaccount` and
//!   `k8s:io.cilium.k8s.policy.cluster`; traffic from outside the cluster
//!   has `reserved:world` (<https://docs.cilium.io/en/stable/security/policy/language/>,
//!   "Endpoints Based"; <https://docs.cilium.io/en/stable/security/policy/kubernetes/>,
//!   "ServiceAccounts", "Multi-Cluster").
//! - A selector key without a source prefix (or `any:`) matches a label
//!   of any source.
//! - A CiliumNetworkPolicy's `endpointSelector` "always applies to pods in
//!   the namespace associated with the CiliumNetworkPolicy"; a
//!   `fromEndpoints`/`toEndpoints` selector without a namespace label
//!   "defaults to the same namespace where the policy itself is applied";
//!   `io.cilium.k8s.namespace.labels` "will be ignored in
//!   CiliumNetworkPolicy resources" (kubernetes.rst, "Namespaces",
//!   "Multi-Cluster"). A clusterwide policy's selectors match only
//!   Kubernetes pods (those with a namespace label).

use serde_json::Value;

use crate::model::Problem;

/// The label Cilium gives every pod for its namespace.
pub(super) const NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub(super) const SERVICE_ACCOUNT: &str = "io.cilium.k8s.policy.serviceaccount";
const CLUSTER: &str = "io.cilium.k8s.policy.cluster";
const NAMESPACE_LABELS: &str = "io.cilium.k8s.namespace.labels.";

/// Label sources Cilium knows; another prefix before `:` is part of the key.
const SOURCES: &[&str] = &[
    "k8s",
    "any",
    "reserved",
    "container",
    "unspec",
    "cidr",
    "fqdn",
    "cilium-generated",
];

/// An endpoint's labels: (source, key, value).
pub(super) type EndpointLabels = Vec<(String, String, String)>;

/// The labels of a pod in `namespace` with Kubernetes `labels`.
pub(super) fn pod_labels<'a>(
    namespace: &str,
    service_account: Option<&str>,
    labels: impl Iterator<Item = (&'a String, &'a String)>,
) -> EndpointLabels {
    let mut out: EndpointLabels = labels
        .map(|(k, v)| ("k8s".to_owned(), k.clone(), v.clone()))
        .collect();
    out.push(("k8s".into(), NAMESPACE.into(), namespace.into()));
    // The default cluster name (Helm `cluster.name`).
    out.push(("k8s".into(), CLUSTER.into(), "default".into()));
    if let Some(sa) = service_account {
        out.push(("k8s".into(), SERVICE_ACCOUNT.into(), sa.into()));
    }
    out
}

/// The labels of the `world` identity.
pub(super) fn world_labels() -> EndpointLabels {
    vec![("reserved".into(), "world".into(), String::new())]
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One requirement: `source` `None` matches any source.
#[derive(Clone, Debug)]
struct Requirement {
    source: Option<String>,
    key: String,
    op: Op,
    values: Vec<String>,
}

/// An EndpointSelector (`matchLabels` and `matchExpressions`, ANDed).
#[derive(Clone, Debug, Default)]
pub(super) struct Selector {
    reqs: Vec<Requirement>,
}

fn split_key(k: &str) -> (Option<String>, String) {
    match k.split_once(':') {
        Some((src, key)) if SOURCES.contains(&src) => {
            let src = (src != "any").then(|| src.to_owned());
            (src, key.to_owned())
        }
        _ => (None, k.to_owned()),
    }
}

impl Selector {
    pub(super) fn parse(v: &Value) -> Result<Selector, Problem> {
        let mut reqs = Vec::new();
        if let Some(m) = v.get("matchLabels").filter(|m| !m.is_null()) {
            for (k, val) in m
                .as_object()
                .ok_or_else(|| Problem::invalid("matchLabels must be a map"))?
            {
                let (source, key) = split_key(k);
                let val = val
                    .as_str()
                    .ok_or_else(|| Problem::invalid("a label value must be a string"))?;
                reqs.push(Requirement {
                    source,
                    key,
                    op: Op::In,
                    values: vec![val.to_owned()],
                });
            }
        }
        let exprs = match v.get("matchExpressions") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a,
            Some(_) => return Err(Problem::invalid("matchExpressions must be a list")),
        };
        for e in exprs {
            let k = e
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| Problem::invalid("key is required"))?;
            let op = match e.get("operator").and_then(Value::as_str) {
                Some("In") => Op::In,
                Some("NotIn") => Op::NotIn,
                Some("Exists") => Op::Exists,
                Some("DoesNotExist") => Op::DoesNotExist,
                other => return Err(Problem::invalid(format!("unknown operator {other:?}"))),
            };
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let (source, key) = split_key(k);
            reqs.push(Requirement {
                source,
                key,
                op,
                values,
            });
        }
        Ok(Selector { reqs })
    }

    fn has_key(&self, key: &str) -> bool {
        self.reqs.iter().any(|r| r.key == key)
    }

    /// Whether any requirement names a `reserved:` label.
    fn is_reserved(&self) -> bool {
        self.reqs
            .iter()
            .any(|r| r.source.as_deref() == Some("reserved"))
    }

    /// The selector as Cilium applies it in a policy of `namespace`
    /// (`None`: clusterwide). A peer selector keeps an explicit namespace;
    /// an endpoint selector is always held to the policy's namespace.
    pub(super) fn scoped(mut self, namespace: Option<&str>, endpoint: bool) -> Selector {
        if self.is_reserved() {
            return self;
        }
        match namespace {
            Some(ns) => {
                self.reqs.retain(|r| !r.key.starts_with(NAMESPACE_LABELS));
                if endpoint || !self.has_key(NAMESPACE) {
                    self.reqs.push(Requirement {
                        source: Some("k8s".into()),
                        key: NAMESPACE.into(),
                        op: Op::In,
                        values: vec![ns.into()],
                    });
                }
            }
            None if !self.has_key(NAMESPACE) => self.reqs.push(Requirement {
                source: Some("k8s".into()),
                key: NAMESPACE.into(),
                op: Op::Exists,
                values: Vec::new(),
            }),
            None => {}
        }
        self
    }

    pub(super) fn matches(&self, labels: &EndpointLabels) -> bool {
        self.reqs.iter().all(|r| {
            let mut values = labels
                .iter()
                .filter(|(src, k, _)| *k == r.key && r.source.as_ref().is_none_or(|s| s == src));
            match r.op {
                Op::In => values.any(|(_, _, v)| r.values.contains(v)),
                Op::NotIn => values.all(|(_, _, v)| !r.values.contains(v)),
                Op::Exists => values.next().is_some(),
                Op::DoesNotExist => values.next().is_none(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(ns: &str, kv: &[(&str, &str)]) -> EndpointLabels {
        let labels: Vec<(String, String)> = kv
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        pod_labels(ns, Some("luke"), labels.iter().map(|(k, v)| (k, v)))
    }

    #[test]
    fn prefixes_name_the_label_source() {
        let sel = Selector::parse(&json!({"matchLabels": {
            "k8s:io.kubernetes.pod.namespace": "ns2", "any:name": "luke", "k8s:io.cilium.k8s.policy.serviceaccount": "luke"
        }}))
        .unwrap();
        assert!(sel.matches(&pod("ns2", &[("name", "luke")])));
        assert!(!sel.matches(&pod("ns1", &[("name", "luke")])));
        assert!(!sel.matches(&world_labels()));
    }

    #[test]
    fn peer_selectors_default_to_the_policys_namespace() {
        let sel = Selector::parse(&json!({"matchLabels": {"name": "luke"}}))
            .unwrap()
            .scoped(Some("ns1"), false);
        assert!(sel.matches(&pod("ns1", &[("name", "luke")])));
        assert!(!sel.matches(&pod("ns2", &[("name", "luke")])));
        let explicit =
            Selector::parse(&json!({"matchLabels": {"k8s:io.kubernetes.pod.namespace": "ns2"}}))
                .unwrap()
                .scoped(Some("ns1"), false);
        assert!(explicit.matches(&pod("ns2", &[])));
        let clusterwide = Selector::parse(&json!({})).unwrap().scoped(None, false);
        assert!(clusterwide.matches(&pod("ns9", &[])));
        assert!(!clusterwide.matches(&world_labels()));
    }

    #[test]
    fn expressions() {
        let sel = Selector::parse(&json!({"matchExpressions": [
            {"key": "role", "operator": "NotIn", "values": ["db"]},
            {"key": "tier", "operator": "DoesNotExist"}
        ]}))
        .unwrap();
        assert!(sel.matches(&pod("a", &[("role", "web")])));
        assert!(!sel.matches(&pod("a", &[("role", "db")])));
        assert!(!sel.matches(&pod("a", &[("tier", "x")])));
    }
}
