//! Reading route and Service objects' JSON, with the defaults their CRD
//! schemas (and the core `v1 Service` schema) give a stored object.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    Backend, Filter, GrpcMatch, HttpMatch, Match, ParentRef, PathMatch, PathModifier, RedirectSpec,
    RetrySpec, Route, RouteKind, Rule, ServiceInfo, ValueMatch, GATEWAY_GROUP, LINKERD_GROUP,
};
use crate::model::{object_name, parse_duration_ms, KubeService, ModelError, Problem, ServicePort};
use crate::object::MeshObject;

type R<T> = Result<T, Problem>;

/// Every HTTPRoute and GRPCRoute of an API group in `groups` (Linkerd has
/// no GRPCRoute of its own: only `gateway.networking.k8s.io`'s).
pub(crate) fn routes<'a>(
    objects: &'a [MeshObject],
    groups: &[&str],
) -> Result<Vec<Route<'a>>, ModelError> {
    let mut out = Vec::new();
    for o in objects {
        let kind = match o.kind {
            "HTTPRoute" => RouteKind::Http,
            "GRPCRoute" => RouteKind::Grpc,
            _ => continue,
        };
        let group = o.group();
        if !groups.contains(&group) || (kind == RouteKind::Grpc && group != GATEWAY_GROUP) {
            continue;
        }
        out.push(route(o, kind).map_err(|p| p.of(object_name(o)))?);
    }
    Ok(out)
}

fn route(o: &MeshObject, kind: RouteKind) -> R<Route<'_>> {
    let v = o.body.value();
    let ns = o.namespace.clone().unwrap_or_default();
    // `ParentReference.Group` defaults to the route's own API group in
    // both CRDs (Gateway API: "gateway.networking.k8s.io is inferred";
    // Linkerd's CRD: `default: policy.linkerd.io`).
    let parent_group = match o.group() {
        LINKERD_GROUP => LINKERD_GROUP,
        _ => GATEWAY_GROUP,
    };
    let null = Value::Null;
    let spec = v.get("spec").unwrap_or(&null);
    let parents = arr(spec, "parentRefs")?
        .iter()
        .map(|p| parent(p, parent_group, &ns))
        .collect::<R<_>>()?;
    let hostnames = arr(spec, "hostnames")?
        .iter()
        .map(|h| {
            h.as_str()
                .map(str::to_owned)
                .ok_or_else(|| Problem::invalid("a hostname is not a string"))
        })
        .collect::<R<_>>()?;
    let mut rules: Vec<Rule> = arr(spec, "rules")?
        .iter()
        .enumerate()
        .map(|(i, r)| rule(r, kind, &ns).map_err(|e| e.at(format!("rules[{i}]"))))
        .collect::<R<_>>()?;
    if rules.is_empty() && kind == RouteKind::Http {
        // `HTTPRouteSpec.Rules` default: one rule matching `PathPrefix /`.
        rules.push(rule(&Value::Object(Default::default()), kind, &ns)?);
    }
    let meta = v.get("metadata").unwrap_or(&null);
    Ok(Route {
        object: o,
        kind,
        namespace: ns,
        name: o.name.clone(),
        annotations: string_map(meta, "annotations")?,
        created: string(meta, "creationTimestamp")?.map(str::to_owned),
        parents,
        hostnames,
        rules,
    })
}

fn parent(p: &Value, default_group: &str, ns: &str) -> R<ParentRef> {
    Ok(ParentRef {
        group: string(p, "group")?.unwrap_or(default_group).to_owned(),
        kind: string(p, "kind")?.unwrap_or("Gateway").to_owned(),
        namespace: string(p, "namespace")?
            .filter(|s| !s.is_empty())
            .unwrap_or(ns)
            .to_owned(),
        name: string(p, "name")?
            .ok_or_else(|| Problem::invalid("a parentRef has no name"))?
            .to_owned(),
        port: uint(p, "port")?,
        section: string(p, "sectionName")?.map(str::to_owned),
    })
}

