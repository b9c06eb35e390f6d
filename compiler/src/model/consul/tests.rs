//! Config entries modelled on the examples of Consul's reference pages
//! (service-router "Path prefix matching", "Header/query parameter
//! matching"; service-splitter canary; service-resolver "Filter on service
//! version", failover; service-intentions "REST Access").

use serde_json::{json, Value};

use super::*;
use crate::model::testing::{self, labels};
use crate::model::{Forward, KubeService, Retries, ServicePort, Verdict, NO_POD};

fn entry(kind: &'static str, ns: &str, name: &str, spec: Value) -> MeshObject {
    testing::obj("consul.hashicorp.com/v1alpha1", kind, ns, name, spec, &[])
}

fn service(ns: &str, name: &str, selector: &[(&str, &str)]) -> KubeService {
    KubeService {
        namespace: ns.into(),
        name: name.into(),
        selector: labels(selector),
        ports: vec![ServicePort {
            name: "http".into(),
            port: 80,
            target_port: 8080,
            protocol: "http".into(),
        }],
    }
}

fn pod(ns: &str, id: &str, sa: &str, kv: &[(&str, &str)]) -> Pod {
    Pod {
        id: id.into(),
        namespace: ns.into(),
        labels: labels(kv),
        service_account: sa.into(),
        ports: vec![8080],
    }
}

/// `web` (two versions), `admin`, `admin-dashboard`, `report-generator`.
fn cluster() -> Cluster {
    Cluster {
        trust_domain: "cluster.local".into(),
        pods: vec![
            pod(
                "shop",
                "shop/web/v1",
                "web",
                &[("app", "web"), ("version", "v1")],
            ),
            pod(
                "shop",
                "shop/web/v2",
                "web",
                &[("app", "web"), ("version", "v2")],
            ),
            pod("shop", "shop/admin", "admin", &[("app", "admin")]),
            pod(
                "shop",
                "shop/admin-dashboard",
                "admin-dashboard",
                &[("app", "admin-dashboard")],
            ),
            pod(
                "ops",
                "ops/report-generator",
                "reports",
                &[("app", "report-generator")],
            ),
        ],
        services: vec![
            service("shop", "web", &[("app", "web")]),
            service("shop", "admin", &[("app", "admin")]),
            service("shop", "admin-dashboard", &[("app", "admin-dashboard")]),
            service("ops", "report-generator", &[("app", "report-generator")]),
        ],
    }
}

fn get(path: &str) -> Request {
    let c = cluster();
    Request {
        source: c
            .source("shop/admin-dashboard")
            .unwrap_or(Source::Unauthenticated { namespace: None }),
        namespace: "shop".into(),
        service: "web".into(),
        port: 80,
        method: "GET".into(),
        path: path.into(),
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
    }
}

fn http_defaults(name: &str) -> MeshObject {
    entry("ServiceDefaults", "shop", name, json!({"protocol": "http"}))
}

fn resolver() -> MeshObject {
    entry(
        "ServiceResolver",
        "shop",
        "web",
        json!({"defaultSubset": "v1", "subsets": {
            "v1": {"filter": "Service.Meta.version == v1"},
            "v2": {"filter": "Service.Meta.version == \"v2\""}
        }}),
    )
}

fn answer(objects: &[MeshObject], r: &Request) -> Answer {
    Consul.answer(objects, &cluster(), r).unwrap()
}

fn forward(objects: &[MeshObject], r: &Request) -> Forward {
    match answer(objects, r).routing {
        Some(Routing::Forward(f)) => f,
        other => panic!("not forwarded: {other:?}"),
    }
}

