use serde_json::json;

use super::*;

fn origin() -> Origin {
    Origin::new("shop/web", "shop/web.yaml", 3)
}

#[test]
fn stamps_ownership_and_source() {
    let o = MeshObject::builder(
        "istio",
        "networking.istio.io/v1",
        "VirtualService",
        "shop",
        "web",
        &origin(),
    )
    .spec(json!({"hosts": ["web"]}))
    .build();
    let body = o.body.value();
    let md = &body["metadata"];
    assert_eq!(md["labels"][MANAGED_BY], "meshplan");
    assert_eq!(md["labels"][INTENT], "web");
    assert_eq!(md["labels"][INTENT_NAMESPACE], "shop");
    assert_eq!(md["annotations"][SOURCE], "shop/web.yaml:3");
    assert_eq!(md["annotations"][CONTENT_HASH].as_str().unwrap().len(), 16);
    assert_eq!(
        o.file_path(),
        "shop/networking.istio.io.virtualservice-web.yaml"
    );
}

#[test]
fn the_body_is_the_json_of_the_whole_tree() {
    let hash = |o: &MeshObject| o.body.value()["metadata"]["annotations"][CONTENT_HASH].clone();
    let bare = MeshObject::builder("x", "v1", "ConfigMap", "ns", "a", &origin()).build();
    let expected = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": "ns",
            "labels": {MANAGED_BY: MANAGER, INTENT: "web", INTENT_NAMESPACE: "shop"},
            "annotations": {SOURCE: "shop/web.yaml:3", CONTENT_HASH: hash(&bare)}},
    });
    assert_eq!(bare.body.json(), serde_json::to_string(&expected).unwrap());
    let full = MeshObject::builder("x", "v1", "ConfigMap", "ns", "a", &origin())
        .label("l", "\"q\"")
        .field("data", json!({"k": "v"}))
        .field("immutable", json!(true))
        .build();
    let mut expected = expected;
    expected["metadata"]["labels"]["l"] = json!("\"q\"");
    expected["metadata"]["annotations"][CONTENT_HASH] = hash(&full);
    expected["data"] = json!({"k": "v"});
    expected["immutable"] = json!(true);
    assert_eq!(full.body.json(), serde_json::to_string(&expected).unwrap());
}

#[test]
fn a_typed_spec_is_written_as_serialised_and_hashed_as_its_tree() {
    // Declared in the order of the JSON names, as every `api` struct is.
    #[derive(serde::Serialize)]
    struct Spec {
        expr: &'static str,
        labels: std::collections::BTreeMap<&'static str, &'static str>,
        record: &'static str,
    }
    let spec = Spec {
        expr: "x{a=\"b\"}",
        labels: [("z", "1"), ("a", "2")].into(),
        record: "r",
    };
    let typed = MeshObject::builder("x", "v1", "Service", "ns", "a", &origin())
        .spec_typed(&spec)
        .build();
    let tree = MeshObject::builder("x", "v1", "Service", "ns", "a", &origin())
        .spec(json!({"record": "r", "expr": "x{a=\"b\"}", "labels": {"z": "1", "a": "2"}}))
        .build();
    assert!(typed
        .body
        .json()
        .ends_with(r#","spec":{"expr":"x{a=\"b\"}","labels":{"a":"2","z":"1"},"record":"r"}}"#));
    let hash = |o: &MeshObject| o.body.value()["metadata"]["annotations"][CONTENT_HASH].clone();
    assert_eq!(hash(&typed), hash(&tree));
    assert_eq!(typed.body.value(), tree.body.value());
}

#[test]
fn the_hash_follows_content_not_key_order() {
    let a = MeshObject::builder("x", "v1", "Service", "ns", "a", &origin())
        .spec(json!({"a": 1, "b": 2}))
        .build();
    let mut m = serde_json::Map::new();
    m.insert("b".into(), json!(2));
    m.insert("a".into(), json!(1));
    let b = MeshObject::builder("x", "v1", "Service", "ns", "a", &origin())
        .spec(Value::Object(m))
        .build();
    let c = MeshObject::builder("x", "v1", "Service", "ns", "a", &origin())
        .spec(json!({"a": 1, "b": 3}))
        .build();
    let hash = |o: &MeshObject| o.body.value()["metadata"]["annotations"][CONTENT_HASH].clone();
    assert_eq!(hash(&a), hash(&b));
    assert_ne!(hash(&a), hash(&c));
}

#[test]
fn identical_objects_of_two_targets_become_one() {
    let mk = |emitter: &'static str, ann: &str, port: u32| {
        MeshObject::builder(emitter, "v1", "Service", "ns", "web-v1", &origin())
            .annotation(ann, "x")
            .spec(json!({"ports": [{"port": port}]}))
            .build()
    };
    let merged =
        merge_duplicates(vec![mk("gateway-api", "a", 80), mk("linkerd", "b", 80)]).unwrap();
    assert_eq!(merged.len(), 1);
    let body = merged[0].body.value();
    let ann = &body["metadata"]["annotations"];
    assert_eq!(
        (ann["a"].as_str(), ann["b"].as_str()),
        (Some("x"), Some("x"))
    );
    let err =
        merge_duplicates(vec![mk("gateway-api", "a", 80), mk("linkerd", "b", 81)]).unwrap_err();
    assert_eq!(err.object, "Service ns/web-v1", "{err:?}");
    assert_eq!(err.emitters, ["gateway-api", "linkerd"]);
    // Others keep their order around the merged ones.
    let named = |name: &str| {
        MeshObject::builder("x", "v1", "Service", "ns", name, &origin())
            .spec(json!({}))
            .build()
    };
    let mut objects = vec![
        named("a"),
        mk("gateway-api", "a", 80),
        mk("linkerd", "b", 80),
    ];
    objects.extend([named("x"), named("y"), named("y"), named("z")]);
    let names: Vec<String> = merge_duplicates(objects)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["a", "web-v1", "x", "y", "z"]);
}