fn rule(r: &Value, kind: RouteKind, ns: &str) -> R<Rule> {
    let matches = match kind {
        // `HTTPRouteRule.Matches`: "If no matches are specified, the
        // default is a prefix path match on "/"".
        RouteKind::Http => {
            let ms: Vec<Match> = arr(r, "matches")?
                .iter()
                .map(|m| http_match(m).map(Match::Http))
                .collect::<R<_>>()?;
            if ms.is_empty() {
                vec![Match::Http(HttpMatch::default())]
            } else {
                ms
            }
        }
        // `GRPCRouteRule.Matches`: none matches every gRPC request.
        RouteKind::Grpc => arr(r, "matches")?
            .iter()
            .map(|m| grpc_match(m).map(Match::Grpc))
            .collect::<R<_>>()?,
    };
    let null = Value::Null;
    let timeouts = r.get("timeouts").unwrap_or(&null);
    let retry = match r.get("retry").filter(|x| !x.is_null()) {
        None => None,
        Some(x) => Some(RetrySpec {
            attempts: uint(x, "attempts")?,
            codes: arr(x, "codes")?
                .iter()
                .map(|c| {
                    c.as_u64()
                        .and_then(|c| u32::try_from(c).ok())
                        .ok_or_else(|| {
                            Problem::invalid(format!("retry code {c} is not a status code"))
                        })
                })
                .collect::<R<_>>()?,
        }),
    };
    Ok(Rule {
        matches,
        filters: arr(r, "filters")?
            .iter()
            .map(|f| filter(f, ns))
            .collect::<R<_>>()?,
        backends: arr(r, "backendRefs")?
            .iter()
            .map(|b| backend(b, ns))
            .collect::<R<_>>()?,
        request_timeout: duration(timeouts, "request")?,
        backend_request_timeout: duration(timeouts, "backendRequest")?,
        retry,
    })
}

fn http_match(m: &Value) -> R<HttpMatch> {
    let path = match m.get("path").filter(|p| !p.is_null()) {
        None => PathMatch::default(),
        Some(p) => {
            let value = string(p, "value")?.unwrap_or("/").to_owned();
            match string(p, "type")?.unwrap_or("PathPrefix") {
                "Exact" => PathMatch::Exact(value),
                "PathPrefix" => PathMatch::Prefix(value),
                "RegularExpression" => PathMatch::Regex(value),
                t => return Err(Problem::invalid(format!("unknown path match type `{t}`"))),
            }
        }
    };
    Ok(HttpMatch {
        path,
        method: string(m, "method")?.map(str::to_owned),
        headers: values(m, "headers", true)?,
        query: values(m, "queryParams", false)?,
    })
}

/// Header (names lower-cased: matching is case-insensitive) or query
/// matches; `type` defaults to `Exact`.
fn values(m: &Value, key: &str, lower: bool) -> R<Vec<ValueMatch>> {
    arr(m, key)?
        .iter()
        .map(|h| {
            let name = string(h, "name")?
                .ok_or_else(|| Problem::invalid(format!("a {key} match has no name")))?;
            let value = string(h, "value")?
                .ok_or_else(|| Problem::invalid(format!("a {key} match has no value")))?;
            let regex = match string(h, "type")?.unwrap_or("Exact") {
                "Exact" => false,
                "RegularExpression" => true,
                t => return Err(Problem::invalid(format!("unknown {key} match type `{t}`"))),
            };
            Ok(ValueMatch {
                name: match lower {
                    true => name.to_ascii_lowercase(),
                    false => name.to_owned(),
                },
                regex,
                value: value.to_owned(),
            })
        })
        .collect()
}

