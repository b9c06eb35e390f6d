//! Outbound routing, modelled on Linkerd's "Dynamic request routing" task
//! (header-based routing to a second backend) and the timeout and retry
//! references' examples.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::model::httproute::tests::{get, shop, version_services};
use crate::model::testing::obj;
use crate::model::Retries;

const POLICY: &str = "policy.linkerd.io/v1beta3";
const GATEWAY: &str = "gateway.networking.k8s.io/v1";

fn route(api: &'static str, name: &str, spec: Value, ann: &[(&str, &str)]) -> MeshObject {
    obj(api, "HTTPRoute", "shop", name, spec, ann)
}

fn parent() -> Value {
    json!([{"group": "core", "kind": "Service", "name": "web", "port": 80}])
}

fn to(v: &str) -> Value {
    json!([{"name": format!("web-{v}"), "port": 80}])
}

/// The parent Service `web` as an object, annotated.
fn annotated_web(ann: &[(&str, &str)]) -> MeshObject {
    let spec = json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
    obj("v1", "Service", "shop", "web", spec, ann)
}

fn answer(objects: &[MeshObject], r: &Request) -> Routing {
    let mut all = version_services();
    all.extend(objects.iter().cloned());
    Linkerd
        .answer(&all, &shop(), r)
        .expect("answers")
        .routing
        .expect("routes")
}

fn forward(objects: &[MeshObject], r: &Request) -> Forward {
    match answer(objects, r) {
        Routing::Forward(f) => f,
        other => panic!("not forwarded: {other:?}"),
    }
}

fn only(f: &Forward) -> &str {
    assert_eq!(f.pods.len(), 1, "{:?}", f.pods);
    f.pods.keys().next().map(String::as_str).unwrap_or_default()
}

fn header_routing() -> MeshObject {
    let spec = json!({"parentRefs": parent(), "rules": [
        {"matches": [{"headers": [{"name": "x-faces-user", "value": "testuser"}]}], "backendRefs": to("v2")},
        {"backendRefs": to("v1")}]});
    route(POLICY, "web-a-b", spec, &[])
}

#[test]
fn header_based_routing_as_the_dynamic_routing_task_sets_it_up() {
    let r = [header_routing()];
    assert_eq!(only(&forward(&r, &get("/"))), "shop/web/v1");
    let mut test = get("/");
    test.headers
        .insert("x-faces-user".into(), "testuser".into());
    let f = forward(&r, &test);
    assert_eq!(
        (only(&f), f.rule.as_str()),
        ("shop/web/v2", "HTTPRoute shop/web-a-b rule 0")
    );
}

#[test]
fn an_unmeshed_client_is_not_routed() {
    let mut r = get("/");
    r.headers.insert("x-faces-user".into(), "testuser".into());
    r.source = Source::Unauthenticated {
        namespace: Some("shop".into()),
    };
    let f = forward(&[header_routing()], &r);
    assert_eq!(
        f.pods,
        BTreeMap::from([("shop/web/v1".into(), 50.0), ("shop/web/v2".into(), 50.0)])
    );
}

