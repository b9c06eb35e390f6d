//! `gateway.networking.k8s.io`: Gateway API routes in GAMMA (mesh) mode —
//! an `HTTPRoute` or `GRPCRoute` parented to a Service's port, whose rules
//! match requests (path, method, headers, query parameters; a gRPC
//! service and method), rewrite, redirect or mirror them, and send them to
//! weighted backends within timeouts and retries. Linkerd's
//! `policy.linkerd.io` HTTPRoute has the same shape and reuses these
//! types, as does its inbound GRPCRoute (on a `Server`). Field names and
//! meanings as Gateway API's CRDs (v1; `retry` from the experimental
//! channel) declare them; fields in the order of their JSON names (see
//! the module above).

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// The API group of the objects here.
pub(crate) const GROUP: &str = "gateway.networking.k8s.io";

/// `HTTPRoute` or `GRPCRoute` (v1): the object a route attaches to, and
/// its rules ([`HttpRouteRule`], [`GrpcRouteRule`]).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RouteSpec<'a, R> {
    pub parent_refs: Vec<ParentRef<'a>>,
    pub rules: Vec<R>,
}

/// The object a route attaches to: a Service's port (GAMMA), or a
/// Linkerd `Server` (every port it covers).
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct ParentRef<'a> {
    /// `""` (Gateway API's core group), `core` (Linkerd's spelling),
    /// `policy.linkerd.io`.
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// A rule: requests any of `matches` matches (no `matches`: every
/// request) go to `backendRefs` through `filters`. A redirect has filters
/// and no backends. The routes' rules differ in their matches only, and in
/// what GRPCRoute lacks: `retry` and `timeouts`, never set on one.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RouteRule<M> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<M>,
    /// Experimental channel only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

// By hand: derived, it would ask `M: Default` for an empty list.
impl<M> Default for RouteRule<M> {
    fn default() -> Self {
        RouteRule {
            backend_refs: Vec::new(),
            filters: Vec::new(),
            matches: Vec::new(),
            retry: None,
            timeouts: None,
        }
    }
}

pub(crate) type HttpRouteRule = RouteRule<HttpRouteMatch>;
pub(crate) type GrpcRouteRule = RouteRule<GrpcRouteMatch>;

/// An HTTP request's conditions, all of which must hold.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpRouteMatch {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
}

/// A gRPC call's conditions: `{}` matches every call.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct GrpcRouteMatch {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<GrpcMethodMatch>,
}

/// A gRPC service, and one of its methods or (`None`) every one.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct GrpcMethodMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub service: String,
    #[serde(rename = "type")]
    pub kind: MatchType,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct PathMatch {
    #[serde(rename = "type")]
    pub kind: MatchType,
    pub value: String,
}

/// A named header's or query parameter's value.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ValueMatch {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MatchType,
    pub value: String,
}

/// How a match's `value` is compared (`PathPrefix` for paths only: whole
/// segments).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum MatchType {
    Exact,
    PathPrefix,
    RegularExpression,
}

/// A Service the rule sends to; `weight` its share among the rule's
/// backends (absent: the rule's only backend, or a mirror's).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct BackendRef {
    /// Applied only to requests sent to this backend.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    pub name: String,
    /// Another namespace's, admitted by a ReferenceGrant there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub port: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl BackendRef {
    /// The Service `name` of this namespace, on `port`, unweighted.
    pub fn service(name: String, port: u32) -> Self {
        BackendRef {
            filters: Vec::new(),
            name,
            namespace: None,
            port,
            weight: None,
        }
    }
}

/// A filter: `{"type": "<Kind>", "<kind>": {…}}`, its settings under the
/// field its type names.
#[derive(Clone, Debug)]
pub(crate) enum Filter {
    RequestMirror(RequestMirror),
    RequestRedirect(RequestRedirect),
    ResponseHeaderModifier(HeaderModifier),
    UrlRewrite(UrlRewrite),
}

// By hand: serde's internally tagged enums write `type` first, and
// `requestMirror`, `requestRedirect` and `responseHeaderModifier` sort
// before it (`urlRewrite` after).
impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Filter::RequestMirror(v) => tagged(s, "RequestMirror", "requestMirror", v),
            Filter::RequestRedirect(v) => tagged(s, "RequestRedirect", "requestRedirect", v),
            Filter::ResponseHeaderModifier(v) => {
                tagged(s, "ResponseHeaderModifier", "responseHeaderModifier", v)
            }
            Filter::UrlRewrite(v) => tagged(s, "URLRewrite", "urlRewrite", v),
        }
    }
}

/// `{"type": kind, field: value}`, its two keys in order.
fn tagged<S: Serializer>(
    s: S,
    kind: &str,
    field: &str,
    value: &impl Serialize,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(2))?;
    if field < "type" {
        m.serialize_entry(field, value)?;
        m.serialize_entry("type", kind)?;
    } else {
        m.serialize_entry("type", kind)?;
        m.serialize_entry(field, value)?;
    }
    m.end()
}

