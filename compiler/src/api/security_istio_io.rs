//! `security.istio.io`: Istio's workload security. A `PeerAuthentication`
//! says whether a workload's sidecar accepts plain text beside mutual TLS;
//! an `AuthorizationPolicy` with action ALLOW admits the requests one of
//! its rules matches and denies every other (no rules: every request).
//! Fields in the order of their JSON names (see the module above).

use serde::Serialize;

use meshplan_policy_lang::intent::labels::Labels;

/// The workloads a policy applies to (absent: the whole namespace).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkloadSelector<'a> {
    pub match_labels: &'a Labels,
}

/// `PeerAuthentication` (v1).
#[derive(Debug, Serialize)]
pub(crate) struct PeerAuthenticationSpec<'a> {
    pub mtls: PeerMtls,
    pub selector: WorkloadSelector<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PeerMtls {
    /// `STRICT` or `PERMISSIVE`.
    pub mode: &'static str,
}

/// `AuthorizationPolicy` (v1). `{}` (no selector, no action, no rules)
/// allows nothing in its namespace.
#[derive(Debug, Default, Serialize)]
pub(crate) struct AuthorizationPolicySpec<'a> {
    /// `ALLOW`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector<'a>>,
}

/// A request matches a rule when it matches one of `from` (absent: any
/// source) and one of `to` (absent: any operation).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Rule {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<From>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<To>,
}

#[derive(Debug, Serialize)]
pub(crate) struct From {
    pub source: Source,
}

/// Every field present must match: a source is given its principals or
/// its namespaces, each in a `From` of its own, so either admits.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Source {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// `<trust domain>/ns/<namespace>/sa/<service account>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct To {
    pub operation: Operation,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Operation {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The workload's (container) ports: authorization runs after the
    /// Service's port is translated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sorted_keys;

    #[test]
    fn istio_security_specs_serialise_with_sorted_keys() {
        let labels: Labels = [("app", "a"), ("version", "v1")].into_iter().collect();
        let selector = || WorkloadSelector {
            match_labels: &labels,
        };
        let pa = serde_json::to_string(&PeerAuthenticationSpec {
            mtls: PeerMtls { mode: "STRICT" },
            selector: selector(),
        })
        .unwrap();
        let ap = serde_json::to_string(&AuthorizationPolicySpec {
            action: Some("ALLOW"),
            rules: vec![Rule {
                from: vec![From {
                    source: Source {
                        namespaces: vec!["n".into()],
                        principals: vec!["p".into()],
                    },
                }],
                to: vec![To {
                    operation: Operation {
                        methods: vec!["GET".into()],
                        paths: vec!["/".into()],
                        ports: vec!["80".into()],
                    },
                }],
            }],
            selector: Some(selector()),
        })
        .unwrap();
        for t in [pa, ap] {
            assert!(sorted_keys(&t), "{t}");
        }
        let deny = serde_json::to_string(&AuthorizationPolicySpec::default()).unwrap();
        assert_eq!(deny, "{}");
    }
}
