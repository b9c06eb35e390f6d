//! `cilium.io`: the `CiliumNetworkPolicy` (v2) — the endpoints it
//! selects, default deny, and per rule the peers (endpoints or entities),
//! the mutual authentication required of them, and the ports with their
//! HTTP rules. Fields in the order of their JSON names (see the module
//! above).

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CiliumNetworkPolicySpec {
    pub enable_default_deny: DefaultDeny,
    pub endpoint_selector: EndpointSelector,
    pub ingress: Vec<IngressRule>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DefaultDeny {
    pub ingress: bool,
}

/// Endpoints by labels and label requirements (both: all of them).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<Requirement>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Requirement {
    pub key: &'static str,
    /// `Exists`, `In`, …
    pub operator: &'static str,
}

/// One ingress rule: `{}` (no peer) selects nothing, so it admits nothing.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IngressRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_endpoints: Option<Vec<EndpointSelector>>,
    /// `all`, `host`, `world`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_entities: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_ports: Option<Vec<PortRule>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Authentication {
    /// `required`.
    pub mode: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct PortRule {
    pub ports: Vec<PortProtocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<L7Rules>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PortProtocol {
    /// A number, as a string (the CRD's type).
    pub port: String,
    pub protocol: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct L7Rules {
    pub http: Vec<HttpRule>,
}

/// Anchored regular expressions on the method and the path.
#[derive(Debug, Serialize)]
pub(crate) struct HttpRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sorted_keys;

    #[test]
    fn a_policy_serialises_with_sorted_keys() {
        let selector = || EndpointSelector {
            match_expressions: Some(vec![Requirement {
                key: "k",
                operator: "Exists",
            }]),
            match_labels: Some(BTreeMap::from([
                ("b".into(), "1".into()),
                ("a".into(), "2".into()),
            ])),
        };
        let t = serde_json::to_string(&CiliumNetworkPolicySpec {
            enable_default_deny: DefaultDeny { ingress: true },
            endpoint_selector: selector(),
            ingress: vec![IngressRule {
                authentication: Some(Authentication { mode: "required" }),
                from_endpoints: Some(vec![selector()]),
                from_entities: Some(vec!["all"]),
                to_ports: Some(vec![PortRule {
                    ports: vec![PortProtocol {
                        port: "80".into(),
                        protocol: "TCP",
                    }],
                    rules: Some(L7Rules {
                        http: vec![HttpRule {
                            method: Some("^GET$".into()),
                            path: Some("^/$".into()),
                        }],
                    }),
                }]),
            }],
        })
        .unwrap();
        assert!(sorted_keys(&t), "{t}");
    }
}
