use std::collections::BTreeMap;

use meshplan_compiler::summary::ServiceSummary;

use super::*;

fn obj(ns: Option<&str>, kind: &str, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: "networking.istio.io/v1".into(),
        kind: kind.into(),
        namespace: ns.map(Into::into),
        name: name.into(),
    }
}

fn at() -> InventoryName {
    InventoryName::default()
}

/// The ConfigMaps as a reader lists them: name → `data`.
fn listed(stored: &Stored) -> BTreeMap<String, BTreeMap<String, String>> {
    std::iter::once(&stored.head)
        .chain(&stored.parts)
        .map(|p| {
            let data = serde_json::from_value(p.body["data"].clone()).unwrap();
            (p.name.clone(), data)
        })
        .collect()
}

/// `n` services in each of `namespaces`, five objects and a summary each.
fn inventory(namespaces: &[&str], n: usize) -> Inventory {
    let mut inv = Inventory {
        revision: Some("abc".into()),
        summary: Some(Summary::default()),
        ..Inventory::default()
    };
    for ns in namespaces {
        for i in 0..n {
            let name = format!("service-number-{i}");
            for kind in [
                "VirtualService",
                "DestinationRule",
                "PeerAuthentication",
                "AuthorizationPolicy",
                "PrometheusRule",
            ] {
                inv.objects.insert(obj(Some(ns), kind, &name));
            }
            let s = ServiceSummary {
                weights: [("v1".to_owned(), 90), ("v2".to_owned(), 10)].into(),
                rollout: Some("canary v1 → v2 in steps 10%, 50%".into()),
                ..ServiceSummary::default()
            };
            inv.summary
                .as_mut()
                .unwrap()
                .services
                .insert(format!("{ns}/{name}"), s);
        }
    }
    inv.objects.insert(obj(None, "ClusterThing", "x"));
    inv
}

#[test]
fn an_inventory_survives_its_configmaps() {
    let inv = inventory(&["a", "b"], 3);
    let stored = inv.to_configmaps(&at());
    assert_eq!(stored.parts.len(), 2);
    assert_eq!(
        Inventory::from_configmaps(&at(), &listed(&stored)),
        Some(inv.clone())
    );
    // Without a summary too: "none recorded" is not "an empty one".
    let bare = Inventory {
        summary: None,
        ..inv
    };
    let stored = bare.to_configmaps(&at());
    assert_eq!(
        Inventory::from_configmaps(&at(), &listed(&stored)),
        Some(bare)
    );
}

#[test]
fn no_configmap_nears_the_size_limit_however_large_the_repository() {
    // 10,000 services in one namespace: one ConfigMap before, 2.5 MB.
    let inv = inventory(&["big"], 10_000);
    let stored = inv.to_configmaps(&at());
    assert!(stored.parts.len() > 4, "{}", stored.parts.len());
    for p in std::iter::once(&stored.head).chain(&stored.parts) {
        let size = p.body.to_string().len();
        assert!(size < 2 * PART_BYTES, "{}: {size} bytes", p.name);
    }
    assert_eq!(
        Inventory::from_configmaps(&at(), &listed(&stored)),
        Some(inv)
    );
}

#[test]
fn one_service_changed_rewrites_one_part() {
    let before = inventory(&["a", "b"], 2_000).to_configmaps(&at());
    let mut inv = inventory(&["a", "b"], 2_000);
    inv.objects.insert(obj(Some("a"), "VirtualService", "new"));
    let after = inv.to_configmaps(&at());
    let hashes = |s: &Stored| -> BTreeMap<String, String> {
        s.parts
            .iter()
            .map(|p| (p.name.clone(), p.hash.clone()))
            .collect()
    };
    let (b, a) = (hashes(&before), hashes(&after));
    assert_eq!(b.keys().collect::<Vec<_>>(), a.keys().collect::<Vec<_>>());
    let changed = b.iter().filter(|(k, h)| a[*k] != **h).count();
    assert_eq!(changed, 1, "of {}", b.len());
    assert_eq!(before.head, after.head);
}

#[test]
fn a_layout_1_configmap_is_read_as_before() {
    let inv = inventory(&["a"], 2);
    let old = inv.to_layout_1_configmap(&at());
    let data: BTreeMap<String, String> = serde_json::from_value(old["data"].clone()).unwrap();
    let maps = BTreeMap::from([(at().name, data)]);
    assert_eq!(Inventory::from_configmaps(&at(), &maps), Some(inv));
    assert_eq!(Inventory::from_configmaps(&at(), &BTreeMap::new()), None);
}

#[test]
fn a_missing_part_leaves_its_objects_out_and_the_rest_in() {
    let inv = inventory(&["a", "b"], 2);
    let stored = inv.to_configmaps(&at());
    let mut maps = listed(&stored);
    let gone = stored
        .parts
        .iter()
        .find(|p| p.name.starts_with("meshplan.a."))
        .unwrap();
    maps.remove(&gone.name);
    let read = Inventory::from_configmaps(&at(), &maps).unwrap();
    assert!(read
        .objects
        .iter()
        .all(|o| o.namespace.as_deref() != Some("a")));
    assert_eq!(read.objects.len(), 11);
}

#[test]
fn every_name_gets_a_valid_label_value() {
    assert_eq!(label_value(&at()), "meshplan");
    let long = InventoryName {
        namespace: "x".into(),
        name: "n".repeat(100),
    };
    let v = label_value(&long);
    assert!(v.len() <= 63 && v.starts_with("h-"), "{v}");
    // Names near ConfigMaps' 253: the start, without a dangling `-`.
    for name in [
        "n".repeat(100),
        format!("{}-x", "n".repeat(199)),
        "n".repeat(250),
    ] {
        let long = InventoryName {
            namespace: "x".into(),
            name,
        };
        let part = part_name(&long, &"s".repeat(63), 4, 3);
        assert!(part.len() <= 253, "{part}");
        assert!(
            part.split('.')
                .all(|l| { !l.is_empty() && !l.starts_with('-') && !l.ends_with('-') }),
            "{part}"
        );
    }
}