fn pods(kv: &[(&str, f64)]) -> BTreeMap<String, f64> {
    kv.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn without_entries_a_tcp_service_reaches_every_instance() {
    let f = forward(&[], &get("/"));
    assert_eq!(
        f.pods,
        pods(&[("shop/web/v1", 50.0), ("shop/web/v2", 50.0)])
    );
    assert_eq!(
        (f.timeout_ms, f.retries, f.rule.as_str()),
        (None, None, "the default route")
    );
}

#[test]
fn the_resolver_default_subset_and_envoy_default_timeout() {
    let f = forward(&[http_defaults("web"), resolver()], &get("/"));
    assert_eq!(f.pods, pods(&[("shop/web/v1", 100.0)]));
    assert_eq!(f.timeout_ms, Some(15_000));
    assert_eq!(f.rule, "ServiceResolver shop/web");
}

#[test]
fn routes_match_in_order_and_prefixes_are_plain_strings() {
    let router = entry(
        "ServiceRouter",
        "shop",
        "web",
        json!({"routes": [
            {"match": {"http": {"pathPrefix": "/admin"}}, "destination": {"service": "admin", "prefixRewrite": "/", "requestTimeout": "2s"}},
            {"match": {"http": {"header": [{"name": "x-debug", "exact": "1"}]}}, "destination": {"serviceSubset": "v2"}},
            {"match": {"http": {"queryParam": [{"name": "x-debug", "present": true}]}},
             "destination": {"serviceSubset": "v2", "numRetries": 3, "retryOn": ["5xx"], "retryOnStatusCodes": [503, 409]}}
        ]}),
    );
    let objects = [
        http_defaults("web"),
        http_defaults("admin"),
        resolver(),
        router,
    ];
    let f = forward(&objects, &get("/administrator"));
    assert_eq!(f.pods, pods(&[("shop/admin", 100.0)]));
    assert_eq!(f.rewritten_path.as_deref(), Some("/istrator"));
    assert_eq!(
        (f.timeout_ms, f.rule.as_str()),
        (Some(2000), "ServiceRouter shop/web route 0")
    );
    let mut r = get("/");
    r.headers.insert("x-debug".into(), "1".into());
    assert_eq!(forward(&objects, &r).pods, pods(&[("shop/web/v2", 100.0)]));
    let mut r = get("/");
    r.query.insert("x-debug".into(), "".into());
    let f = forward(&objects, &r);
    assert_eq!(
        f.retries,
        Some(Retries {
            attempts: 3,
            per_try_timeout_ms: None,
            on: vec!["409".into(), "5xx".into()],
        })
    );
    // Unmatched: the default route, to the default subset.
    let f = forward(&objects, &get("/"));
    assert_eq!(
        (f.pods, f.rule),
        (
            pods(&[("shop/web/v1", 100.0)]),
            "ServiceRouter shop/web default route".into()
        )
    );
}

#[test]
fn the_destination_sidecar_bounds_each_try() {
    let router = entry(
        "ServiceRouter",
        "shop",
        "web",
        json!({"routes": [{"destination": {"requestTimeout": "30s"}}]}),
    );
    let objects = [http_defaults("web"), router.clone()];
    assert_eq!(forward(&objects, &get("/")).timeout_ms, Some(15_000));
    let long = entry(
        "ServiceDefaults",
        "shop",
        "web",
        json!({"protocol": "http", "localRequestTimeoutMs": 0}),
    );
    assert_eq!(forward(&[long, router], &get("/")).timeout_ms, Some(30_000));
}

#[test]
fn splits_weigh_subsets() {
    let splitter = entry(
        "ServiceSplitter",
        "shop",
        "web",
        json!({"splits": [{"weight": 90, "serviceSubset": "v1"}, {"weight": 10, "serviceSubset": "v2"}]}),
    );
    let f = forward(&[http_defaults("web"), resolver(), splitter], &get("/"));
    assert_eq!(
        f.pods,
        pods(&[("shop/web/v1", 90.0), ("shop/web/v2", 10.0)])
    );
    assert_eq!(f.rule, "ServiceSplitter shop/web");
    assert!(f.set_cookie.is_empty());
    // A split's `responseHeaders` reach the answers of its subset only.
    let sticky = entry(
        "ServiceSplitter",
        "shop",
        "web",
        json!({"splits": [{"weight": 90, "serviceSubset": "v1"},
            {"weight": 10, "serviceSubset": "v2", "responseHeaders": {"add": {"Set-Cookie": "c=v2"}}}]}),
    );
    let f = forward(&[http_defaults("web"), resolver(), sticky], &get("/"));
    assert_eq!(
        f.set_cookie,
        [("shop/web/v2".to_owned(), "c=v2".to_owned())].into()
    );
    let bad = entry(
        "ServiceSplitter",
        "shop",
        "web",
        json!({"splits": [{"weight": 90, "serviceSubset": "v1"}]}),
    );
    assert!(Consul
        .answer(
            &[http_defaults("web"), resolver(), bad],
            &cluster(),
            &get("/")
        )
        .is_err());
}

#[test]
fn an_empty_subset_fails_over_in_order() {
    let r = entry(
        "ServiceResolver",
        "shop",
        "web",
        json!({"defaultSubset": "v3", "subsets": {"v3": {"filter": "Service.Meta.version == v3"}},
               "failover": {"*": {"targets": [{"service": "nowhere"}, {"service": "admin"}]}}}),
    );
    assert_eq!(
        forward(&[r], &get("/")).pods,
        pods(&[("shop/admin", 100.0)])
    );
    let dc = entry(
        "ServiceResolver",
        "shop",
        "web",
        json!({"defaultSubset": "v3", "subsets": {"v3": {"filter": "Service.Meta.version == v3"}},
               "failover": {"v3": {"datacenters": ["dc2"]}}}),
    );
    assert_eq!(answer(&[dc], &get("/")).routing, Some(Routing::NoRoute));
    let redirect = entry(
        "ServiceResolver",
        "shop",
        "web",
        json!({"redirect": {"service": "admin"}}),
    );
    assert_eq!(
        forward(&[redirect], &get("/")).pods,
        pods(&[("shop/admin", 100.0)])
    );
}

#[test]
fn what_consul_refuses_is_an_error() {
    let tcp_router = entry("ServiceRouter", "shop", "web", json!({"routes": []}));
    let rewrite_without_path = entry(
        "ServiceRouter",
        "shop",
        "web",
        json!({"routes": [{"match": {"http": {"header": [{"name": "a", "present": true}]}}, "destination": {"prefixRewrite": "/x"}}]}),
    );
    let unknown_subset = entry(
        "ServiceRouter",
        "shop",
        "web",
        json!({"routes": [{"destination": {"serviceSubset": "v9"}}]}),
    );
    let bad_default = entry(
        "ServiceResolver",
        "shop",
        "web",
        json!({"defaultSubset": "v9"}),
    );
    // Consul CE ignores namespaces: two routers for `web`.
    let twin = entry("ServiceRouter", "other", "web", json!({"routes": []}));
    for objects in [
        vec![tcp_router.clone()],
        vec![http_defaults("web"), rewrite_without_path],
        vec![http_defaults("web"), resolver(), unknown_subset],
        vec![bad_default],
        vec![http_defaults("web"), tcp_router, twin],
    ] {
        assert!(Consul.answer(&objects, &cluster(), &get("/")).is_err());
    }
}

/// The "REST Access" example, with a `*` deny.
fn rest_access() -> MeshObject {
    entry(
        "ServiceIntentions",
        "shop",
        "web",
        json!({"destination": {"name": "web"}, "sources": [
            {"name": "admin-dashboard", "permissions": [{"action": "allow", "http": {"pathPrefix": "/v2", "methods": ["GET", "PUT", "POST", "DELETE", "HEAD"]}}]},
            {"name": "report-generator", "permissions": [{"action": "allow", "http": {"pathPrefix": "/v2/widgets", "methods": ["GET"]}}]},
            {"name": "*", "action": "deny"}
        ]}),
    )
}

fn verdict(objects: &[MeshObject], r: &Request) -> Verdict {
    answer(objects, r).authorization.unwrap()["shop/web/v1"].clone()
}

#[test]
fn the_exact_source_decides_and_unmatched_permissions_fall_to_the_default() {
    let objects = [http_defaults("web"), rest_access()];
    let by = Some("ServiceIntentions shop/web".to_owned());
    assert_eq!(
        verdict(&objects, &get("/v2/things")),
        Verdict::Allow { by: by.clone() }
    );
    // The `*` deny does not apply to a source with its own intention: the
    // default policy (allow) does.
    assert_eq!(verdict(&objects, &get("/v1")), Verdict::Allow { by: None });
    let c = cluster();
    let mut r = get("/v2/widgets");
    r.source = c.source("ops/report-generator").unwrap();
    assert_eq!(verdict(&objects, &r), Verdict::Allow { by });
    // A caller no intention names: the `*` deny.
    r.source = c.source("shop/admin").unwrap();
    assert_eq!(
        verdict(&objects, &r),
        Verdict::Deny {
            by: "ServiceIntentions shop/web".into()
        }
    );
    // L7 permissions on a TCP service are refused.
    assert!(Consul
        .answer(&[rest_access()], &cluster(), &get("/v2"))
        .is_err());
}

#[test]
fn a_caller_no_service_selects_is_its_service_account() {
    let deny_sa = entry(
        "ServiceIntentions",
        "shop",
        "web-intentions",
        json!({"destination": {"name": "web"}, "sources": [{"name": "robot", "action": "deny"}]}),
    );
    let mut r = get("/");
    r.source = Source::Workload {
        namespace: "shop".into(),
        service_account: "robot".into(),
        labels: labels(&[("app", "robot")]),
    };
    assert!(!verdict(&[deny_sa], &r).allowed());
}

#[test]
fn plaintext_needs_permissive_mtls() {
    let mut r = get("/");
    r.source = Source::Unauthenticated { namespace: None };
    assert!(!verdict(&[], &r).allowed());
    let permissive = entry(
        "ServiceDefaults",
        "shop",
        "web",
        json!({"mutualTLSMode": "permissive"}),
    );
    assert_eq!(
        verdict(&[permissive.clone(), rest_access()], &r),
        Verdict::Allow {
            by: Some("ServiceDefaults shop/web".into())
        }
    );
    let mesh = entry("Mesh", "consul", "mesh", json!({}));
    assert!(Consul.answer(&[permissive, mesh], &cluster(), &r).is_err());
}

#[test]
fn enterprise_namespaces_default_to_the_destinations() {
    let ixn = entry(
        "ServiceIntentions",
        "shop",
        "web",
        json!({"destination": {"name": "web"}, "sources": [
            {"name": "*", "namespace": "ops", "action": "allow"},
            {"name": "*", "namespace": "*", "action": "deny"}
        ]}),
    );
    let c = cluster();
    let mut r = get("/");
    r.source = c.source("ops/report-generator").unwrap();
    assert!(verdict(std::slice::from_ref(&ixn), &r).allowed());
    r.source = c.source("shop/admin").unwrap();
    assert!(!verdict(&[ixn], &r).allowed());
}

#[test]
fn subset_filters() {
    let c = cluster();
    let web = Mesh {
        cluster: &c,
        entries: Entries::default(),
    }
    .instances(&(DEFAULT_NS.into(), "web".into()));
    let keep = |f: &str| -> Vec<bool> {
        let f = filter::Filter::parse(f).unwrap();
        web.iter().map(|i| f.matches(i).unwrap()).collect()
    };
    assert_eq!(keep("Service.Meta.version == v1"), [true, false]);
    assert_eq!(
        keep("Service.Meta.version != \"v1\" and Service.Meta.app == web"),
        [false, true]
    );
    assert_eq!(
        keep("not (Service.Meta.version == v1 or Service.Meta.version == v2)"),
        [false, false]
    );
    assert_eq!(
        keep("version in Service.Meta and Service.Meta.track is empty"),
        [true, true]
    );
    assert_eq!(
        keep("Service.Meta.version matches \"^v[2-9]$\""),
        [false, true]
    );
    assert_eq!(keep("Service.Meta.k8s-namespace == shop"), [true, true]);
    assert!(filter::Filter::parse("Service.Meta.version ==").is_err());
    let f = filter::Filter::parse("ServiceMeta.version == v1").unwrap();
    assert!(f.matches(&web[0]).is_err());
}

#[test]
fn unknown_services_and_ports_route_nowhere() {
    let mut r = get("/");
    r.port = 81;
    assert_eq!(answer(&[], &r).routing, Some(Routing::NoRoute));
    r.service = "missing".into();
    assert_eq!(
        answer(&[], &r),
        Answer {
            routing: Some(Routing::NoRoute),
            authorization: None
        }
    );
    let _ = NO_POD;
}
