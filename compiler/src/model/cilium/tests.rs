//! Policies modelled on Cilium's documentation examples (the "deathstar"
//! L7 example of the getting-started guide, the deny-policy table, the
//! service-account and namespace examples).

use serde_json::{json, Value};

use super::*;
use crate::model::testing::{self, labels};
use crate::model::{KubeService, Pod, ServicePort};

fn cnp(ns: &str, name: &str, spec: Value) -> MeshObject {
    testing::obj("cilium.io/v2", "CiliumNetworkPolicy", ns, name, spec, &[])
}

fn pod(ns: &str, id: &str, sa: &str, kv: &[(&str, &str)]) -> Pod {
    Pod {
        id: id.into(),
        namespace: ns.into(),
        labels: labels(kv),
        service_account: sa.into(),
        ports: vec![80],
    }
}

/// The deathstar (Service port 8080 → pod port 80), an empire ship, a
/// rebel ship, and a pod of another namespace.
fn cluster() -> Cluster {
    Cluster {
        trust_domain: "cluster.local".into(),
        pods: vec![
            pod(
                "default",
                "default/deathstar",
                "deathstar",
                &[("org", "empire"), ("class", "deathstar")],
            ),
            pod(
                "default",
                "default/tiefighter",
                "tie",
                &[("org", "empire"), ("class", "tiefighter")],
            ),
            pod(
                "default",
                "default/xwing",
                "xwing",
                &[("org", "alliance"), ("class", "xwing")],
            ),
            pod(
                "other",
                "other/tiefighter",
                "tie",
                &[("org", "empire"), ("class", "tiefighter")],
            ),
        ],
        services: vec![KubeService {
            namespace: "default".into(),
            name: "deathstar".into(),
            selector: labels(&[("org", "empire"), ("class", "deathstar")]),
            ports: vec![ServicePort {
                name: "http".into(),
                port: 8080,
                target_port: 80,
                protocol: "http".into(),
            }],
        }],
    }
}

fn request(c: &Cluster, from: &str, method: &str, path: &str) -> Request {
    Request {
        source: c
            .source(from)
            .unwrap_or(Source::Unauthenticated { namespace: None }),
        namespace: "default".into(),
        service: "deathstar".into(),
        port: 8080,
        method: method.into(),
        path: path.into(),
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
    }
}

fn verdict_of(objects: &[MeshObject], r: &Request) -> Verdict {
    let answer = Cilium.answer(objects, &cluster(), r).unwrap();
    assert_eq!(answer.routing, None);
    answer.authorization.unwrap()["default/deathstar"].clone()
}

fn allowed(objects: &[MeshObject], from: &str, method: &str, path: &str) -> bool {
    verdict_of(objects, &request(&cluster(), from, method, path)).allowed()
}

/// `sw_l3_l4_l7_policy.yaml` of the getting-started guide.
fn rule1() -> MeshObject {
    cnp(
        "default",
        "rule1",
        json!({
            "endpointSelector": {"matchLabels": {"org": "empire", "class": "deathstar"}},
            "ingress": [{
                "fromEndpoints": [{"matchLabels": {"org": "empire"}}],
                "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}],
                             "rules": {"http": [{"method": "POST", "path": "/v1/request-landing"}]}}]
            }]
        }),
    )
}

#[test]
fn the_deathstar_l7_example() {
    let objects = [rule1()];
    assert!(allowed(
        &objects,
        "default/tiefighter",
        "POST",
        "/v1/request-landing"
    ));
    // "Access denied": another path, the L7 proxy answers 403.
    assert_eq!(
        verdict_of(
            &objects,
            &request(&cluster(), "default/tiefighter", "PUT", "/v1/exhaust-port")
        ),
        Verdict::Deny {
            by: "CiliumNetworkPolicy default/rule1".into()
        }
    );
    // Paths are matched whole.
    assert!(!allowed(
        &objects,
        "default/tiefighter",
        "POST",
        "/v1/request-landing/x"
    ));
    // Not empire: dropped at L3.
    assert!(!allowed(
        &objects,
        "default/xwing",
        "POST",
        "/v1/request-landing"
    ));
    // An empire pod of another namespace: the selector stays in the policy's.
    assert!(!allowed(
        &objects,
        "other/tiefighter",
        "POST",
        "/v1/request-landing"
    ));
}

#[test]
fn without_policies_everything_is_allowed() {
    assert_eq!(
        verdict_of(&[], &request(&cluster(), "default/xwing", "GET", "/")),
        Verdict::Allow { by: None }
    );
}

#[test]
fn an_l4_rule_for_the_same_peer_voids_the_l7_rules() {
    let l4 = cnp(
        "default",
        "l4",
        json!({
            "endpointSelector": {"matchLabels": {"class": "deathstar"}},
            "ingress": [{"fromEndpoints": [{"matchLabels": {"org": "empire"}}],
                         "toPorts": [{"ports": [{"port": "80"}]}]}]
        }),
    );
    assert!(allowed(
        &[rule1(), l4],
        "default/tiefighter",
        "DELETE",
        "/anything"
    ));
}