/// Copies of the requests (all, `percent` or `fraction` of them) sent to
/// `backendRef`, their answers dropped.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestMirror {
    pub backend_ref: BackendRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Fraction {
    pub denominator: u32,
    pub numerator: u32,
}

/// Answers the request with a redirect to the same URL but for the
/// fields set.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestRedirect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308.
    pub status_code: u32,
}

/// Rewrites the request's host, path or both before it is sent on.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct UrlRewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// A new path: the whole of it, or the part a `PathPrefix` match matched.
#[derive(Clone, Debug)]
pub(crate) enum PathModifier {
    ReplaceFullPath(String),
    ReplacePrefixMatch(String),
}

// By hand, as `Filter`: both fields sort before `type`.
impl Serialize for PathModifier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PathModifier::ReplaceFullPath(p) => tagged(s, "ReplaceFullPath", "replaceFullPath", p),
            PathModifier::ReplacePrefixMatch(p) => {
                tagged(s, "ReplacePrefixMatch", "replacePrefixMatch", p)
            }
        }
    }
}

/// Headers added to the responses.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct HeaderModifier {
    pub add: Vec<Header>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Header {
    pub name: &'static str,
    pub value: String,
}

/// Retries after the first try, on the status codes listed.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Retry {
    pub attempts: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<u32>,
}

/// Gateway API durations (`1h`, `30s`, `500ms`): the whole request's, and
/// each try's.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Timeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sorted_keys;

    fn value(kind: MatchType) -> ValueMatch {
        ValueMatch {
            name: "x-user".into(),
            kind,
            value: "a".into(),
        }
    }

    fn backend(filters: Vec<Filter>) -> BackendRef {
        BackendRef {
            filters,
            name: "web-v1".into(),
            namespace: Some("other".into()),
            port: 80,
            weight: Some(90),
        }
    }

    /// Every struct and every filter, every optional field set: serde
    /// writes the keys sorted, so the body is the canonical text.
    #[test]
    fn every_route_serialises_with_sorted_keys() {
        let parent = ParentRef {
            group: "",
            kind: "Service",
            name: "web",
            port: Some(80),
        };
        let filters = vec![
            Filter::RequestMirror(RequestMirror {
                backend_ref: backend(vec![]),
                fraction: Some(Fraction {
                    denominator: 100_000,
                    numerator: 12_500,
                }),
                percent: Some(12),
            }),
            Filter::RequestRedirect(RequestRedirect {
                hostname: Some("example.com".into()),
                path: Some(PathModifier::ReplaceFullPath("/".into())),
                status_code: 301,
            }),
            Filter::ResponseHeaderModifier(HeaderModifier {
                add: vec![Header {
                    name: "Set-Cookie",
                    value: "canary=1".into(),
                }],
            }),
            Filter::UrlRewrite(UrlRewrite {
                hostname: Some("example.com".into()),
                path: Some(PathModifier::ReplacePrefixMatch("/v2".into())),
            }),
        ];
        let http = RouteSpec {
            parent_refs: vec![parent],
            rules: vec![HttpRouteRule {
                backend_refs: vec![backend(filters.clone())],
                filters: filters.clone(),
                matches: vec![HttpRouteMatch {
                    headers: vec![value(MatchType::Exact)],
                    method: Some("GET".into()),
                    path: Some(PathMatch {
                        kind: MatchType::PathPrefix,
                        value: "/api".into(),
                    }),
                    query_params: vec![value(MatchType::RegularExpression)],
                }],
                retry: Some(Retry {
                    attempts: 3,
                    codes: vec![503],
                }),
                timeouts: Some(Timeouts {
                    backend_request: Some("1s".into()),
                    request: Some("3s".into()),
                }),
            }],
        };
        let grpc = RouteSpec {
            parent_refs: vec![parent],
            rules: vec![GrpcRouteRule {
                backend_refs: vec![backend(vec![])],
                filters,
                matches: vec![GrpcRouteMatch {
                    headers: vec![value(MatchType::Exact)],
                    method: Some(GrpcMethodMatch {
                        method: Some("Get".into()),
                        service: "pkg.Web".into(),
                        kind: MatchType::Exact,
                    }),
                }],
                ..GrpcRouteRule::default()
            }],
        };
        for t in [serde_json::to_string(&http), serde_json::to_string(&grpc)] {
            let t = t.unwrap();
            assert!(sorted_keys(&t), "{t}");
        }
    }

    #[test]
    fn a_filter_is_its_type_and_the_field_it_names() {
        let t = serde_json::to_string(&Filter::UrlRewrite(UrlRewrite {
            hostname: None,
            path: Some(PathModifier::ReplacePrefixMatch("/v2".into())),
        }))
        .unwrap();
        assert_eq!(
            t,
            r#"{"type":"URLRewrite","urlRewrite":{"path":{"replacePrefixMatch":"/v2","type":"ReplacePrefixMatch"}}}"#
        );
    }
}