#[test]
fn sorts_by_kind_group_namespace_name() {
    let mk = |api: &'static str, kind: &'static str, ns: &str, name: &str| {
        MeshObject::builder("x", api, kind, ns, name, &origin()).build()
    };
    let mut v = vec![
        mk("policy.linkerd.io/v1beta3", "HTTPRoute", "a", "z"),
        mk("v1", "Service", "a", "a"),
        mk("gateway.networking.k8s.io/v1", "HTTPRoute", "b", "a"),
        mk("gateway.networking.k8s.io/v1", "HTTPRoute", "a", "b"),
    ];
    sort(&mut v);
    let names: Vec<String> = v
        .iter()
        .map(|o| format!("{} {}", o.api_version, o.display_name()))
        .collect();
    assert_eq!(
        names,
        [
            "gateway.networking.k8s.io/v1 HTTPRoute a/b",
            "gateway.networking.k8s.io/v1 HTTPRoute b/a",
            "policy.linkerd.io/v1beta3 HTTPRoute a/z",
            "v1 Service a/a",
        ]
    );
}

#[test]
fn sorting_by_ranks_gives_the_order_of_the_whole_keys() {
    let kinds = [
        ("v1", "Service"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("policy.linkerd.io/v1beta3", "HTTPRoute"),
        ("networking.istio.io/v1", "VirtualService"),
    ];
    let emitters = ["istio", "linkerd", "gateway-api"];
    // A fixed pseudo-random sequence: every mix of kind, namespace,
    // name and emitter, some repeated, in no order.
    let mut x: u64 = 7;
    let mut next = move |n: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize % n
    };
    let mut v: Vec<MeshObject> = (0..500)
        .map(|_| {
            let (api, kind) = kinds[next(kinds.len())];
            let ns = format!("ns{}", next(7));
            // Names sharing their first 16 bytes and more, and names
            // ending inside them.
            let stem = ["svc", "a-long-shared-name-", "a-long-shared-name"][next(3)];
            let name = format!("{stem}{}", next(40));
            MeshObject::builder(emitters[next(3)], api, kind, &ns, &name, &origin()).build()
        })
        .collect();
    let mut expected = v.clone();
    sort_by_keys(&mut expected);
    sort(&mut v);
    let ids = |v: &[MeshObject]| -> Vec<String> {
        v.iter()
            .map(|o| format!("{} {} {}", o.api_version, o.display_name(), o.emitter))
            .collect()
    };
    assert_eq!(ids(&v), ids(&expected));
}

#[test]
fn sorts_one_identity_from_several_targets_in_target_order() {
    let mk = |emitter: &'static str| {
        MeshObject::builder(emitter, "v1", "Service", "a", "web-v1", &origin()).build()
    };
    for input in [
        ["gateway-api", "linkerd", "istio"],
        ["linkerd", "istio", "gateway-api"],
    ] {
        let mut v: Vec<MeshObject> = input.into_iter().map(mk).collect();
        sort(&mut v);
        let emitters: Vec<&str> = v.iter().map(|o| o.emitter).collect();
        assert_eq!(emitters, ["istio", "linkerd", "gateway-api"]);
    }
}

/// Every character that matters to JSON escaping (every control
/// character, `"`, `\`, DEL, multi-byte characters) at every place of
/// strings across the eight-byte words: written as serde_json writes them.
#[test]
fn strings_are_written_as_serde_json_writes_them_wherever_a_character_stands() {
    let mut special: Vec<char> = (0u8..0x20).map(char::from).collect();
    special.extend(['"', '\\', '\u{7f}', 'é', '€', '😀', '/', ' ', 'a']);
    for len in 0..20 {
        for at in 0..len.max(1) {
            for &c in &special {
                let s: String = (0..len).map(|i| if i == at { c } else { 'x' }).collect();
                let mut ours = Vec::new();
                write_str(&mut ours, &s);
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    serde_json::to_string(&s).unwrap(),
                    "{s:?}"
                );
            }
        }
    }
}

#[test]
fn values_are_written_as_serde_json_writes_them_in_either_order() {
    let tree = json!({"z": [1, 2.5, null, true, "a\"b"], "a": {"y": "\n", "b": -3}});
    let mut body = Vec::new();
    write_value(&mut body, &tree, false);
    assert_eq!(body, serde_json::to_vec(&tree).unwrap());
    let mut sorted = Vec::new();
    write_value(&mut sorted, &tree, true);
    assert_eq!(
        String::from_utf8(sorted).unwrap(),
        r#"{"a":{"b":-3,"y":"\n"},"z":[1,2.5,null,true,"a\"b"]}"#
    );
}
