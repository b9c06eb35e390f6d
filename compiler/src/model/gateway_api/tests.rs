//! GAMMA routes modelled on the Gateway API mesh conformance tests
//! (`MeshSplit`, `MeshPorts`, `MeshFrontend`…) and the spec's examples.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::model::httproute::tests::{get, shop, version_services};
use crate::model::testing::obj;
use crate::model::NO_POD;

fn route(name: &str, spec: Value) -> MeshObject {
    obj(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "shop",
        name,
        spec,
        &[],
    )
}

fn parent() -> Value {
    json!([{"group": "", "kind": "Service", "name": "web", "port": 80}])
}

fn to(v: &str) -> Value {
    json!([{"name": format!("web-{v}"), "port": 80}])
}

fn answer(objects: &[MeshObject], r: &Request) -> Routing {
    let mut all = version_services();
    all.extend(objects.iter().cloned());
    GatewayApi
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

fn pods(f: &Forward) -> Vec<(&str, f64)> {
    f.pods.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

#[test]
fn without_a_route_the_service_reaches_its_own_pods() {
    let f = forward(&[], &get("/"));
    assert_eq!(pods(&f), [("shop/web/v1", 50.0), ("shop/web/v2", 50.0)]);
    assert_eq!(f.timeout_ms, None);
}

#[test]
fn weights_split_between_backends() {
    let spec = json!({"parentRefs": parent(), "rules": [{"backendRefs": [
        {"name": "web-v1", "port": 80, "weight": 80}, {"name": "web-v2", "port": 80, "weight": 20}]}]});
    let f = forward(&[route("web", spec)], &get("/"));
    assert_eq!(pods(&f), [("shop/web/v1", 80.0), ("shop/web/v2", 20.0)]);
    assert_eq!(f.rule, "HTTPRoute shop/web rule 0");
}

#[test]
fn a_backend_response_header_filter_sets_a_cookie_on_its_answers_only() {
    // `HTTPBackendRef.filters` over the rule's `filters`.
    let set = |name: &str, value: &str| {
        json!([{"type": "ResponseHeaderModifier",
                "responseHeaderModifier": {"add": [{"name": name, "value": value}]}}])
    };
    let spec = json!({"parentRefs": parent(), "rules": [{
        "filters": set("Set-Cookie", "all=1"),
        "backendRefs": [
            {"name": "web-v1", "port": 80, "weight": 80},
            {"name": "web-v2", "port": 80, "weight": 20, "filters": set("set-cookie", "canary=v2")}]}]});
    let f = forward(&[route("web", spec)], &get("/"));
    let want: BTreeMap<String, String> = [
        ("shop/web/v1".to_owned(), "all=1".to_owned()),
        ("shop/web/v2".to_owned(), "canary=v2".to_owned()),
    ]
    .into();
    assert_eq!(f.set_cookie, want);
}

#[test]
fn an_unknown_backend_takes_its_share_as_errors() {
    let spec = json!({"parentRefs": parent(), "rules": [{"backendRefs": [
        {"name": "web-v1", "port": 80}, {"name": "gone", "port": 80},
        {"name": "web-v2", "port": 8081}, {"name": "web-v2", "port": 80, "weight": 0}]}]});
    let f = forward(&[route("web", spec)], &get("/"));
    assert_eq!(
        f.pods,
        BTreeMap::from([
            ("shop/web/v1".into(), 100.0 / 3.0),
            (NO_POD.into(), 200.0 / 3.0)
        ])
    );
}

#[test]
fn a_route_matching_nothing_answers_404() {
    let spec = json!({"parentRefs": parent(), "rules": [{"matches": [{"path": {"type": "Exact", "value": "/a"}}],
        "backendRefs": to("v1")}]});
    assert_eq!(answer(&[route("web", spec)], &get("/b")), Routing::NoRoute);
}

#[test]
fn a_rule_without_backends_forwards_nothing() {
    let spec = json!({"parentRefs": parent(), "rules": [{}]});
    assert_eq!(answer(&[route("web", spec)], &get("/")), Routing::NoRoute);
}

#[test]
fn precedence_is_by_match_not_by_rule_order() {
    let spec = json!({"parentRefs": parent(), "rules": [
        {"matches": [{"path": {"value": "/api"}}], "backendRefs": to("v1")},
        {"matches": [{"path": {"value": "/api/v2"}}], "backendRefs": to("v2")},
        {"matches": [{"path": {"type": "Exact", "value": "/api"}, "headers": [{"name": "X-Beta", "value": "1"}]}],
         "backendRefs": to("v2")}]});
    let r = [route("web", spec)];
    // The longest prefix wins though a shorter one comes first.
    assert_eq!(
        forward(&r, &get("/api/v2/x")).rule,
        "HTTPRoute shop/web rule 1"
    );
    assert_eq!(
        forward(&r, &get("/api/v1")).rule,
        "HTTPRoute shop/web rule 0"
    );
    // A prefix matches whole path elements only.
    assert_eq!(answer(&r, &get("/apix")), Routing::NoRoute);
    // An Exact path beats every prefix.
    let mut beta = get("/api");
    beta.headers.insert("x-beta".into(), "1".into());
    assert_eq!(forward(&r, &beta).rule, "HTTPRoute shop/web rule 2");
}

#[test]
fn method_then_headers_then_query_params_break_ties() {
    let spec = json!({"parentRefs": parent(), "rules": [
        {"matches": [{"queryParams": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}], "backendRefs": to("v1")},
        {"matches": [{"headers": [{"name": "h", "value": "1"}]}], "backendRefs": to("v1")},
        {"matches": [{"method": "POST"}], "backendRefs": to("v2")}]});
    let r = [route("web", spec)];
    let mut req = get("/");
    req.method = "POST".into();
    req.headers.insert("h".into(), "1".into());
    req.query = BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
    assert_eq!(forward(&r, &req).rule, "HTTPRoute shop/web rule 2");
    req.method = "GET".into();
    assert_eq!(forward(&r, &req).rule, "HTTPRoute shop/web rule 1");
    req.headers.clear();
    assert_eq!(forward(&r, &req).rule, "HTTPRoute shop/web rule 0");
}

#[test]
fn equal_matches_go_to_the_first_route_by_name() {
    let spec = |v| json!({"parentRefs": parent(), "rules": [{"backendRefs": to(v)}]});
    let r = [route("zeta", spec("v2")), route("alpha", spec("v1"))];
    assert_eq!(forward(&r, &get("/")).rule, "HTTPRoute shop/alpha rule 0");
}

#[test]
fn a_parent_needs_the_core_group_and_the_port() {
    let elsewhere = json!({"parentRefs": [{"kind": "Service", "name": "web"}], "rules": [{"backendRefs": to("v2")}]});
    let other_port = json!({"parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 81}],
        "rules": [{"backendRefs": to("v2")}]});
    let f = forward(&[route("a", elsewhere), route("b", other_port)], &get("/"));
    assert_eq!(f.rule, "Service shop/web (no route attached)");
}

#[test]
fn redirects_default_to_302_and_replace_the_matched_prefix() {
    let spec = json!({"parentRefs": parent(), "rules": [
        {"matches": [{"path": {"value": "/old"}}],
         "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "new.example",
             "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}]}]});
    let want = Redirect {
        code: 302,
        path: Some("/new/page".into()),
        host: Some("new.example".into()),
    };
    assert_eq!(
        answer(&[route("web", spec)], &get("/old/page")),
        Routing::Redirect(want)
    );
}

#[test]
fn rewrites_mirrors_timeouts_and_retries() {
    let spec = json!({"parentRefs": parent(), "rules": [{"matches": [{"path": {"value": "/v0/"}}],
        "backendRefs": to("v1"),
        "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "web-beta",
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}},
                    {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "web-v2", "port": 80},
                        "fraction": {"numerator": 1, "denominator": 8}}}],
        "timeouts": {"request": "10s", "backendRequest": "500ms"},
        "retry": {"attempts": 3, "codes": [504, 503, 502]}}]});
    let f = forward(&[route("web", spec)], &get("/v0/cart"));
    assert_eq!(f.rewritten_path.as_deref(), Some("/cart"));
    assert_eq!(f.rewritten_host.as_deref(), Some("web-beta"));
    assert_eq!(f.mirror, Some((vec!["shop/web/v2".into()], 12.5)));
    assert_eq!(f.timeout_ms, Some(10_000));
    let want = Retries {
        attempts: 3,
        per_try_timeout_ms: Some(500),
        on: vec!["gateway-error".into()],
    };
    assert_eq!(f.retries, Some(want));
}

#[test]
fn a_backend_request_timeout_bounds_an_unretried_request() {
    let spec = json!({"parentRefs": parent(), "rules": [{"backendRefs": to("v1"),
        "timeouts": {"backendRequest": "2s"}, "retry": {"codes": [500]}}]});
    let f = forward(&[route("web", spec)], &get("/"));
    assert_eq!((f.timeout_ms, f.retries), (Some(2000), None));
}

#[test]
fn consumer_routes_replace_producer_routes_for_their_namespace_only() {
    let producer = route(
        "web",
        json!({"parentRefs": parent(), "rules": [{"backendRefs": to("v1")}]}),
    );
    let consumer = obj(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "client",
        "web",
        json!({"parentRefs": [{"group": "", "kind": "Service", "name": "web", "namespace": "shop", "port": 80}],
               "rules": [{"backendRefs": [{"name": "web-v2", "namespace": "shop", "port": 80}],
                          "timeouts": {"request": "100ms"}}]}),
        &[],
    );
    let r = [producer, consumer];
    let f = forward(&r, &get("/"));
    assert_eq!(
        (pods(&f), f.timeout_ms),
        (vec![("shop/web/v2", 100.0)], Some(100))
    );
    let mut other = get("/");
    other.source = Source::Unauthenticated { namespace: None };
    assert_eq!(pods(&forward(&r, &other)), [("shop/web/v1", 100.0)]);
}

#[test]
fn a_grpc_route_wins_over_an_http_route_on_one_port() {
    let search = |kind: &'static str, spec: Value| {
        obj(
            "gateway.networking.k8s.io/v1",
            kind,
            "shop",
            "search",
            spec,
            &[],
        )
    };
    let parent = json!([{"group": "", "kind": "Service", "name": "search", "port": 9090}]);
    let http = search(
        "HTTPRoute",
        json!({"parentRefs": parent, "rules": [{"backendRefs": [{"name": "gone", "port": 9090}]}]}),
    );
    let grpc = search(
        "GRPCRoute",
        json!({"parentRefs": parent, "rules": [
        {"matches": [{"method": {"service": "shop.Search", "method": "Find"}}], "backendRefs": [{"name": "gone", "port": 9090}]},
        {"backendRefs": [{"name": "search", "port": 9090}]}]}),
    );
    let mut r = get("/shop.Search/List");
    r.service = "search".into();
    r.port = 9090;
    let f = forward(&[http, grpc], &r);
    assert_eq!(
        (f.rule.as_str(), pods(&f)),
        ("GRPCRoute shop/search rule 1", vec![("shop/search", 100.0)])
    );
    r.path = "/shop.Search/Find".into();
}

#[test]
fn a_prefix_rewrite_without_a_prefix_match_is_an_error() {
    let spec = json!({"parentRefs": parent(), "rules": [{"matches": [{"path": {"type": "Exact", "value": "/a"}}],
        "backendRefs": to("v1"),
        "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}}]}]});
    let mut all = version_services();
    all.push(route("web", spec));
    let e = GatewayApi.answer(&all, &shop(), &get("/a")).unwrap_err();
    assert_eq!(e.object, "HTTPRoute shop/web");
}

#[test]
fn a_request_to_an_unknown_service_or_port_goes_nowhere() {
    let mut r = get("/");
    r.port = 81;
    assert_eq!(answer(&[], &r), Routing::NoRoute);
    r.service = "nope".into();
    assert_eq!(answer(&[], &r), Routing::NoRoute);
}