#[test]
fn the_longest_path_wins_and_exact_gets_no_extra_weight() {
    let spec = json!({"parentRefs": parent(), "rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": to("v1")},
        {"matches": [{"path": {"type": "Exact", "value": "/api"}}], "backendRefs": to("v2")},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/v2/"}}], "backendRefs": to("v2")}]});
    let r = [route(POLICY, "web", spec, &[])];
    // Same length: the first rule keeps it (Gateway API would pick Exact).
    assert_eq!(forward(&r, &get("/api")).rule, "HTTPRoute shop/web rule 0");
    assert_eq!(
        forward(&r, &get("/api/v2/x")).rule,
        "HTTPRoute shop/web rule 2"
    );
    assert_eq!(answer(&r, &get("/apis")), Routing::NoRoute);
}

#[test]
fn a_rule_without_backends_goes_to_the_parent_service() {
    let spec = json!({"parentRefs": parent(), "rules": [{"matches": [{"path": {"value": "/"}}]}]});
    assert_eq!(
        forward(&[route(POLICY, "web", spec, &[])], &get("/x"))
            .pods
            .len(),
        2
    );
}

#[test]
fn a_route_with_an_unsupported_filter_is_not_served() {
    let spec = json!({"parentRefs": parent(), "rules": [{"backendRefs": to("v2"),
        "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}]}]});
    let f = forward(&[route(GATEWAY, "web", spec, &[])], &get("/"));
    assert_eq!(f.rule, "Service shop/web (default route)");
}

#[test]
fn a_parent_without_the_core_group_does_not_attach() {
    let spec = json!({"parentRefs": [{"kind": "Service", "name": "web", "port": 80}], "rules": [{"backendRefs": to("v2")}]});
    assert_eq!(
        forward(&[route(POLICY, "web", spec, &[])], &get("/"))
            .pods
            .len(),
        2
    );
}

#[test]
fn timeouts_come_from_the_route_annotation_then_the_field_then_the_service() {
    let svc = annotated_web(&[("timeout.linkerd.io/request", "5s")]);
    let spec = |t: &str| json!({"parentRefs": parent(), "rules": [{"backendRefs": to("v1"), "timeouts": {"request": t}}]});
    let field = route(POLICY, "web", spec("10s"), &[]);
    assert_eq!(
        forward(&[svc.clone(), field], &get("/")).timeout_ms,
        Some(10_000)
    );
    let annotated = route(
        POLICY,
        "web",
        spec("10s"),
        &[("timeout.linkerd.io/request", "2s")],
    );
    assert_eq!(
        forward(&[svc.clone(), annotated], &get("/")).timeout_ms,
        Some(2000)
    );
    // A Gateway API route's `timeouts` is not read.
    let gateway = route(GATEWAY, "web", spec("10s"), &[]);
    assert_eq!(
        forward(&[svc.clone(), gateway], &get("/")).timeout_ms,
        Some(5000)
    );
    // Any route timeout annotation replaces all of the Service's.
    let response = route(
        POLICY,
        "web",
        spec("0s"),
        &[("timeout.linkerd.io/response", "1s")],
    );
    assert_eq!(forward(&[svc, response], &get("/")).timeout_ms, Some(1000));
}

#[test]
fn route_retries_override_the_services() {
    let svc = annotated_web(&[
        ("retry.linkerd.io/http", "5xx"),
        ("retry.linkerd.io/limit", "2"),
    ]);
    let spec = json!({"parentRefs": parent(), "rules": [{"backendRefs": to("v1")}]});
    let plain = route(POLICY, "web", spec.clone(), &[]);
    let f = forward(&[svc.clone(), plain], &get("/"));
    assert_eq!(
        f.retries.map(|r| (r.attempts, r.on)),
        Some((2, vec!["5xx".into()]))
    );
    let own = route(
        POLICY,
        "web",
        spec.clone(),
        &[
            ("retry.linkerd.io/http", "gateway-error"),
            ("retry.linkerd.io/timeout", "300ms"),
        ],
    );
    let want = Retries {
        attempts: 1,
        per_try_timeout_ms: Some(300),
        on: vec!["gateway-error".into()],
    };
    assert_eq!(forward(&[svc.clone(), own], &get("/")).retries, Some(want));
    // gRPC conditions are not read from an HTTPRoute: a limit alone
    // retries nothing.
    let grpc = route(
        POLICY,
        "web",
        spec.clone(),
        &[
            ("retry.linkerd.io/grpc", "unavailable"),
            ("retry.linkerd.io/limit", "3"),
        ],
    );
    assert_eq!(forward(&[svc.clone(), grpc], &get("/")).retries, None);
    // An invalid condition fails the route: the default route serves.
    let bad = route(
        POLICY,
        "web",
        spec,
        &[("retry.linkerd.io/http", "5xx, reset")],
    );
    assert_eq!(
        forward(&[svc, bad], &get("/")).rule,
        "Service shop/web (default route)"
    );
}

#[test]
fn redirects_as_the_proxy_applies_them() {
    let spec = json!({"parentRefs": parent(), "rules": [
        {"matches": [{"path": {"value": "/foo"}}], "filters": [{"type": "RequestRedirect",
            "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/xyz/"}}}]},
        {"matches": [{"path": {"type": "Exact", "value": "/same"}}], "backendRefs": to("v2"),
         "filters": [{"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/same"}}}]}]});
    let r = [route(POLICY, "web", spec, &[])];
    let want = Redirect {
        code: 302,
        path: Some("/xyz//bar".into()),
        host: None,
    };
    assert_eq!(answer(&r, &get("/foo/bar")), Routing::Redirect(want));
    // A redirect to the request's own location is ignored.
    assert_eq!(only(&forward(&r, &get("/same"))), "shop/web/v2");
}

#[test]
fn consumer_routes_join_the_producer_routes_for_their_namespace() {
    let consumer = obj(
        POLICY,
        "HTTPRoute",
        "client",
        "web",
        json!({"parentRefs": [{"group": "core", "kind": "Service", "name": "web", "namespace": "shop", "port": 80}],
               "rules": [{"matches": [{"path": {"value": "/beta"}}], "backendRefs": [{"name": "web-v2", "namespace": "shop", "port": 80}]}]}),
        &[],
    );
    let r = [header_routing(), consumer];
    assert_eq!(only(&forward(&r, &get("/beta"))), "shop/web/v2");
    assert_eq!(only(&forward(&r, &get("/"))), "shop/web/v1");
    let mut elsewhere = get("/beta");
    elsewhere.source = Source::Workload {
        namespace: "other".into(),
        service_account: "x".into(),
        labels: BTreeMap::new(),
    };
    assert_eq!(only(&forward(&r, &elsewhere)), "shop/web/v1");
}

#[test]
fn grpc_routes_need_post_and_read_grpc_retries() {
    let spec = json!({"parentRefs": [{"group": "core", "kind": "Service", "name": "search", "port": 9090}],
        "rules": [{"matches": [{"method": {"service": "shop.Search"}}], "backendRefs": [{"name": "search", "port": 9090}]}]});
    let g = obj(
        GATEWAY,
        "GRPCRoute",
        "shop",
        "search",
        spec,
        &[("retry.linkerd.io/grpc", "unavailable")],
    );
    let mut r = get("/shop.Search/Find");
    r.service = "search".into();
    r.port = 9090;
    assert_eq!(answer(std::slice::from_ref(&g), &r), Routing::NoRoute);
    r.method = "POST".into();
    let f = forward(&[g], &r);
    assert_eq!(f.retries.map(|x| x.on), Some(vec!["unavailable".into()]));
}

#[test]
fn unknown_backends_answer_errors_for_their_share() {
    let spec = json!({"parentRefs": parent(), "rules": [{"backendRefs": [
        {"name": "web-v1", "port": 80}, {"name": "gone", "port": 80}]}]});
    let f = forward(&[route(POLICY, "web", spec, &[])], &get("/"));
    assert_eq!(
        f.pods,
        BTreeMap::from([
            ("shop/web/v1".into(), 50.0),
            (crate::model::NO_POD.into(), 50.0)
        ])
    );
}

#[test]
fn the_proxys_prefix_replacement() {
    assert_eq!(linkerd_prefix("/foo", "/foo/bar", "/xyz"), "/xyz/bar");
    assert_eq!(linkerd_prefix("/foo/", "/foo/bar", "/xyz"), "/xyz/bar");
    assert_eq!(linkerd_prefix("/", "/bar", "/xyz"), "/xyz/bar");
    assert_eq!(linkerd_prefix("/foo", "/foo", "/xyz"), "/xyz");
}
