//! The config entries among the objects, indexed as Consul stores them:
//! by kind and Consul service.
//!
//! - `metadata.name` names the service of ServiceDefaults, ServiceRouter,
//!   ServiceSplitter and ServiceResolver; ServiceIntentions name theirs in
//!   `spec.destination` ("ServiceIntentions Special Case",
//!   <https://developer.hashicorp.com/consul/docs/k8s/crds>).
//! - Consul CE: "the namespace of the custom resource is also ignored",
//!   and of two resources with the same kind and name "the last one you
//!   create is not able to sync" — which one is unknowable here, so the
//!   model refuses the pair. ProxyDefaults and Mesh are singletons
//!   (`global`, `mesh`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Sid, DEFAULT_NS};
use crate::model::{object_name, ModelError, Problem};
use crate::object::MeshObject;

/// One config entry.
#[derive(Debug)]
pub(super) struct Entry {
    /// `Kind namespace/name`, for answers and errors.
    pub(super) name: String,
    pub(super) spec: Value,
}

impl Entry {
    /// `problem`, found in this entry.
    pub(super) fn err(&self, problem: Problem) -> ModelError {
        problem.of(self.name.clone())
    }

    /// The entry is not what Consul accepts: `message` says why.
    pub(super) fn invalid(&self, message: impl Into<String>) -> ModelError {
        self.err(Problem::invalid(message))
    }

    /// The answer depends on what the model does not know.
    pub(super) fn unmodelled(&self, message: impl Into<String>) -> ModelError {
        self.err(Problem::unmodelled(message))
    }
}

#[derive(Debug, Default)]
pub(super) struct Entries {
    /// Consul Enterprise namespaces (mirrored) are in use.
    pub(super) namespaces: bool,
    pub(super) defaults: BTreeMap<Sid, Entry>,
    pub(super) resolvers: BTreeMap<Sid, Entry>,
    pub(super) routers: BTreeMap<Sid, Entry>,
    pub(super) splitters: BTreeMap<Sid, Entry>,
    /// By destination; a `*` namespace or name is a wildcard.
    pub(super) intentions: BTreeMap<Sid, Entry>,
    pub(super) proxy_defaults: Option<Entry>,
    pub(super) mesh: Option<Entry>,
}

const KINDS: &[&str] = &[
    "ServiceDefaults",
    "ServiceResolver",
    "ServiceRouter",
    "ServiceSplitter",
    "ServiceIntentions",
    "ProxyDefaults",
    "Mesh",
];

/// Whether `v` names a namespace other than `default` anywhere (an
/// Enterprise field: "In Consul OSS, the only allowable value for either
/// namespace field is `default`", intentions overview).
fn names_namespace(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, x)| {
            (k == "namespace" && x.as_str().is_some_and(|s| !s.is_empty() && s != DEFAULT_NS))
                || names_namespace(x)
        }),
        Value::Array(a) => a.iter().any(names_namespace),
        _ => false,
    }
}

impl Entries {
    pub(super) fn of(objects: &[MeshObject]) -> Result<Entries, ModelError> {
        let ours: Vec<(&MeshObject, Value)> = objects
            .iter()
            .filter(|o| o.group() == "consul.hashicorp.com" && KINDS.contains(&o.kind))
            .map(|o| {
                let spec = o.body.value().get("spec").cloned().unwrap_or(Value::Null);
                (o, spec)
            })
            .collect();
        let mut out = Entries {
            namespaces: ours.iter().any(|(_, spec)| names_namespace(spec)),
            ..Entries::default()
        };
        for (o, spec) in ours {
            out.add(o, spec)?;
        }
        Ok(out)
    }

    fn add(&mut self, o: &MeshObject, spec: Value) -> Result<(), ModelError> {
        let entry = Entry {
            name: object_name(o),
            spec,
        };
        if !entry.spec.is_object() {
            return Err(entry.invalid("no spec"));
        }
        let k8s_ns = o.namespace.as_deref().unwrap_or(DEFAULT_NS);
        let ns = if self.namespaces {
            k8s_ns.to_owned()
        } else {
            DEFAULT_NS.to_owned()
        };
        let (map, key) = match o.kind {
            "ProxyDefaults" | "Mesh" => {
                let (slot, want) = match o.kind {
                    "Mesh" => (&mut self.mesh, "mesh"),
                    _ => (&mut self.proxy_defaults, "global"),
                };
                if o.name != want {
                    return Err(entry.invalid(format!("{} must be named `{want}`", o.kind)));
                }
                if let Some(prev) = slot {
                    return Err(entry.invalid(format!("conflicts with {}", prev.name)));
                }
                *slot = Some(entry);
                return Ok(());
            }
            "ServiceIntentions" => {
                let dest = entry.spec.get("destination");
                let name = super::text(dest, "name");
                if name.is_empty() {
                    return Err(entry.invalid("spec.destination.name is required"));
                }
                let dest_ns = super::text(dest, "namespace");
                let ns = if dest_ns.is_empty() {
                    ns
                } else {
                    dest_ns.to_owned()
                };
                (&mut self.intentions, (ns, name.to_owned()))
            }
            "ServiceDefaults" => (&mut self.defaults, (ns, o.name.clone())),
            "ServiceResolver" => (&mut self.resolvers, (ns, o.name.clone())),
            "ServiceRouter" => (&mut self.routers, (ns, o.name.clone())),
            _ => (&mut self.splitters, (ns, o.name.clone())),
        };
        if let Some(prev) = map.get(&key) {
            return Err(entry.invalid(format!(
                "{} {}/{} is already configured by {}; Consul syncs only one",
                o.kind, key.0, key.1, prev.name
            )));
        }
        map.insert(key, entry);
        Ok(())
    }
}
