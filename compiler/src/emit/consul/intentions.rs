//! Consul's **ServiceIntentions** for an allow list: a source per caller
//! (the service account's name, or its Kubernetes Service, is the Consul
//! service name), L7 `permissions` for methods and paths, and a `*` deny
//! source for default deny.
//!
//! Kept apart from `consul.rs` because authorization follows its own rules
//! (only the most precise intention of a source applies, so named sources
//! inherit what the wildcards covering them are granted) and shares
//! nothing with routing but the object's name.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::obj;
use crate::ir::{Ir, Peer, Service};
use crate::object::MeshObject;

/// A source of intentions: the name and, with namespaces, the namespace.
type Source = (String, Option<String>);

#[derive(Clone, Debug)]
enum Grant {
    All,
    Permissions(Vec<Value>),
}

fn permissions(methods: &[String], paths: &[String]) -> Vec<Value> {
    let with_methods = |mut http: Map<String, Value>| {
        if !methods.is_empty() {
            http.insert("methods".into(), methods.into());
        }
        json!({"action": "allow", "http": http})
    };
    if paths.is_empty() {
        return vec![with_methods(Map::new())];
    }
    paths
        .iter()
        .map(|p| {
            let mut http = Map::new();
            match p.strip_suffix('*') {
                Some(prefix) => http.insert("pathPrefix".into(), prefix.into()),
                None => http.insert("pathExact".into(), p.clone().into()),
            };
            with_methods(http)
        })
        .collect()
}

/// Only the most precise intention of a source applies (Consul's
/// intentions "Precedence and match order": an exact name before a
/// wildcard), so a named source also gets what the wildcards covering it
/// (everyone, its namespace) are granted.
fn inherit_wildcards(sources: &mut BTreeMap<Source, Grant>, everyone: &Source) {
    let wildcards: Vec<(Source, Grant)> = sources
        .iter()
        .filter(|((name, _), _)| name == "*")
        .map(|(k, g)| (k.clone(), g.clone()))
        .collect();
    for ((name, namespace), grant) in sources.iter_mut() {
        if name == "*" {
            continue;
        }
        for ((_, wns), wgrant) in &wildcards {
            let covers = *wns == everyone.1 || wns == namespace;
            if !covers {
                continue;
            }
            match (grant.clone(), wgrant) {
                (Grant::All, _) => {}
                (_, Grant::All) => *grant = Grant::All,
                (Grant::Permissions(mut own), Grant::Permissions(more)) => {
                    own.extend(more.iter().cloned());
                    *grant = Grant::Permissions(own);
                }
            }
        }
    }
}

pub(super) fn intentions(
    ir: &Ir,
    s: &Service,
    report: &mut impl FnMut(String),
) -> Option<MeshObject> {
    let access = s.access.as_ref()?;
    let ns = |n: &str| ir.consul_namespaces.then(|| n.to_owned());
    let mut sources: BTreeMap<Source, Grant> = BTreeMap::new();
    for (i, rule) in access.rules.iter().enumerate() {
        if !rule.ports.is_empty() && rule.ports.len() < s.ports.len() {
            report(format!(
                "allow rule {i}: Consul intentions cover the whole service, not some of its ports"
            ));
            continue;
        }
        for p in &rule.from {
            let source = match p {
                // consul-k8s registers a pod under the Kubernetes Service
                // selecting it; a bare identity stands for a service of
                // the same name (as consul-k8s requires with ACLs).
                Peer::ServiceAccount {
                    namespace,
                    name,
                    service,
                } => (
                    service.clone().unwrap_or_else(|| name.clone()),
                    ns(namespace),
                ),
                Peer::Namespace(n) if ir.consul_namespaces => ("*".into(), Some(n.clone())),
                Peer::Namespace(n) => {
                    report(format!("allow rule {i}: Consul without namespaces cannot name namespace `{n}`: list its services, or set `consul.namespaces: true` in meshplan.yaml (Consul Enterprise)"));
                    continue;
                }
                // Consul admits only mesh callers through intentions: every
                // service is the most a wildcard can name.
                Peer::AnyNamespace | Peer::Anyone => ("*".into(), ns("*")),
            };
            let grant = sources
                .entry(source)
                .or_insert_with(|| Grant::Permissions(Vec::new()));
            match grant {
                Grant::All => {}
                _ if rule.methods.is_empty() && rule.paths.is_empty() => *grant = Grant::All,
                Grant::Permissions(v) => v.extend(permissions(&rule.methods, &rule.paths)),
            }
        }
    }
    let everyone: Source = ("*".into(), ns("*"));
    inherit_wildcards(&mut sources, &everyone);
    let mut out: Vec<Value> = Vec::new();
    for ((name, namespace), grant) in &sources {
        let mut v = json!({"name": name});
        if let Some(n) = namespace {
            v["namespace"] = n.clone().into();
        }
        match grant {
            Grant::All => v["action"] = "allow".into(),
            Grant::Permissions(p) => {
                let mut p = p.clone();
                if access.default_deny {
                    // A request matching none of a source's permissions
                    // falls to the default intention policy (Consul's
                    // service-intentions reference, `Permissions`), which
                    // may allow: deny it here.
                    p.push(json!({"action": "deny", "http": {"pathPrefix": "/"}}));
                }
                v["permissions"] = p.into();
            }
        }
        out.push(v);
    }
    if access.default_deny && !sources.contains_key(&everyone) {
        let mut v = json!({"name": "*", "action": "deny"});
        if let Some(n) = everyone.1 {
            v["namespace"] = n.into();
        }
        out.push(v);
    }
    Some(obj(
        "ServiceIntentions",
        s,
        json!({"destination": {"name": s.host}, "sources": out}),
    ))
}
