//! `policy.linkerd.io`: Linkerd's policy — inbound, a `Server` per port,
//! the `HTTPRoute`s that classify its requests, the
//! `AuthorizationPolicy`s that admit them, the authentications they
//! require (`MeshTLSAuthentication`, `NetworkAuthentication`) and its
//! rate limit (`HTTPLocalRateLimitPolicy`); outbound, the `HTTPRoute`s
//! that route a Service's requests between its backends. Field names and
//! meanings as Linkerd's CRDs (`policy.linkerd.io` v1beta3, v1alpha1)
//! declare them; fields in the order of their JSON names (see the module
//! above).

use std::collections::BTreeMap;

use serde::Serialize;

use super::gateway_networking_k8s_io::{HttpRouteRule, RouteSpec};

/// The API group of the objects here.
pub(crate) const GROUP: &str = "policy.linkerd.io";

/// A reference to another object (`targetRef`, `parentRefs`,
/// `requiredAuthenticationRefs`).
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Ref<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

/// `Server` (v1beta3): which pods' port it is, how its traffic is
/// detected, and what happens to a request no policy admits.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerSpec<'a> {
    /// `deny`, `all-authenticated`, `all-unauthenticated`, …
    pub access_policy: &'a str,
    pub pod_selector: LabelSelector<'a>,
    pub port: u32,
    /// `HTTP/1`, `HTTP/2`, `gRPC`, `opaque`.
    pub proxy_protocol: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LabelSelector<'a> {
    pub match_labels: BTreeMap<&'a str, &'a str>,
}

/// `AuthorizationPolicy` (v1alpha1): the callers that `target` admits.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthorizationPolicySpec<'a> {
    pub required_authentication_refs: Vec<Ref<'a>>,
    pub target_ref: Ref<'a>,
}

/// `MeshTLSAuthentication` (v1alpha1): callers by mesh identity.
#[derive(Debug, Serialize)]
pub(crate) struct MeshTlsAuthenticationSpec {
    pub identities: Vec<String>,
}

/// `NetworkAuthentication` (v1alpha1): callers by network.
#[derive(Debug, Serialize)]
pub(crate) struct NetworkAuthenticationSpec {
    pub networks: Vec<Network>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Network {
    pub cidr: &'static str,
}

/// `HTTPRoute` (v1beta3): Gateway API's route, parented to a Service's
/// port (outbound: group `core`) or to a Server (inbound, classifying its
/// requests for the AuthorizationPolicies on the route). Linkerd has
/// fewer filters (no `URLRewrite` or `RequestMirror`;
/// `ResponseHeaderModifier` on a backend only), and its rules have no
/// `retry` (annotations of the route instead).
pub(crate) type HttpRouteSpec<'a> = RouteSpec<'a, HttpRouteRule>;

/// `HTTPLocalRateLimitPolicy` (v1alpha1): requests per second a Server's
/// proxy admits in all, beyond which it answers 429.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpLocalRateLimitPolicySpec<'a> {
    pub target_ref: Ref<'a>,
    pub total: Limit,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Limit {
    pub requests_per_second: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gateway_networking_k8s_io::{HttpRouteMatch, MatchType, ParentRef, PathMatch};
    use crate::api::sorted_keys;

    /// Every struct, every optional field set: serde writes the keys
    /// sorted, so the body is the canonical text.
    #[test]
    fn every_spec_serialises_with_sorted_keys() {
        let r = || Ref {
            group: GROUP,
            kind: "Server",
            name: "web-http",
        };
        let texts = [
            serde_json::to_string(&ServerSpec {
                access_policy: "deny",
                pod_selector: LabelSelector {
                    match_labels: BTreeMap::from([("b", "2"), ("a", "1")]),
                },
                port: 8080,
                proxy_protocol: "HTTP/1",
            }),
            serde_json::to_string(&AuthorizationPolicySpec {
                required_authentication_refs: vec![r()],
                target_ref: r(),
            }),
            serde_json::to_string(&MeshTlsAuthenticationSpec {
                identities: vec!["*".into()],
            }),
            serde_json::to_string(&NetworkAuthenticationSpec {
                networks: vec![Network { cidr: "::/0" }],
            }),
            serde_json::to_string(&HttpRouteSpec {
                parent_refs: vec![ParentRef {
                    group: GROUP,
                    kind: "Server",
                    name: "web-http",
                    port: None,
                }],
                rules: vec![HttpRouteRule {
                    matches: vec![HttpRouteMatch {
                        method: Some("GET".into()),
                        path: Some(PathMatch {
                            kind: MatchType::Exact,
                            value: "/".into(),
                        }),
                        ..HttpRouteMatch::default()
                    }],
                    ..HttpRouteRule::default()
                }],
            }),
            serde_json::to_string(&HttpLocalRateLimitPolicySpec {
                target_ref: r(),
                total: Limit {
                    requests_per_second: 100,
                },
            }),
        ];
        for t in texts {
            let t = t.unwrap();
            assert!(sorted_keys(&t), "{t}");
        }
        assert!(!sorted_keys(r#"{"b":1,"a":2}"#));
        assert!(!sorted_keys(r#"{"a":[{"d":1,"c":2}]}"#));
    }
}
