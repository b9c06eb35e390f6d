//! Authorization, modelled on Linkerd's emojivoto policy walk-through
//! ("Restricting access to services", "Configuring per-route policy").

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::model::testing::{kube_service, labels, obj, pod};

const TD: &str = "cluster.local";

fn emojivoto() -> Cluster {
    Cluster {
        trust_domain: TD.into(),
        pods: vec![
            pod("emojivoto/emoji", &[("app", "emoji-svc")], "emoji", &[8080]),
            pod("emojivoto/web", &[("app", "web-svc")], "web", &[8080]),
        ],
        services: vec![kube_service(
            "emojivoto",
            "emoji-svc",
            &[("app", "emoji-svc")],
            &[("grpc", 8080, 8080)],
        )],
    }
}

fn policy_obj(kind: &'static str, name: &str, spec: Value) -> MeshObject {
    let api = match kind {
        "Server" | "HTTPRoute" => "policy.linkerd.io/v1beta3",
        _ => "policy.linkerd.io/v1alpha1",
    };
    obj(api, kind, "emojivoto", name, spec, &[])
}

fn server(access: &str) -> MeshObject {
    policy_obj(
        "Server",
        "emoji-grpc",
        json!({"podSelector": {"matchLabels": {"app": "emoji-svc"}}, "port": "grpc",
               "proxyProtocol": "HTTP/2", "accessPolicy": access}),
    )
}

fn allow(name: &str, target: Value, authn: &str) -> [MeshObject; 2] {
    [
        policy_obj(
            "AuthorizationPolicy",
            name,
            json!({"targetRef": target, "requiredAuthenticationRefs": [
                {"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": name}]}),
        ),
        policy_obj(
            "MeshTLSAuthentication",
            name,
            json!({"identities": [authn]}),
        ),
    ]
}

fn on_server() -> Value {
    json!({"group": "policy.linkerd.io", "kind": "Server", "name": "emoji-grpc"})
}

fn from(ns: &str, sa: &str) -> Request {
    Request {
        source: Source::Workload {
            namespace: ns.into(),
            service_account: sa.into(),
            labels: BTreeMap::new(),
        },
        namespace: "emojivoto".into(),
        service: "emoji-svc".into(),
        port: 8080,
        method: "POST".into(),
        path: "/emojivoto.v1.EmojiService/ListAll".into(),
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
    }
}

fn verdict(objects: &[MeshObject], r: &Request) -> Verdict {
    let v = verdicts(objects, &emojivoto(), r).expect("answers");
    assert_eq!(v.len(), 1, "{v:?}");
    v.into_values().next().expect("one pod")
}

fn web_id() -> String {
    format!("web.emojivoto.serviceaccount.identity.linkerd.{TD}")
}

#[test]
fn without_a_server_the_default_policy_admits_everyone() {
    let unauthenticated = Request {
        source: Source::Unauthenticated { namespace: None },
        ..from("x", "x")
    };
    assert_eq!(verdict(&[], &unauthenticated), Verdict::Allow { by: None });
}

#[test]
fn a_server_denies_what_no_policy_authorizes() {
    let mut objects = vec![server("deny")];
    assert_eq!(
        verdict(&objects, &from("emojivoto", "web")),
        Verdict::Deny {
            by: "Server emojivoto/emoji-grpc".into()
        }
    );
    objects.extend(allow("emoji-grpc", on_server(), &web_id()));
    let by = Some("AuthorizationPolicy emojivoto/emoji-grpc".to_owned());
    assert_eq!(
        verdict(&objects, &from("emojivoto", "web")),
        Verdict::Allow { by }
    );
    assert!(!verdict(&objects, &from("emojivoto", "voting")).allowed());
    let unauthenticated = Request {
        source: Source::Unauthenticated {
            namespace: Some("emojivoto".into()),
        },
        ..from("x", "x")
    };
    assert!(!verdict(&objects, &unauthenticated).allowed());
}

#[test]
fn identities_may_be_suffixes_or_references() {
    let mut objects = vec![server("deny")];
    objects.extend(allow(
        "any-in-ns",
        on_server(),
        &format!("*.batch.serviceaccount.identity.linkerd.{TD}"),
    ));
    assert!(verdict(&objects, &from("batch", "job")).allowed());
    assert!(!verdict(&objects, &from("batchy", "job")).allowed());
    let refs = policy_obj(
        "MeshTLSAuthentication",
        "any-in-ns",
        json!({"identityRefs": [{"kind": "ServiceAccount", "name": "web"}, {"kind": "Namespace", "name": "ops"}]}),
    );
    objects[2] = refs;
    assert!(verdict(&objects, &from("emojivoto", "web")).allowed());
    assert!(verdict(&objects, &from("ops", "anyone")).allowed());
    assert!(!verdict(&objects, &from("batch", "job")).allowed());
}