#[test]
fn deny_rules_take_precedence() {
    let deny = cnp(
        "default",
        "deny-tie",
        json!({
            "endpointSelector": {},
            "ingressDeny": [{"fromEndpoints": [{"matchLabels": {"class": "tiefighter"}}],
                             "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]
        }),
    );
    assert_eq!(
        verdict_of(
            &[rule1(), deny],
            &request(
                &cluster(),
                "default/tiefighter",
                "POST",
                "/v1/request-landing"
            )
        ),
        Verdict::Deny {
            by: "CiliumNetworkPolicy default/deny-tie".into()
        }
    );
}

#[test]
fn enable_default_deny_false_leaves_other_traffic_alone() {
    let lenient = cnp(
        "default",
        "lenient",
        json!({
            "endpointSelector": {"matchLabels": {"class": "deathstar"}},
            "enableDefaultDeny": {"ingress": false},
            "ingress": [{"fromEndpoints": [{"matchLabels": {"org": "empire"}}],
                         "toPorts": [{"ports": [{"port": "80"}], "rules": {"http": [{"method": "GET"}]}}]}]
        }),
    );
    assert!(allowed(
        std::slice::from_ref(&lenient),
        "default/xwing",
        "POST",
        "/"
    ));
    // The L7 rules still apply to the peers and ports they select.
    assert!(!allowed(&[lenient], "default/tiefighter", "POST", "/"));
}

#[test]
fn service_accounts_namespaces_and_entities() {
    let by_sa = cnp(
        "default",
        "sa",
        json!({
            "endpointSelector": {"matchLabels": {"class": "deathstar"}},
            "ingress": [{"fromEndpoints": [{"matchLabels": {
                "k8s:io.kubernetes.pod.namespace": "other",
                "k8s:io.cilium.k8s.policy.serviceaccount": "tie"
            }}]}]
        }),
    );
    assert!(allowed(
        std::slice::from_ref(&by_sa),
        "other/tiefighter",
        "GET",
        "/"
    ));
    assert!(!allowed(&[by_sa], "default/tiefighter", "GET", "/"));
    let world = cnp(
        "default",
        "world",
        json!({"endpointSelector": {}, "ingress": [{"fromEntities": ["world"]}]}),
    );
    assert!(allowed(std::slice::from_ref(&world), "outside", "GET", "/"));
    assert!(!allowed(&[world], "default/xwing", "GET", "/"));
    let l4_only = cnp(
        "default",
        "any-source",
        json!({"endpointSelector": {}, "ingress": [{"toPorts": [{"ports": [{"port": "80"}]}]}]}),
    );
    assert!(allowed(
        std::slice::from_ref(&l4_only),
        "outside",
        "GET",
        "/"
    ));
    assert!(allowed(&[l4_only], "other/tiefighter", "GET", "/"));
    let nothing = cnp(
        "default",
        "deny-all",
        json!({"endpointSelector": {}, "ingress": [{}]}),
    );
    assert!(!allowed(&[nothing], "default/tiefighter", "GET", "/"));
}

#[test]
fn mutual_authentication_leaves_out_the_world() {
    let auth = cnp(
        "default",
        "auth",
        json!({
            "endpointSelector": {},
            "ingress": [{"fromEntities": ["all"], "authentication": {"mode": "required"}}]
        }),
    );
    assert!(allowed(
        std::slice::from_ref(&auth),
        "default/xwing",
        "GET",
        "/"
    ));
    let c = cluster();
    let mut probe = request(&c, "outside", "GET", "/");
    assert!(!verdict_of(std::slice::from_ref(&auth), &probe).allowed());
    // A pod of a namespace, labels unknown: still a Cilium identity.
    probe.source = Source::Unauthenticated {
        namespace: Some("other".into()),
    };
    assert!(verdict_of(&[auth], &probe).allowed());
}

#[test]
fn the_source_egress_applies() {
    let egress = cnp(
        "default",
        "xwing-egress",
        json!({
            "endpointSelector": {"matchLabels": {"class": "xwing"}},
            "egress": [{"toEndpoints": [{"matchLabels": {"class": "tiefighter"}}]}]
        }),
    );
    assert_eq!(
        verdict_of(&[egress], &request(&cluster(), "default/xwing", "GET", "/")),
        Verdict::Deny {
            by: "CiliumNetworkPolicy default/xwing-egress".into()
        }
    );
}

#[test]
fn queries_headers_and_clusterwide_policies() {
    let ccnp = testing::obj(
        "cilium.io/v2",
        "CiliumClusterwideNetworkPolicy",
        "",
        "headers",
        json!({
            "endpointSelector": {"matchLabels": {"class": "deathstar"}},
            "ingress": [{"fromEndpoints": [{}],
                         "toPorts": [{"ports": [{"port": "80"}],
                                      "rules": {"http": [{"path": "/api", "headers": ["X-My-Header: true"]}]}}]}]
        }),
        &[],
    );
    let c = cluster();
    let mut r = request(&c, "other/tiefighter", "GET", "/api");
    assert!(!verdict_of(std::slice::from_ref(&ccnp), &r).allowed());
    r.headers.insert("x-my-header".into(), "true".into());
    assert!(verdict_of(std::slice::from_ref(&ccnp), &r).allowed());
    // The path regex is matched against `:path`, query included.
    r.query.insert("a".into(), "1".into());
    assert!(!verdict_of(std::slice::from_ref(&ccnp), &r).allowed());
    // Clusterwide selectors match only pods.
    assert!(!verdict_of(&[ccnp], &request(&c, "outside", "GET", "/api")).allowed());
}

#[test]
fn malformed_policies_are_errors() {
    let c = cluster();
    let r = request(&c, "default/xwing", "GET", "/");
    for spec in [
        json!({"ingress": []}),
        json!({"endpointSelector": {}, "ingress": [{"fromEntities": ["galaxy"]}]}),
        json!({"endpointSelector": {}, "ingress": [{"toPorts": [{"rules": {"http": [{"path": "("}]}}]}]}),
        json!({"endpointSelector": {}, "ingress": "all"}),
    ] {
        assert!(Cilium
            .answer(&[cnp("default", "bad", spec)], &c, &r)
            .is_err());
    }
}
