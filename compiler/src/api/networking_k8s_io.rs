//! `networking.k8s.io`: Kubernetes `NetworkPolicy` (v1) — which pods it
//! isolates, and the peers and ports admitted to or from them. Fields in
//! the order of their JSON names (see the module above).

use std::collections::BTreeMap;

use serde::Serialize;

/// `NetworkPolicy` (v1). A list that is present but empty admits nothing
/// in its direction; an absent one leaves the direction to `policyTypes`,
/// so each is kept as the emitter set it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NetworkPolicySpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    pub pod_selector: LabelSelector,
    /// `Ingress`, `Egress`.
    pub policy_types: Vec<&'static str>,
}

/// Sources admitted to the selected pods (`from` absent: every source).
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct IngressRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<Peer>>,
    /// Absent: every port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
}

/// Destinations the selected pods may reach.
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct EgressRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
    pub to: Vec<Peer>,
}

/// Pods by namespace labels, pod labels, or both (both: those pods of
/// those namespaces).
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Peer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct Port {
    pub port: u32,
    /// `TCP`, `UDP`.
    pub protocol: &'static str,
}

/// A label selector: `{}` (no `matchLabels`) selects everything.
#[derive(Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LabelSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

impl LabelSelector {
    /// The pods or namespaces carrying every one of `labels`.
    pub fn matching<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        LabelSelector {
            match_labels: Some(
                labels
                    .into_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sorted_keys;

    #[test]
    fn a_network_policy_serialises_with_sorted_keys() {
        let both = || Peer {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(LabelSelector::matching([(
                &"b".to_owned(),
                &"2".to_owned(),
            )])),
        };
        let port = || Port {
            port: 53,
            protocol: "UDP",
        };
        let t = serde_json::to_string(&NetworkPolicySpec {
            egress: Some(vec![EgressRule {
                ports: Some(vec![port()]),
                to: vec![both()],
            }]),
            ingress: Some(vec![IngressRule {
                from: Some(vec![both()]),
                ports: Some(vec![port()]),
            }]),
            pod_selector: LabelSelector::default(),
            policy_types: vec!["Ingress", "Egress"],
        })
        .unwrap();
        assert!(sorted_keys(&t), "{t}");
    }
}