fn grpc_match(m: &Value) -> R<GrpcMatch> {
    let mut out = GrpcMatch {
        headers: values(m, "headers", true)?,
        ..GrpcMatch::default()
    };
    if let Some(x) = m.get("method").filter(|x| !x.is_null()) {
        let part = |k| -> R<Option<String>> {
            Ok(string(x, k)?.filter(|s| !s.is_empty()).map(str::to_owned))
        };
        out.service = part("service")?;
        out.method = part("method")?;
        out.regex = match string(x, "type")?.unwrap_or("Exact") {
            "Exact" => false,
            "RegularExpression" => true,
            t => {
                return Err(Problem::invalid(format!(
                    "unknown gRPC method match type `{t}`"
                )))
            }
        };
    }
    Ok(out)
}

fn filter(f: &Value, ns: &str) -> R<Filter> {
    let t = string(f, "type")?.ok_or_else(|| Problem::invalid("a filter has no type"))?;
    let body = |k: &str| {
        f.get(k)
            .filter(|x| !x.is_null())
            .ok_or_else(|| Problem::invalid(format!("{t} filter without `{k}`")))
    };
    Ok(match t {
        "RequestRedirect" => {
            let r = body("requestRedirect")?;
            let set = |k| r.get(k).is_some_and(|x| !x.is_null());
            Filter::Redirect(RedirectSpec {
                // `HTTPRequestRedirectFilter.StatusCode`: default 302.
                status: uint(r, "statusCode")?.unwrap_or(302),
                host: string(r, "hostname")?.map(str::to_owned),
                path: modifier(r)?,
                scheme_or_port: set("scheme") || set("port"),
            })
        }
        "URLRewrite" => {
            let r = body("urlRewrite")?;
            Filter::Rewrite {
                host: string(r, "hostname")?.map(str::to_owned),
                path: modifier(r)?,
            }
        }
        "RequestMirror" => {
            let r = body("requestMirror")?;
            let b = r
                .get("backendRef")
                .ok_or_else(|| Problem::invalid("RequestMirror without `backendRef`"))?;
            Filter::Mirror {
                backend: backend(b, ns)?,
                percent: mirror_percent(r)?,
            }
        }
        "RequestHeaderModifier" => Filter::RequestHeaders,
        "ResponseHeaderModifier" => {
            let r = body("responseHeaderModifier")?;
            let find = |op: &str| -> R<Option<String>> {
                for h in arr(r, op)? {
                    let name = string(h, "name")?
                        .ok_or_else(|| Problem::invalid("a header without `name`"))?;
                    if name.eq_ignore_ascii_case("set-cookie") {
                        return Ok(string(h, "value")?.map(str::to_owned));
                    }
                }
                Ok(None)
            };
            Filter::ResponseHeaders {
                set_cookie: find("set")?.or(find("add")?),
            }
        }
        _ => Filter::Other,
    })
}

fn modifier(r: &Value) -> R<Option<PathModifier>> {
    let Some(p) = r.get("path").filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    let value = |k| -> R<String> {
        Ok(string(p, k)?
            .ok_or_else(|| Problem::invalid(format!("path modifier without `{k}`")))?
            .to_owned())
    };
    match string(p, "type")? {
        Some("ReplaceFullPath") => Ok(Some(PathModifier::Full(value("replaceFullPath")?))),
        Some("ReplacePrefixMatch") => Ok(Some(PathModifier::Prefix(value("replacePrefixMatch")?))),
        t => Err(Problem::invalid(format!(
            "unknown path modifier type {t:?}"
        ))),
    }
}

/// `HTTPRequestMirrorFilter`: `percent`, or `fraction` (denominator 100 by
/// default); neither: 100%.
fn mirror_percent(r: &Value) -> R<f64> {
    if let Some(p) = uint(r, "percent")? {
        return Ok(f64::from(p));
    }
    if let Some(fr) = r.get("fraction").filter(|x| !x.is_null()) {
        let n = uint(fr, "numerator")?
            .ok_or_else(|| Problem::invalid("a mirror fraction has no numerator"))?;
        let d = uint(fr, "denominator")?.unwrap_or(100);
        if d == 0 {
            return Err(Problem::invalid("a mirror fraction's denominator is 0"));
        }
        return Ok(f64::from(n) * 100.0 / f64::from(d));
    }
    Ok(100.0)
}

