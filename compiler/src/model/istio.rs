//! The Istio model: what Istio (sidecar mode) does with the objects an
//! emitter renders, read from their JSON bodies and written from Istio's
//! own reference documentation (never from meshplan's emitter).
//!
//! - Routing ([`routing`]) happens in the *caller's* sidecar: "a virtual
//!   service lets you configure how requests are routed to a service
//!   within an Istio service mesh" and the rules are applied by the
//!   client-side proxy (<https://istio.io/latest/docs/concepts/traffic-management/#virtual-services>).
//!   A VirtualService's `http` rules are tried in order, the first match
//!   wins; within a match block conditions are ANDed, blocks are ORed
//!   (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRoute>,
//!   `match`). Destinations resolve to the host Service's endpoints
//!   narrowed by the DestinationRule subset's labels
//!   (<https://istio.io/latest/docs/reference/config/networking/destination-rule/#Subset>).
//!   A host without a VirtualService gets Istio's default route: the
//!   Service's endpoints, with the mesh's default retry policy
//!   (<https://istio.io/latest/docs/reference/config/istio.mesh.v1alpha1/#MeshConfig>,
//!   `defaultHttpRetryPolicy`).
//! - Authorization ([`authz`]) happens in the *destination's* sidecar:
//!   PeerAuthentication decides whether plaintext is accepted
//!   (<https://istio.io/latest/docs/reference/config/security/peer_authentication/>),
//!   then AuthorizationPolicy CUSTOM, DENY, ALLOW in that order
//!   (<https://istio.io/latest/docs/reference/config/security/authorization-policy/>).
//!
//! Kinds other than VirtualService, DestinationRule (networking.istio.io),
//! AuthorizationPolicy, PeerAuthentication (security.istio.io) and core
//! Services are ignored (EnvoyFilter, PrometheusRule, other meshes'
//! same-named kinds). Where Istio breaks ties by creation time ("the
//! oldest wins"), objects carry none, so the model takes the first by
//! namespace and name. The root namespace is Istio's default,
//! `istio-system`; the cluster domain is `cluster.local`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    object_name, Answer, Cluster, KubeService, Labels, Model, ModelError, Problem, Request,
};
use crate::object::MeshObject;

mod authz;
mod hosts;
mod matching;
mod routing;
mod settings;
#[cfg(test)]
mod tests;

/// Istio's default root namespace: policies there are mesh-wide
/// (<https://istio.io/latest/docs/reference/config/security/authorization-policy/>:
/// "If set to root namespace, the policy applies to all namespaces in a mesh").
const ROOT_NAMESPACE: &str = "istio-system";

#[derive(Debug)]
pub struct Istio;

impl Model for Istio {
    fn answer(
        &self,
        objects: &[MeshObject],
        cluster: &Cluster,
        request: &Request,
    ) -> Result<Answer, ModelError> {
        let world = World::new(objects, cluster)?;
        Ok(Answer {
            routing: Some(routing::route(&world, request)?),
            authorization: Some(authz::authorize(&world, request)?),
        })
    }
}

/// One Istio (or Service) object as the model reads it.
#[derive(Debug)]
struct Obj {
    /// `Kind namespace/name` ([`object_name`]).
    id: String,
    namespace: String,
    metadata: Value,
    spec: Value,
}

/// The objects of the kinds the model reads, each list sorted by
/// namespace and name, and the cluster they act on.
#[derive(Debug)]
struct World<'a> {
    cluster: &'a Cluster,
    virtual_services: Vec<Obj>,
    destination_rules: Vec<Obj>,
    authorization_policies: Vec<Obj>,
    peer_authentications: Vec<Obj>,
    /// The cluster's Services, then the emitted ones it does not hold.
    services: Vec<KubeService>,
}

impl<'a> World<'a> {
    fn new(objects: &[MeshObject], cluster: &'a Cluster) -> Result<Self, ModelError> {
        let mut w = World {
            cluster,
            virtual_services: Vec::new(),
            destination_rules: Vec::new(),
            authorization_policies: Vec::new(),
            peer_authentications: Vec::new(),
            services: cluster.services.clone(),
        };
        let mut emitted_services = Vec::new();
        for o in objects {
            let list = match (o.group(), o.kind) {
                ("networking.istio.io", "VirtualService") => &mut w.virtual_services,
                ("networking.istio.io", "DestinationRule") => &mut w.destination_rules,
                ("security.istio.io", "AuthorizationPolicy") => &mut w.authorization_policies,
                ("security.istio.io", "PeerAuthentication") => &mut w.peer_authentications,
                ("", "Service") => &mut emitted_services,
                _ => continue,
            };
            list.push(Obj::of(o)?);
        }
        for list in [
            &mut w.virtual_services,
            &mut w.destination_rules,
            &mut w.authorization_policies,
            &mut w.peer_authentications,
            &mut emitted_services,
        ] {
            list.sort_by(|a, b| a.id.cmp(&b.id));
        }
        for o in &emitted_services {
            let s = hosts::kube_service(o)?;
            if w.service(&s.namespace, &s.name).is_none() {
                w.services.push(s);
            }
        }
        Ok(w)
    }
}

