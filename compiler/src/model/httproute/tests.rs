//! The shared route reading, and the HTTPRoute models' test cluster.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::model::testing::{kube_service, labels, obj, pod};
use crate::model::Source;

/// `shop`: Service `web` (port 80 → 8080) over pods `shop/web/v1` and
/// `shop/web/v2`; `search` (gRPC 9090) over `shop/search`.
pub(crate) fn shop() -> Cluster {
    Cluster {
        trust_domain: "cluster.local".into(),
        pods: vec![
            pod(
                "shop/web/v1",
                &[("app", "web"), ("version", "v1")],
                "web",
                &[8080],
            ),
            pod(
                "shop/web/v2",
                &[("app", "web"), ("version", "v2")],
                "web",
                &[8080],
            ),
            pod("shop/search", &[("app", "search")], "search", &[9090]),
        ],
        services: vec![
            kube_service("shop", "web", &[("app", "web")], &[("http", 80, 8080)]),
            kube_service(
                "shop",
                "search",
                &[("app", "search")],
                &[("grpc", 9090, 9090)],
            ),
        ],
    }
}

/// The per-version Services `web-v1`, `web-v2` as emitted.
pub(crate) fn version_services() -> Vec<MeshObject> {
    ["v1", "v2"]
        .iter()
        .map(|v| {
            let spec = json!({"selector": {"app": "web", "version": v},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
            obj("v1", "Service", "shop", &format!("web-{v}"), spec, &[])
        })
        .collect()
}

/// `GET web.shop:80<path>` from `client/client`.
pub(crate) fn get(path: &str) -> Request {
    Request {
        source: Source::Workload {
            namespace: "client".into(),
            service_account: "client".into(),
            labels: labels(&[("app", "client")]),
        },
        namespace: "shop".into(),
        service: "web".into(),
        port: 80,
        method: "GET".into(),
        path: path.into(),
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
    }
}

const D: Dialect = Dialect {
    regex_whole: true,
    first_header_of_name: true,
    grpc_regex: true,
    grpc_post_only: false,
};

#[test]
fn a_path_prefix_matches_whole_elements() {
    assert!(prefix_matches("/abc", "/abc"));
    assert!(prefix_matches("/abc", "/abc/"));
    assert!(prefix_matches("/abc", "/abc/def"));
    assert!(prefix_matches("/abc/", "/abc"));
    assert!(!prefix_matches("/abc", "/abcd"));
    assert!(prefix_matches("/", "/anything"));
}

#[test]
fn replace_prefix_follows_the_spec_table() {
    let table = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
    ];
    for (path, prefix, with, want) in table {
        assert_eq!(
            replace_prefix(prefix, path, with),
            want,
            "{path} {prefix} {with}"
        );
    }
}

#[test]
fn status_codes_are_named_where_a_condition_names_them() {
    assert_eq!(status_conditions([502, 503, 504]), ["gateway-error"]);
    assert_eq!(
        status_conditions([504, 409, 503, 502]),
        ["409", "gateway-error"]
    );
    assert_eq!(status_conditions(500..=599), ["5xx"]);
    assert_eq!(status_conditions([500, 503]), ["500", "503"]);
}

#[test]
fn weights_split_over_pods_and_failures_go_nowhere() {
    let w = weighted(&[(3, vec!["a".into(), "b".into()]), (1, vec![])]);
    assert_eq!(
        w,
        BTreeMap::from([
            ("a".into(), 37.5),
            ("b".into(), 37.5),
            (NO_POD.into(), 25.0)
        ])
    );
    assert_eq!(
        weighted(&[(0, vec!["a".into()])]),
        BTreeMap::from([(NO_POD.into(), 100.0)])
    );
}

#[test]
fn regexes_match_whole_values_in_either_dialect() {
    let linkerd = Dialect {
        regex_whole: false,
        ..D
    };
    assert_eq!(regex_matches("bar*", "barr", D), Ok(true));
    assert_eq!(regex_matches("bar*", "barro", D), Ok(false));
    assert_eq!(regex_matches("bar*", "barro", linkerd), Ok(false));
    // Leftmost-first: `a` is found before `ab`, so Linkerd's check fails.
    assert_eq!(regex_matches("a|ab", "ab", D), Ok(true));
    assert_eq!(regex_matches("a|ab", "ab", linkerd), Ok(false));
    assert!(regex_matches("(", "x", D).is_err());
}

#[test]
fn only_the_first_header_match_of_a_name_counts() {
    let m = HttpMatch {
        headers: vec![
            ValueMatch {
                name: "x".into(),
                regex: false,
                value: "1".into(),
            },
            ValueMatch {
                name: "x".into(),
                regex: false,
                value: "2".into(),
            },
        ],
        ..HttpMatch::default()
    };
    let mut r = get("/");
    r.headers.insert("x".into(), "1".into());
    assert_eq!(http_hit(&m, &r, D).unwrap().map(|h| h.headers), Some(1));
    let all = Dialect {
        first_header_of_name: false,
        ..D
    };
    assert!(http_hit(&m, &r, all).unwrap().is_none());
}

#[test]
fn grpc_matches_service_and_method() {
    let m = GrpcMatch {
        service: Some("shop.Search".into()),
        method: Some("Find".into()),
        ..GrpcMatch::default()
    };
    let mut r = get("/shop.Search/Find");
    assert_eq!(
        grpc_hit(&m, &r, D),
        Ok(Some(GrpcHit {
            service: 11,
            method: 4,
            headers: 0
        }))
    );
    let post = Dialect {
        grpc_post_only: true,
        ..D
    };
    assert_eq!(grpc_hit(&m, &r, post), Ok(None));
    r.method = "POST".into();
    assert!(grpc_hit(&m, &r, post).unwrap().is_some());
    assert_eq!(grpc_hit(&m, &get("/shop.Search/Other"), D), Ok(None));
}

#[test]
fn routes_read_with_their_crd_defaults() {
    let spec = json!({
        "parentRefs": [{"kind": "Service", "name": "web"}],
        "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "x"}}]}]
    });
    let objects = [
        obj(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "shop",
            "a",
            spec.clone(),
            &[],
        ),
        obj(
            "policy.linkerd.io/v1beta3",
            "HTTPRoute",
            "shop",
            "b",
            spec,
            &[],
        ),
    ];
    let rs = routes(&objects, &[GATEWAY_GROUP, LINKERD_GROUP]).unwrap();
    assert_eq!(rs[0].parents[0].group, GATEWAY_GROUP);
    assert_eq!(rs[1].parents[0].group, LINKERD_GROUP);
    assert!(!rs[0].parents[0].is_service());
    let rule = &rs[0].rules[0];
    assert!(
        matches!(&rule.matches[..], [Match::Http(HttpMatch { path: PathMatch::Prefix(p), .. })] if p == "/")
    );
    assert!(matches!(
        &rule.filters[..],
        [Filter::Redirect(RedirectSpec { status: 302, .. })]
    ));
}

#[test]
fn a_malformed_route_is_an_error_naming_it() {
    let spec = json!({"rules": [{"matches": [{"path": {"type": "Glob", "value": "/x"}}]}]});
    let objects = [obj(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "shop",
        "bad",
        spec,
        &[],
    )];
    let e = routes(&objects, &[GATEWAY_GROUP]).unwrap_err();
    assert_eq!(e.object, "HTTPRoute shop/bad");
    let message = e.problem.to_string();
    assert!(message.contains("Glob"), "{message}");
}

#[test]
fn emitted_services_stand_before_the_clusters() {
    let objects = version_services();
    let c = shop();
    let v1 = find_service(&objects, &c, "shop", "web-v1")
        .unwrap()
        .unwrap();
    assert_eq!(
        service_pods(&c, &v1.svc)
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["shop/web/v1"]
    );
    assert!(find_service(&objects, &c, "shop", "web").unwrap().is_some());
    assert!(find_service(&objects, &c, "shop", "nope")
        .unwrap()
        .is_none());
}
