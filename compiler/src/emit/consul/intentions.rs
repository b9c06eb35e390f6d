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

use super::obj;
use crate::api::consul_hashicorp_com::{
    IntentionDestination, Permission, PermissionHttp, ServiceIntentionsSpec, SourceIntention,
};
use crate::ir::{Ir, Peer, Service};
use crate::object::MeshObject;

/// A source of intentions: the name and, with namespaces, the namespace.
type Source = (String, Option<String>);

#[derive(Clone, Debug)]
enum Grant<'a> {
    All,
    Permissions(Vec<Permission<'a>>),
}

fn permissions<'a>(methods: &'a [String], paths: &'a [String]) -> Vec<Permission<'a>> {
    let allow = |path_exact, path_prefix| Permission {
        action: "allow",
        http: PermissionHttp {
            methods,
            path_exact,
            path_prefix,
        },
    };
    if paths.is_empty() {
        return vec![allow(None, None)];
    }
    paths
        .iter()
        .map(|p| match p.strip_suffix('*') {
            Some(prefix) => allow(None, Some(prefix)),
            None => allow(Some(p.as_str()), None),
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
    let mut out: Vec<SourceIntention> = Vec::new();
    for ((name, namespace), grant) in &sources {
        let (action, permissions) = match grant {
            Grant::All => (Some("allow"), None),
            Grant::Permissions(p) => {
                let mut p = p.clone();
                if access.default_deny {
                    // A request matching none of a source's permissions
                    // falls to the default intention policy (Consul's
                    // service-intentions reference, `Permissions`), which
                    // may allow: deny it here.
                    p.push(Permission {
                        action: "deny",
                        http: PermissionHttp {
                            path_prefix: Some("/"),
                            ..PermissionHttp::default()
                        },
                    });
                }
                (None, Some(p))
            }
        };
        out.push(SourceIntention {
            action,
            name,
            namespace: namespace.as_deref(),
            permissions,
        });
    }
    if access.default_deny && !sources.contains_key(&everyone) {
        out.push(SourceIntention {
            action: Some("deny"),
            name: "*",
            namespace: everyone.1.as_deref(),
            permissions: None,
        });
    }
    let spec = ServiceIntentionsSpec {
        destination: IntentionDestination { name: &s.host },
        sources: out,
    };
    Some(obj("ServiceIntentions", s, &spec))
}