impl Obj {
    fn of(o: &MeshObject) -> Result<Obj, ModelError> {
        let id = object_name(o);
        let body = o.body.value();
        if !body.is_object() {
            return Err(Problem::invalid("the body is not a JSON object").of(id));
        }
        let metadata = body.get("metadata").cloned().unwrap_or(Value::Null);
        let namespace = o
            .namespace
            .clone()
            .or_else(|| metadata["namespace"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "default".to_owned());
        let spec = match body.get("spec") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(s) if s.is_object() => s.clone(),
            Some(_) => return Err(Problem::invalid("spec: expected an object").of(id)),
        };
        Ok(Obj {
            id,
            namespace,
            metadata,
            spec,
        })
    }

    /// `problem`, found in this object.
    fn err(&self, problem: Problem) -> ModelError {
        problem.of(self.id.clone())
    }

    /// The object is not what Istio accepts: `message` says why.
    fn invalid(&self, message: impl Into<String>) -> ModelError {
        self.err(Problem::invalid(message))
    }

    /// The answer depends on what the model does not know.
    fn unmodelled(&self, message: impl Into<String>) -> ModelError {
        self.err(Problem::unmodelled(message))
    }

    /// `v[key]`, absent when missing or null.
    fn get<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
        v.get(key).filter(|x| !x.is_null())
    }

    /// `v[key]` as a list (absent: empty).
    fn list<'v>(&self, v: &'v Value, key: &str) -> Result<&'v [Value], ModelError> {
        match Obj::get(v, key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(self.invalid(format!("{key}: expected a list"))),
        }
    }

    fn text<'v>(&self, v: &'v Value, key: &str) -> Result<Option<&'v str>, ModelError> {
        match Obj::get(v, key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(format!("{key}: expected a string"))),
        }
    }

    /// `v[key]` as a list of strings (absent: empty).
    fn texts<'v>(&self, v: &'v Value, key: &str) -> Result<Vec<&'v str>, ModelError> {
        self.list(v, key)?
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| self.invalid(format!("{key}: expected a list of strings")))
            })
            .collect()
    }

    fn map<'v>(
        &self,
        v: &'v Value,
        key: &str,
    ) -> Result<Option<&'v Map<String, Value>>, ModelError> {
        match Obj::get(v, key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.invalid(format!("{key}: expected an object"))),
        }
    }

    /// A map of strings (labels; absent: empty).
    fn labels(&self, v: &Value, key: &str) -> Result<Labels, ModelError> {
        let Some(m) = self.map(v, key)? else {
            return Ok(BTreeMap::new());
        };
        m.iter()
            .map(|(k, x)| match x {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(self.invalid(format!("{key}.{k}: expected a string"))),
            })
            .collect()
    }

    /// An integer (a JSON number, or a string of digits as YAML may give).
    fn int(&self, v: &Value, key: &str) -> Result<Option<i64>, ModelError> {
        match Obj::get(v, key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.invalid(format!("{key}: expected an integer"))),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| self.invalid(format!("{key}: expected an integer"))),
            Some(_) => Err(self.invalid(format!("{key}: expected an integer"))),
        }
    }

    /// A duration (`1s`, `0.5s`, `250ms`), in milliseconds.
    fn duration(&self, v: &Value, key: &str) -> Result<Option<u64>, ModelError> {
        match self.text(v, key)? {
            None => Ok(None),
            Some(d) => super::parse_duration_ms(d)
                .map(Some)
                .ok_or_else(|| self.invalid(format!("{key}: `{d}` is not a duration"))),
        }
    }

    /// An Istio `Percent` (`{value: 12.5}`).
    fn percent(&self, v: &Value, key: &str) -> Result<Option<f64>, ModelError> {
        let Some(p) = Obj::get(v, key) else {
            return Ok(None);
        };
        match Obj::get(p, "value") {
            None => Ok(Some(0.0)),
            Some(x) => x
                .as_f64()
                .filter(|f| (0.0..=100.0).contains(f))
                .map(Some)
                .ok_or_else(|| self.invalid(format!("{key}.value: expected a number in [0, 100]"))),
        }
    }
}

/// Whether a Service port's protocol is handled as HTTP (`http`, `http2`,
/// `grpc`): Istio's protocol selection
/// (<https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/>).
fn is_http(protocol: &str) -> bool {
    !matches!(
        protocol.to_ascii_lowercase().as_str(),
        "tcp" | "tls" | "mongo" | "mysql" | "redis" | "udp"
    )
}