/// `BackendObjectReference`: group `""` (core) and kind `Service` by
/// default, the route's namespace, weight 1 (`BackendRef.Weight`).
fn backend(b: &Value, ns: &str) -> R<Backend> {
    Ok(Backend {
        group: string(b, "group")?.unwrap_or("").to_owned(),
        kind: string(b, "kind")?.unwrap_or("Service").to_owned(),
        namespace: string(b, "namespace")?
            .filter(|s| !s.is_empty())
            .unwrap_or(ns)
            .to_owned(),
        name: string(b, "name")?
            .ok_or_else(|| Problem::invalid("a backendRef has no name"))?
            .to_owned(),
        port: uint(b, "port")?,
        weight: uint(b, "weight")?.unwrap_or(1),
        filters: arr(b, "filters")?
            .iter()
            .map(|f| filter(f, ns))
            .collect::<R<_>>()?,
    })
}

/// A `v1 Service` object. A named `targetPort` cannot be resolved (the
/// cluster does not know container port names): the port stands for it.
pub(super) fn service(o: &MeshObject) -> R<ServiceInfo> {
    let v = o.body.value();
    let null = Value::Null;
    let spec = v.get("spec").unwrap_or(&null);
    let ports = arr(spec, "ports")?
        .iter()
        .map(|p| {
            let port =
                uint(p, "port")?.ok_or_else(|| Problem::invalid("a Service port has no `port`"))?;
            Ok(ServicePort {
                name: string(p, "name")?.unwrap_or("").to_owned(),
                port,
                target_port: match p.get("targetPort") {
                    Some(Value::Number(_)) => uint(p, "targetPort")?.unwrap_or(port),
                    _ => port,
                },
                protocol: string(p, "appProtocol")?.unwrap_or("tcp").to_owned(),
            })
        })
        .collect::<R<_>>()?;
    Ok(ServiceInfo {
        svc: KubeService {
            namespace: o.namespace.clone().unwrap_or_default(),
            name: o.name.clone(),
            selector: string_map(spec, "selector")?,
            ports,
        },
        annotations: string_map(v.get("metadata").unwrap_or(&null), "annotations")?,
    })
}

pub(crate) fn string<'v>(v: &'v Value, k: &str) -> R<Option<&'v str>> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(x) => Err(Problem::invalid(format!("`{k}` is not a string: {x}"))),
    }
}

pub(crate) fn uint(v: &Value, k: &str) -> R<Option<u32>> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| Problem::invalid(format!("`{k}` is not a non-negative integer: {x}"))),
    }
}

pub(crate) fn arr<'v>(v: &'v Value, k: &str) -> R<&'v [Value]> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(x) => Err(Problem::invalid(format!("`{k}` is not a list: {x}"))),
    }
}

pub(crate) fn string_map(v: &Value, k: &str) -> R<BTreeMap<String, String>> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(name, x)| {
                x.as_str()
                    .map(|s| (name.clone(), s.to_owned()))
                    .ok_or_else(|| Problem::invalid(format!("`{k}.{name}` is not a string")))
            })
            .collect(),
        Some(x) => Err(Problem::invalid(format!("`{k}` is not a map: {x}"))),
    }
}

/// A Gateway API Duration (GEP-2257: `1h`, `10s`, `2500ms`, `1h30m`).
fn duration(v: &Value, k: &str) -> R<Option<u64>> {
    string(v, k)?
        .map(|s| {
            parse_duration_ms(s)
                .ok_or_else(|| Problem::invalid(format!("`{k}` is not a duration: {s}")))
        })
        .transpose()
}
