//! The model on objects modelled on Istio's documentation examples
//! (bookinfo `reviews`, the AuthorizationPolicy reference's `httpbin`
//! policies, allow-nothing, STRICT PeerAuthentication).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Istio;
use crate::model::testing::{self, labels};
use crate::model::{
    Answer, Cluster, KubeService, Labels, Model, ModelError, Pod, Redirect, Request, Retries,
    Routing, ServicePort, Source, Verdict, NO_POD,
};
use crate::object::MeshObject;

fn obj(kind: &'static str, ns: &str, name: &str, spec: Value) -> MeshObject {
    let api = match kind {
        "VirtualService" | "DestinationRule" => "networking.istio.io/v1",
        "AuthorizationPolicy" | "PeerAuthentication" => "security.istio.io/v1",
        "EnvoyFilter" => "networking.istio.io/v1alpha3",
        _ => "v1",
    };
    testing::obj(api, kind, ns, name, spec, &[])
}

fn pod(ns: &str, app: &str, version: Option<&str>, sa: &str, port: u32) -> Pod {
    let mut l = vec![("app", app)];
    let id = match version {
        Some(v) => {
            l.push(("version", v));
            format!("{ns}/{app}/{v}")
        }
        None => format!("{ns}/{app}"),
    };
    Pod {
        id,
        namespace: ns.into(),
        labels: labels(&l),
        service_account: sa.into(),
        ports: vec![port],
    }
}

fn service(ns: &str, name: &str, port: u32, target: u32, protocol: &str) -> KubeService {
    KubeService {
        namespace: ns.into(),
        name: name.into(),
        selector: labels(&[("app", name)]),
        ports: vec![ServicePort {
            name: protocol.into(),
            port,
            target_port: target,
            protocol: protocol.into(),
        }],
    }
}

/// Bookinfo: reviews v1..v3, productpage, ratings; a tcp `db`.
fn bookinfo() -> Cluster {
    let b = "bookinfo";
    Cluster {
        trust_domain: "cluster.local".into(),
        pods: vec![
            pod(b, "reviews", Some("v1"), "bookinfo-reviews", 9080),
            pod(b, "reviews", Some("v2"), "bookinfo-reviews", 9080),
            pod(b, "reviews", Some("v3"), "bookinfo-reviews", 9080),
            pod(b, "productpage", None, "bookinfo-productpage", 9080),
            pod(b, "db", Some("v1"), "db", 5432),
            pod(b, "db", Some("v2"), "db", 5432),
        ],
        services: vec![
            service(b, "reviews", 9080, 9080, "http"),
            service(b, "productpage", 80, 9080, "http"),
            service(b, "db", 5432, 5432, "tcp"),
        ],
    }
}

fn from_productpage() -> Source {
    Source::Workload {
        namespace: "bookinfo".into(),
        service_account: "bookinfo-productpage".into(),
        labels: labels(&[("app", "productpage")]),
    }
}

fn get(service: &str, port: u32, path: &str) -> Request {
    Request {
        source: from_productpage(),
        namespace: "bookinfo".into(),
        service: service.into(),
        port,
        method: "GET".into(),
        path: path.into(),
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
    }
}

fn answer(objects: &[MeshObject], r: &Request) -> Answer {
    Istio.answer(objects, &bookinfo(), r).expect("an answer")
}

fn routing(objects: &[MeshObject], r: &Request) -> Routing {
    answer(objects, r).routing.expect("routing")
}

