//! The allow list lowered: every caller resolved to an identity, every
//! port to the service's port.

use meshplan_policy_lang::intent::{workloads, Caller, PortRef};
use meshplan_policy_lang::resolve::ServiceIndex;

use super::LowerError;
use crate::ir::{Access, AllowRule, Peer, Port};

pub(super) fn access(
    index: &ServiceIndex<'_>,
    namespace: &str,
    a: &meshplan_policy_lang::intent::Access,
    find_port: &dyn Fn(&PortRef) -> Result<Port, LowerError>,
    fail: &dyn Fn(String) -> LowerError,
) -> Result<Access, LowerError> {
    let mut rules = Vec::new();
    for rule in &a.allow {
        let from = rule
            .from
            .iter()
            .map(|c| {
                peer(index, namespace, c).ok_or_else(|| fail(format!("unresolved caller {c:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ports = rule
            .ports
            .iter()
            .map(find_port)
            .collect::<Result<Vec<_>, _>>()?;
        rules.push(AllowRule {
            from,
            ports,
            methods: rule
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            paths: rule.paths.clone(),
        });
    }
    Ok(Access {
        default_deny: a.default_deny,
        rules,
    })
}

fn peer(index: &ServiceIndex<'_>, from_ns: &str, c: &Caller) -> Option<Peer> {
    if c.anyone == Some(true) {
        return Some(Peer::Anyone);
    }
    if let Some(s) = &c.service {
        // Resolved exactly as check resolves it.
        let (intent, namespace) = index.resolve(from_ns, s).ok()?;
        return Some(Peer::ServiceAccount {
            namespace: namespace.to_owned(),
            name: workloads::service_account(intent).to_owned(),
            service: Some(workloads::host(intent).to_owned()),
        });
    }
    if let Some(sa) = &c.service_account {
        let (namespace, name) = sa.split_once('/')?;
        return Some(Peer::ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
            service: None,
        });
    }
    match c.namespace.as_deref()? {
        "*" => Some(Peer::AnyNamespace),
        ns => Some(Peer::Namespace(ns.into())),
    }
}
