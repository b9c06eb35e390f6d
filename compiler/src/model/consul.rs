//! The Consul model: what Consul service mesh on Kubernetes (consul-k8s,
//! transparent proxy, Envoy sidecars) does with the config entries an
//! emitter renders as custom resources, read from their JSON bodies and
//! written from Consul's and consul-k8s's own documentation (never from
//! meshplan's emitter).
//!
//! - Routing ([`chain`]) follows the discovery chain
//!   (<https://developer.hashicorp.com/consul/docs/connect/l7-traffic>):
//!   ServiceRouter (routes in order, the first match wins, unmatched
//!   traffic goes to the default service), ServiceSplitter (weights),
//!   ServiceResolver (subsets, default subset, redirect, failover);
//!   routers and splitters need an HTTP-based protocol (ServiceDefaults).
//! - Authorization ([`intentions`]) happens at the destination's sidecar:
//!   mTLS first (ServiceDefaults `mutualTLSMode`), then the intention of
//!   highest precedence whose source names the caller
//!   (<https://developer.hashicorp.com/consul/docs/connect/intentions>,
//!   "Precedence and match order").
//!
//! # Kubernetes integration (consul-k8s)
//!
//! - A pod's Consul service is the Kubernetes Service that selects it,
//!   named like it (the endpoints controller registers one instance per
//!   Service selecting the pod,
//!   <https://developer.hashicorp.com/consul/docs/k8s/connect>). The
//!   `consul.hashicorp.com/connect-service` annotation is not in the
//!   cluster model; a caller no Service selects is taken as the service
//!   named after its ServiceAccount (what consul-k8s requires of the
//!   pair when ACLs are on).
//! - Instances' `Service.Meta`: consul-k8s registers `pod-name`,
//!   `k8s-service-name`, `k8s-namespace`, `managed-by`, `synthetic-node`,
//!   and one key per `consul.hashicorp.com/service-meta-<key>: <value>`
//!   pod annotation. Pod labels are *not* copied; the model assumes, as
//!   meshplan documents (docs/meshes.md, "Consul"), that each pod carries
//!   a `service-meta-<label>` annotation for each of its labels.
//! - Namespaces (<https://developer.hashicorp.com/consul/docs/k8s/crds>,
//!   "Kubernetes Namespaces"): Consul CE ignores Kubernetes namespaces —
//!   services and config entries of every namespace share one registry,
//!   and a second custom resource of the same kind and name cannot sync
//!   (a [`ModelError`]). When any object names a Consul namespace the
//!   model takes Consul Enterprise with namespaces mirrored
//!   (`mirroringK8S`): each Kubernetes namespace is the Consul namespace
//!   of the same name.
//!
//! # Assumptions
//!
//! - ACLs are disabled (the Helm chart's default), so the default
//!   intention policy is `allow`: "If the configuration is set `allow`,
//!   then all service-to-service connections in the mesh will be allowed
//!   by default" (intentions overview). Mesh-wide default deny is a
//!   `*` → `*` deny intention.
//! - Permissive mTLS is enabled in the Mesh entry unless a Mesh object
//!   says otherwise.
//! - All instances are healthy; a `datacenter`, `peer`, `partition` or
//!   `samenessGroup` target is outside this cluster (its share is
//!   recorded under [`super::NO_POD`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{selects, Answer, Cluster, Labels, Model, ModelError, Pod, Request, Routing, Source};
use crate::object::MeshObject;

mod chain;
mod entries;
mod filter;
mod http;
mod intentions;
#[cfg(test)]
mod tests;

use entries::Entries;

/// A Consul service: (Consul namespace, name).
type Sid = (String, String);

/// Consul's only namespace in CE.
const DEFAULT_NS: &str = "default";

#[derive(Debug)]
pub struct Consul;