fn pods(objects: &[MeshObject], r: &Request) -> BTreeMap<String, f64> {
    match routing(objects, r) {
        Routing::Forward(f) => f.pods,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn share(kv: &[(&str, f64)]) -> BTreeMap<String, f64> {
    kv.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// The reviews DestinationRule of the bookinfo samples.
fn reviews_dr() -> MeshObject {
    obj(
        "DestinationRule",
        "bookinfo",
        "reviews",
        json!({"host": "reviews", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
            {"name": "v3", "labels": {"version": "v3"}}]}),
    )
}

/// The request-routing task's reviews VirtualService: jason sees v2.
fn reviews_vs(http: Value) -> MeshObject {
    obj(
        "VirtualService",
        "bookinfo",
        "reviews",
        json!({"hosts": ["reviews"], "http": http}),
    )
}

fn jason_then_v1() -> Value {
    json!([
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
    ])
}

#[test]
fn without_a_virtual_service_the_service_pods_share_equally_with_default_retries() {
    let Routing::Forward(f) = routing(&[], &get("reviews", 9080, "/")) else {
        panic!("expected a forward")
    };
    let third = 100.0 / 3.0;
    assert_eq!(
        f.pods,
        share(&[
            ("bookinfo/reviews/v1", third),
            ("bookinfo/reviews/v2", third),
            ("bookinfo/reviews/v3", third)
        ])
    );
    assert_eq!(f.timeout_ms, None);
    let on = [
        "503",
        "cancelled",
        "connect-failure",
        "refused-stream",
        "unavailable",
    ];
    assert_eq!(
        f.retries,
        Some(Retries {
            attempts: 2,
            per_try_timeout_ms: None,
            on: on.map(str::to_owned).to_vec()
        })
    );
}

#[test]
fn the_first_matching_rule_wins_and_subsets_narrow_the_service() {
    let objects = [reviews_dr(), reviews_vs(jason_then_v1())];
    let mut r = get("reviews", 9080, "/reviews/1");
    assert_eq!(pods(&objects, &r), share(&[("bookinfo/reviews/v1", 100.0)]));
    r.headers.insert("end-user".into(), "jason".into());
    assert_eq!(pods(&objects, &r), share(&[("bookinfo/reviews/v2", 100.0)]));
    let Routing::Forward(f) = routing(&objects, &r) else {
        panic!()
    };
    assert_eq!(f.rule, "VirtualService bookinfo/reviews rule 0");
}

#[test]
fn weights_split_among_subsets() {
    let http = json!([{"route": [
        {"destination": {"host": "reviews.bookinfo.svc.cluster.local", "subset": "v2"}, "weight": 25},
        {"destination": {"host": "reviews.bookinfo.svc", "subset": "v1"}, "weight": 75},
        {"destination": {"host": "reviews.bookinfo", "subset": "v3"}, "weight": 0}]}]);
    let objects = [reviews_dr(), reviews_vs(http)];
    assert_eq!(
        pods(&objects, &get("reviews", 9080, "/")),
        share(&[("bookinfo/reviews/v1", 75.0), ("bookinfo/reviews/v2", 25.0)])
    );
}

#[test]
fn blocks_are_ored_and_conditions_anded() {
    let http = json!([
        {"match": [
            {"uri": {"prefix": "/api"}, "method": {"exact": "POST"}},
            {"queryParams": {"beta": {"exact": "1"}}}],
         "route": [{"destination": {"host": "reviews", "subset": "v3"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
    ]);
    let objects = [reviews_dr(), reviews_vs(http)];
    let v3 = share(&[("bookinfo/reviews/v3", 100.0)]);
    let v1 = share(&[("bookinfo/reviews/v1", 100.0)]);
    let mut r = get("reviews", 9080, "/apis");
    assert_eq!(
        pods(&objects, &r),
        v1,
        "GET does not satisfy the first block"
    );
    r.method = "POST".into();
    assert_eq!(
        pods(&objects, &r),
        v3,
        "a string prefix: /api matches /apis"
    );
    r.method = "GET".into();
    r.query.insert("beta".into(), "1".into());
    assert_eq!(pods(&objects, &r), v3, "the second block");
}

#[test]
fn a_regex_matches_the_whole_value_and_no_match_is_404() {
    let http = json!([{"match": [{"headers": {"user-agent": {"regex": "Android"}}}],
        "route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]);
    let objects = [reviews_dr(), reviews_vs(http)];
    let mut r = get("reviews", 9080, "/");
    r.headers
        .insert("user-agent".into(), "Mozilla Android".into());
    assert_eq!(routing(&objects, &r), Routing::NoRoute);
    r.headers.insert("user-agent".into(), "Android".into());
    assert_eq!(pods(&objects, &r), share(&[("bookinfo/reviews/v2", 100.0)]));
}

#[test]
fn a_redirect_defaults_to_301_and_replaces_the_whole_path() {
    let http = json!([
        {"match": [{"uri": {"prefix": "/v1/getProductRatings"}}],
         "redirect": {"uri": "/v1/bookRatings", "authority": "newratings.default.svc.cluster.local"}},
        {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new", "redirectCode": 302}}
    ]);
    let objects = [reviews_vs(http)];
    assert_eq!(
        routing(&objects, &get("reviews", 9080, "/v1/getProductRatings/7")),
        Routing::Redirect(Redirect {
            code: 301,
            path: Some("/v1/bookRatings".into()),
            host: Some("newratings.default.svc.cluster.local".into())
        })
    );
    assert_eq!(
        routing(&objects, &get("reviews", 9080, "/old")),
        Routing::Redirect(Redirect {
            code: 302,
            path: Some("/new".into()),
            host: None
        })
    );
}

#[test]
fn a_rewrite_replaces_the_matched_prefix() {
    let http = json!([
        {"match": [{"uri": {"prefix": "/ratings"}}], "rewrite": {"uri": "/v1/bookRatings"},
         "route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
        {"rewrite": {"uri": "/v2", "authority": "beta"},
         "route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
    ]);
    let objects = [reviews_dr(), reviews_vs(http)];
    let Routing::Forward(f) = routing(&objects, &get("reviews", 9080, "/ratings/7")) else {
        panic!()
    };
    assert_eq!(f.rewritten_path.as_deref(), Some("/v1/bookRatings/7"));
    // No URI condition: the matched prefix is `/`.
    let Routing::Forward(f) = routing(&objects, &get("reviews", 9080, "/x")) else {
        panic!()
    };
    assert_eq!(f.rewritten_path.as_deref(), Some("/v2x"));
    assert_eq!(f.rewritten_host.as_deref(), Some("beta"));
}

#[test]
fn timeout_retries_fault_and_mirror_as_written() {
    let http = json!([{"route": [{"destination": {"host": "reviews", "subset": "v1"}}],
        "timeout": "10s",
        "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "gateway-error,409,connect-failure,retriable-status-codes"},
        "fault": {"delay": {"percentage": {"value": 0.1}, "fixedDelay": "5s"},
                  "abort": {"httpStatus": 503}},
        "mirror": {"host": "reviews", "subset": "v2"}}]);
    let objects = [reviews_dr(), reviews_vs(http)];
    let Routing::Forward(f) = routing(&objects, &get("reviews", 9080, "/")) else {
        panic!()
    };
    assert_eq!(f.timeout_ms, Some(10_000));
    let r = f.retries.expect("retries");
    assert_eq!((r.attempts, r.per_try_timeout_ms), (3, Some(2000)));
    assert_eq!(r.on, ["409", "connect-failure", "gateway-error"]);
    let fault = f.fault.expect("fault");
    assert_eq!(fault.delay, Some((0.1, 5000)));
    assert_eq!(fault.abort, None, "no percentage: no request is aborted");
    assert_eq!(
        f.mirror,
        Some((vec!["bookinfo/reviews/v2".to_owned()], 100.0))
    );
}

#[test]
fn response_headers_set_a_cookie_on_the_answers_of_their_destination() {
    // A destination's `headers.response` over the rule's; a weight-0
    // destination answers nothing.
    let vs = reviews_vs(json!([
        {"headers": {"response": {"add": {"set-cookie": "all=1"}}},
         "route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
            {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20,
             "headers": {"response": {"set": {"Set-Cookie": "canary=v2; Max-Age=60"}}}},
            {"destination": {"host": "reviews", "subset": "v3"}, "weight": 0,
             "headers": {"response": {"add": {"Set-Cookie": "never=1"}}}}]}
    ]));
    let Routing::Forward(f) = routing(&[reviews_dr(), vs], &get("reviews", 9080, "/")) else {
        panic!("a forward")
    };
    let want: BTreeMap<String, String> = [
        ("bookinfo/reviews/v1".to_owned(), "all=1".to_owned()),
        (
            "bookinfo/reviews/v2".to_owned(),
            "canary=v2; Max-Age=60".to_owned(),
        ),
    ]
    .into();
    assert_eq!(f.set_cookie, want);
}

#[test]
fn zero_attempts_disable_retries() {
    let http =
        json!([{"route": [{"destination": {"host": "reviews"}}], "retries": {"attempts": 0}}]);
    let Routing::Forward(f) = routing(&[reviews_vs(http)], &get("reviews", 9080, "/")) else {
        panic!()
    };
    assert_eq!(f.retries, None);
}

#[test]
fn an_undefined_subset_reaches_no_pod() {
    let http = json!([{"route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
        {"destination": {"host": "reviews", "subset": "v9"}, "weight": 50}]}]);
    let objects = [reviews_dr(), reviews_vs(http)];
    assert_eq!(
        pods(&objects, &get("reviews", 9080, "/")),
        share(&[("bookinfo/reviews/v1", 50.0), (NO_POD, 50.0)])
    );
    let only_v9 = json!([{"route": [{"destination": {"host": "reviews", "subset": "v9"}}]}]);
    assert_eq!(
        routing(
            &[reviews_dr(), reviews_vs(only_v9)],
            &get("reviews", 9080, "/")
        ),
        Routing::NoRoute
    );
}

#[test]
fn tcp_ports_use_tcp_routes_and_fall_back_to_the_service() {
    let dr = obj(
        "DestinationRule",
        "bookinfo",
        "db",
        json!({"host": "db", "subsets": [{"name": "v2", "labels": {"version": "v2"}}]}),
    );
    let vs = obj(
        "VirtualService",
        "bookinfo",
        "db",
        json!({"hosts": ["db"], "tcp": [{"match": [{"port": 5432}],
            "route": [{"destination": {"host": "db", "subset": "v2"}}]}]}),
    );
    let Routing::Forward(f) = routing(&[dr.clone(), vs], &get("db", 5432, "")) else {
        panic!()
    };
    assert_eq!(f.pods, share(&[("bookinfo/db/v2", 100.0)]));
    assert_eq!((f.retries, f.timeout_ms), (None, None));
    let other_port = obj(
        "VirtualService",
        "bookinfo",
        "db",
        json!({"hosts": ["db"], "tcp": [{"match": [{"port": 6000}],
            "route": [{"destination": {"host": "db", "subset": "v2"}}]}]}),
    );
    assert_eq!(
        pods(&[dr, other_port], &get("db", 5432, "")),
        share(&[("bookinfo/db/v1", 50.0), ("bookinfo/db/v2", 50.0)])
    );
}

#[test]
fn a_caller_without_a_sidecar_is_not_routed_by_virtual_services() {
    let objects = [reviews_dr(), reviews_vs(jason_then_v1())];
    let mut r = get("reviews", 9080, "/");
    r.source = Source::Unauthenticated { namespace: None };
    let Routing::Forward(f) = routing(&objects, &r) else {
        panic!()
    };
    assert_eq!(f.pods.len(), 3);
    assert_eq!(f.retries, None);
}

fn httpbin_cluster() -> Cluster {
    let mut c = bookinfo();
    c.pods.push(pod("foo", "httpbin", None, "httpbin", 8080));
    c.services
        .push(service("foo", "httpbin", 8000, 8080, "http"));
    c
}

fn to_httpbin(ns: &str, sa: &str, method: &str, path: &str) -> Request {
    Request {
        source: Source::Workload {
            namespace: ns.into(),
            service_account: sa.into(),
            labels: Labels::new(),
        },
        namespace: "foo".into(),
        service: "httpbin".into(),
        port: 8000,
        method: method.into(),
        path: path.into(),
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
    }
}

fn verdict(objects: &[MeshObject], r: &Request) -> Verdict {
    let a = Istio
        .answer(objects, &httpbin_cluster(), r)
        .expect("an answer");
    a.authorization.expect("authorization")["foo/httpbin"].clone()
}

/// The AuthorizationPolicy reference's ALLOW and DENY examples.
fn httpbin_policies() -> [MeshObject; 2] {
    [
        obj(
            "AuthorizationPolicy",
            "foo",
            "httpbin",
            json!({"action": "ALLOW", "rules": [{
                "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}},
                         {"source": {"namespaces": ["test"]}}],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/info*"]}},
                       {"operation": {"methods": ["POST"], "paths": ["/data"]}}]}]}),
        ),
        obj(
            "AuthorizationPolicy",
            "foo",
            "deny-dev-post",
            json!({"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["dev"]}}],
                "to": [{"operation": {"methods": ["POST"]}}]}]}),
        ),
    ]
}

#[test]
fn deny_is_evaluated_before_allow() {
    let p = httpbin_policies();
    let allowed = Verdict::Allow {
        by: Some("AuthorizationPolicy foo/httpbin".into()),
    };
    assert_eq!(
        verdict(&p, &to_httpbin("default", "sleep", "GET", "/info/x")),
        allowed
    );
    assert_eq!(
        verdict(&p, &to_httpbin("test", "any", "POST", "/data")),
        allowed
    );
    assert_eq!(
        verdict(&p, &to_httpbin("dev", "any", "POST", "/data")),
        Verdict::Deny {
            by: "AuthorizationPolicy foo/deny-dev-post".into()
        }
    );
    // An ALLOW policy applies, and no rule matches.
    assert_eq!(
        verdict(&p, &to_httpbin("test", "any", "DELETE", "/data")),
        Verdict::Deny {
            by: "AuthorizationPolicy foo/httpbin".into()
        }
    );
}

#[test]
fn allow_nothing_denies_every_request_and_no_policy_allows() {
    assert_eq!(
        verdict(&[], &to_httpbin("default", "sleep", "GET", "/")),
        Verdict::Allow { by: None }
    );
    let [allow, _] = httpbin_policies();
    let nothing = obj("AuthorizationPolicy", "foo", "allow-nothing", json!({}));
    let both = [allow, nothing];
    assert_eq!(
        verdict(&both, &to_httpbin("default", "other", "GET", "/")),
        Verdict::Deny {
            by: "AuthorizationPolicy foo/allow-nothing".into()
        }
    );
    assert!(verdict(&both, &to_httpbin("default", "sleep", "GET", "/info")).allowed());
}

#[test]
fn ports_are_container_ports_and_cluster_local_names_the_trust_domain() {
    let p = [obj(
        "AuthorizationPolicy",
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}],
            "to": [{"operation": {"ports": ["8080"]}}]}]}),
    )];
    let mut c = httpbin_cluster();
    c.trust_domain = "corp.example".into();
    let r = to_httpbin("default", "sleep", "GET", "/");
    let a = Istio.answer(&p, &c, &r).expect("an answer");
    assert!(a.authorization.expect("authorization")["foo/httpbin"].allowed());
    let on_service_port = [obj(
        "AuthorizationPolicy",
        "foo",
        "httpbin",
        json!({"rules": [{"to": [{"operation": {"ports": ["8000"]}}]}]}),
    )];
    assert!(!verdict(&on_service_port, &r).allowed());
}