#[test]
fn access_policies_are_default_authorizations() {
    let unauth = |ns: Option<&str>| Request {
        source: Source::Unauthenticated {
            namespace: ns.map(str::to_owned),
        },
        ..from("x", "x")
    };
    let s = [server("all-authenticated")];
    assert!(verdict(&s, &from("any", "one")).allowed());
    assert!(!verdict(&s, &unauth(Some("x"))).allowed());
    let s = [server("cluster-unauthenticated")];
    assert!(verdict(&s, &unauth(Some("x"))).allowed());
    assert!(!verdict(&s, &unauth(None)).allowed());
    let bad = [server("sometimes")];
    assert!(verdicts(&bad, &emojivoto(), &from("a", "b")).is_err());
}

#[test]
fn with_routes_a_request_is_authorized_on_the_route_it_matches() {
    let route = policy_obj(
        "HTTPRoute",
        "list",
        json!({"parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "emoji-grpc"}],
               "rules": [{"matches": [{"path": {"type": "Exact", "value": "/emojivoto.v1.EmojiService/ListAll"}}]}]}),
    );
    let on_route = json!({"group": "policy.linkerd.io", "kind": "HTTPRoute", "name": "list"});
    let mut objects = vec![server("deny"), route];
    objects.extend(allow("list", on_route, &web_id()));
    assert!(verdict(&objects, &from("emojivoto", "web")).allowed());
    assert!(!verdict(&objects, &from("emojivoto", "voting")).allowed());
    let other = Request {
        path: "/emojivoto.v1.EmojiService/FindByShortcode".into(),
        ..from("emojivoto", "web")
    };
    let denied = verdict(&objects, &other);
    assert_eq!(
        denied,
        Verdict::Deny {
            by: "no route of Server emojivoto/emoji-grpc matches (404)".into()
        }
    );
    // The Server's authorizations apply on every route.
    objects.extend(allow(
        "ops",
        on_server(),
        &format!("*.ops.serviceaccount.identity.linkerd.{TD}"),
    ));
    assert!(verdict(&objects, &from("ops", "admin")).allowed());
}

#[test]
fn namespace_policies_and_service_accounts() {
    let mut objects = vec![server("deny")];
    objects.push(policy_obj(
        "AuthorizationPolicy",
        "ns-wide",
        json!({"targetRef": {"kind": "Namespace", "name": "emojivoto"},
               "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "web"}]}),
    ));
    assert!(verdict(&objects, &from("emojivoto", "web")).allowed());
    assert!(!verdict(&objects, &from("other", "web")).allowed());
}

#[test]
fn an_illegal_policy_is_ignored() {
    let mut objects = vec![server("deny")];
    objects.push(policy_obj(
        "AuthorizationPolicy",
        "dangling",
        json!({"targetRef": on_server(), "requiredAuthenticationRefs": [
            {"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "missing"}]}),
    ));
    assert!(!verdict(&objects, &from("emojivoto", "web")).allowed());
}

#[test]
fn networks_are_decided_only_when_they_cover_everything() {
    let mut objects = vec![server("deny")];
    objects.push(policy_obj(
        "AuthorizationPolicy",
        "net",
        json!({"targetRef": on_server(), "requiredAuthenticationRefs": [
            {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "net"}]}),
    ));
    objects.push(policy_obj(
        "NetworkAuthentication",
        "net",
        json!({"networks": [{"cidr": "0.0.0.0/0"}]}),
    ));
    let anyone = Request {
        source: Source::Unauthenticated { namespace: None },
        ..from("x", "x")
    };
    assert!(verdict(&objects, &anyone).allowed());
    objects[2] = policy_obj(
        "NetworkAuthentication",
        "net",
        json!({"networks": [{"cidr": "10.0.0.0/8"}]}),
    );
    assert!(verdicts(&objects, &emojivoto(), &anyone).is_err());
}

#[test]
fn overlapping_servers_are_refused() {
    let second = policy_obj(
        "Server",
        "emoji-all",
        json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["emoji-svc"]}]},
               "port": 8080}),
    );
    let e = verdicts(&[server("deny"), second], &emojivoto(), &from("a", "b")).unwrap_err();
    assert_eq!(e.object, "Server emojivoto/emoji-all");
    let message = e.problem.to_string();
    assert!(message.contains("Server emojivoto/emoji-grpc"), "{message}");
}

#[test]
fn a_server_on_another_port_leaves_this_one_to_the_default() {
    let admin = policy_obj(
        "Server",
        "admin",
        json!({"podSelector": {"matchLabels": labels(&[("app", "emoji-svc")])}, "port": 9990}),
    );
    assert_eq!(
        verdict(&[admin], &from("a", "b")),
        Verdict::Allow { by: None }
    );
}