impl Model for Consul {
    fn answer(
        &self,
        objects: &[MeshObject],
        cluster: &Cluster,
        request: &Request,
    ) -> Result<Answer, ModelError> {
        let Some(svc) = cluster.service(&request.namespace, &request.service) else {
            return Ok(Answer {
                routing: Some(Routing::NoRoute),
                authorization: None,
            });
        };
        let mesh = Mesh {
            cluster,
            entries: Entries::of(objects)?,
        };
        let sid = (mesh.cns(&svc.namespace), svc.name.clone());
        let routing = if svc.ports.iter().any(|p| p.port == request.port) {
            chain::route(&mesh, &sid, request)?
        } else {
            Routing::NoRoute
        };
        let verdict = intentions::authorize(&mesh, &sid, request)?;
        let mut verdicts = BTreeMap::new();
        if !svc.selector.is_empty() {
            for pod in cluster.select(&svc.namespace, &svc.selector) {
                verdicts.insert(pod.id.clone(), verdict.clone());
            }
        }
        Ok(Answer {
            routing: Some(routing),
            authorization: Some(verdicts),
        })
    }
}

/// The cluster and the config entries, as Consul sees them.
#[derive(Debug)]
struct Mesh<'a> {
    cluster: &'a Cluster,
    entries: Entries,
}

/// A registered service instance: a pod and its service metadata.
#[derive(Debug)]
struct Instance<'a> {
    pod: &'a Pod,
    service: String,
    meta: BTreeMap<String, String>,
}

impl<'a> Mesh<'a> {
    /// The Consul namespace of a Kubernetes namespace.
    fn cns(&self, k8s_namespace: &str) -> String {
        if self.entries.namespaces {
            k8s_namespace.to_owned()
        } else {
            DEFAULT_NS.to_owned()
        }
    }

    /// The instances of `sid`: the pods of every Kubernetes Service
    /// registered under it.
    fn instances(&self, sid: &Sid) -> Vec<Instance<'a>> {
        let mut out = Vec::new();
        let cluster: &'a Cluster = self.cluster;
        for s in &cluster.services {
            if s.name != sid.1 || self.cns(&s.namespace) != sid.0 || s.selector.is_empty() {
                continue;
            }
            for pod in cluster.select(&s.namespace, &s.selector) {
                let mut meta = BTreeMap::from([
                    ("pod-name".to_owned(), pod.id.clone()),
                    ("k8s-service-name".to_owned(), s.name.clone()),
                    ("k8s-namespace".to_owned(), s.namespace.clone()),
                    (
                        "managed-by".to_owned(),
                        "consul-k8s-endpoints-controller".to_owned(),
                    ),
                    ("synthetic-node".to_owned(), "true".to_owned()),
                ]);
                // Assumed `service-meta-<label>` annotations.
                meta.extend(pod.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                out.push(Instance {
                    pod,
                    service: s.name.clone(),
                    meta,
                });
            }
        }
        out
    }

    /// The Consul service a workload calls from.
    fn caller(&self, namespace: &str, service_account: &str, labels: &Labels) -> Sid {
        let name = self
            .cluster
            .services
            .iter()
            .find(|s| {
                s.namespace == namespace && !s.selector.is_empty() && selects(&s.selector, labels)
            })
            .map_or(service_account, |s| s.name.as_str());
        (self.cns(namespace), name.to_owned())
    }

    /// The protocol of `sid`: ServiceDefaults, else ProxyDefaults, else
    /// `tcp` (service-defaults reference, `Protocol`).
    fn protocol(&self, sid: &Sid) -> String {
        let from_defaults = self
            .entries
            .defaults
            .get(sid)
            .and_then(|e| e.spec.get("protocol"))
            .and_then(Value::as_str);
        let from_proxy = || {
            self.entries
                .proxy_defaults
                .as_ref()
                .and_then(|e| e.spec.get("config"))
                .and_then(|c| c.get("protocol"))
                .and_then(Value::as_str)
        };
        from_defaults
            .or_else(from_proxy)
            .filter(|p| !p.is_empty())
            .unwrap_or("tcp")
            .to_owned()
    }
}

/// Whether a protocol is HTTP-based (`http`, `http2`, `grpc`).
fn http_like(protocol: &str) -> bool {
    matches!(protocol, "http" | "http2" | "grpc")
}

/// A string field of a JSON object (`""` when absent).
fn text<'v>(v: Option<&'v Value>, key: &str) -> &'v str {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The Source of a request as the destination's sidecar sees it.
fn workload(source: &Source) -> Option<(&str, &str, &Labels)> {
    match source {
        Source::Workload {
            namespace,
            service_account,
            labels,
        } => Some((namespace, service_account, labels)),
        Source::Unauthenticated { .. } => None,
    }
}