#[test]
fn strict_peer_authentication_refuses_plaintext() {
    let strict = obj(
        "PeerAuthentication",
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"}}),
    );
    let permissive_ns = obj(
        "PeerAuthentication",
        "foo",
        "default",
        json!({"mtls": {"mode": "PERMISSIVE"}}),
    );
    let objects = [strict, permissive_ns.clone()];
    let mut r = to_httpbin("default", "sleep", "GET", "/");
    assert_eq!(verdict(&objects, &r), Verdict::Allow { by: None });
    r.source = Source::Unauthenticated { namespace: None };
    assert_eq!(
        verdict(&objects, &r),
        Verdict::Deny {
            by: "PeerAuthentication foo/httpbin".into()
        }
    );
    assert!(verdict(std::slice::from_ref(&permissive_ns), &r).allowed());
    // Port-level DISABLE on the container port overrides the workload.
    let port_disabled = obj(
        "PeerAuthentication",
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"},
               "portLevelMtls": {"8080": {"mode": "DISABLE"}}}),
    );
    assert!(verdict(&[port_disabled], &r).allowed());
    // Mesh-wide STRICT from the root namespace.
    let mesh = obj(
        "PeerAuthentication",
        "istio-system",
        "default",
        json!({"mtls": {"mode": "STRICT"}}),
    );
    assert!(!verdict(std::slice::from_ref(&mesh), &r).allowed());
    assert!(
        verdict(&[mesh, permissive_ns], &r).allowed(),
        "the namespace's is narrower"
    );
}

#[test]
fn plaintext_callers_have_no_principal() {
    let p = [obj(
        "AuthorizationPolicy",
        "foo",
        "require-mtls",
        json!({"rules": [{"from": [{"source": {"principals": ["*"]}}]}]}),
    )];
    let mut r = to_httpbin("default", "sleep", "GET", "/");
    assert!(verdict(&p, &r).allowed());
    r.source = Source::Unauthenticated {
        namespace: Some("default".into()),
    };
    assert!(!verdict(&p, &r).allowed());
}

#[test]
fn http_only_fields_on_tcp_never_allow_and_always_deny() {
    let objects = |action: &str| {
        [obj(
            "AuthorizationPolicy",
            "bookinfo",
            "db",
            json!({"action": action, "rules": [{"to": [{"operation": {"ports": ["5432"], "methods": ["GET"]}}]}]}),
        )]
    };
    let r = get("db", 5432, "");
    let at = |o: &[MeshObject]| answer(o, &r).authorization.expect("authorization");
    assert!(at(&objects("ALLOW")).values().all(|v| !v.allowed()));
    assert!(at(&objects("DENY")).values().all(|v| !v.allowed()));
}

#[test]
fn other_kinds_are_ignored_and_malformed_fields_are_errors() {
    let filter = obj("EnvoyFilter", "bookinfo", "x", json!({"configPatches": []}));
    let linkerd = testing::obj(
        "policy.linkerd.io/v1alpha1",
        "AuthorizationPolicy",
        "bookinfo",
        "reviews",
        json!({"requiredAuthenticationRefs": "not a list"}),
        &[],
    );
    let a = answer(&[filter, linkerd], &get("reviews", 9080, "/"));
    assert!(a
        .authorization
        .expect("authorization")
        .values()
        .all(Verdict::allowed));
    let bad = obj(
        "VirtualService",
        "bookinfo",
        "reviews",
        json!({"hosts": "reviews"}),
    );
    let err: ModelError = Istio
        .answer(&[bad], &bookinfo(), &get("reviews", 9080, "/"))
        .expect_err("hosts is not a list");
    assert_eq!(err.object, "VirtualService bookinfo/reviews");
    let bad_regex = reviews_vs(json!([{"match": [{"uri": {"regex": "("}}],
        "route": [{"destination": {"host": "reviews"}}]}]));
    assert!(Istio
        .answer(&[bad_regex], &bookinfo(), &get("reviews", 9080, "/"))
        .is_err());
}
