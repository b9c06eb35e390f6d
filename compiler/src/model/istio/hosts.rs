//! Hosts, Services and the pods a route destination reaches.

use serde_json::Value;

use super::{Obj, World, ROOT_NAMESPACE};
use crate::model::{selects, KubeService, Labels, ModelError, Pod, ServicePort};

/// The Kubernetes cluster domain.
const DOMAIN: &str = "svc.cluster.local";

/// A host as written in a VirtualService or DestinationRule of
/// `namespace`, as a FQDN. "When short names are used (e.g. `reviews`
/// instead of `reviews.default.svc.cluster.local`), Istio will interpret
/// the short name based on the namespace of the rule"
/// (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#VirtualService>,
/// `hosts`); `reviews.bookinfo` and `reviews.bookinfo.svc` are the forms
/// Kubernetes DNS also resolves.
pub(super) fn fqdn(host: &str, namespace: &str) -> String {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "*" {
        return h;
    }
    match h.matches('.').count() {
        0 => format!("{h}.{namespace}.{DOMAIN}"),
        1 => format!("{h}.{DOMAIN}"),
        2 if h.ends_with(".svc") => format!("{h}.cluster.local"),
        _ => h,
    }
}

/// Whether a (FQDN) host pattern names `host`: exactly, or as a wildcard
/// prefix (`*.bookinfo.svc.cluster.local`; `*` alone names every host).
pub(super) fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => pattern == host,
    }
}

pub(super) fn service_fqdn(s: &KubeService) -> String {
    format!("{}.{}.{DOMAIN}", s.name, s.namespace)
}

/// An emitted core Service, read as the cluster's Services are. Its
/// ports' protocol is Istio's protocol selection: `appProtocol`, else the
/// port name's prefix (`http-web`), else sniffed (HTTP here)
/// (<https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/>).
pub(super) fn kube_service(o: &Obj) -> Result<KubeService, ModelError> {
    let name = o.metadata["name"]
        .as_str()
        .or_else(|| o.id.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    let mut ports = Vec::new();
    for p in o.list(&o.spec, "ports")? {
        let port = o
            .int(p, "port")?
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| o.invalid("ports[].port: expected a port number"))?;
        let target_port = match Obj::get(p, "targetPort") {
            None => port,
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| o.invalid("ports[].targetPort: expected a port"))?,
            Some(_) => return Err(o.invalid(
                "ports[].targetPort: a named target port cannot be resolved (pods list numbers)",
            )),
        };
        let port_name = o.text(p, "name")?.unwrap_or_default().to_owned();
        let declared = o
            .text(p, "appProtocol")?
            .map(str::to_owned)
            .unwrap_or_else(|| port_name.split('-').next().unwrap_or_default().to_owned());
        let protocol = if super::is_http(&declared) {
            "http"
        } else {
            "tcp"
        };
        ports.push(ServicePort {
            name: port_name,
            port,
            target_port,
            protocol: protocol.to_owned(),
        });
    }
    Ok(KubeService {
        namespace: o.namespace.clone(),
        name,
        selector: o.labels(&o.spec, "selector")?,
        ports,
    })
}

impl World<'_> {
    pub(super) fn service(&self, namespace: &str, name: &str) -> Option<&KubeService> {
        self.services
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }

    fn service_by_fqdn(&self, host: &str) -> Option<&KubeService> {
        self.services.iter().find(|s| service_fqdn(s) == host)
    }

    /// The pods a Service's selector selects (a Service without a
    /// selector gets no endpoints from Kubernetes).
    pub(super) fn pods_of<'s>(&'s self, s: &'s KubeService) -> Vec<&'s Pod> {
        if s.selector.is_empty() {
            return Vec::new();
        }
        self.cluster.select(&s.namespace, &s.selector).collect()
    }

    /// The pods a `Destination` (`host`, `subset`, `port`) of an object of
    /// `owner` reaches, for a caller in `client_ns`: the host Service's
    /// endpoints with the subset's labels
    /// (<https://istio.io/latest/docs/reference/config/networking/destination-rule/#Subset>:
    /// "labels apply a filter over the endpoints of a service in the
    /// service registry"). No pod: the proxy answers 503.
    pub(super) fn destination_pods(
        &self,
        owner: &Obj,
        destination: &Value,
        client_ns: &str,
    ) -> Result<Vec<&Pod>, ModelError> {
        let host = owner
            .text(destination, "host")?
            .ok_or_else(|| owner.invalid("destination.host: required"))?;
        let host = fqdn(host, &owner.namespace);
        let Some(svc) = self.service_by_fqdn(&host) else {
            return Ok(Vec::new());
        };
        if let Some(port) = Obj::get(destination, "port") {
            if let Some(n) = owner.int(port, "number")? {
                if !svc.ports.iter().any(|p| i64::from(p.port) == n) {
                    return Ok(Vec::new());
                }
            }
        }
        let mut pods = self.pods_of(svc);
        if let Some(subset) = owner.text(destination, "subset")? {
            match self.subset_labels(&host, subset, client_ns, &svc.namespace)? {
                Some(labels) => pods.retain(|p| selects(&labels, &p.labels)),
                // An undefined subset is a cluster Envoy does not know: 503.
                None => pods.clear(),
            }
        }
        Ok(pods)
    }

    /// The labels of subset `subset` of `host`, from the DestinationRule
    /// Istio picks: "the client namespace, then the service's namespace,
    /// then the root namespace"
    /// (<https://istio.io/latest/docs/ops/best-practices/traffic-management/#cross-namespace-configuration>),
    /// an exact host before a wildcard.
    fn subset_labels(
        &self,
        host: &str,
        subset: &str,
        client_ns: &str,
        service_ns: &str,
    ) -> Result<Option<Labels>, ModelError> {
        for ns in [client_ns, service_ns, ROOT_NAMESPACE] {
            let mut candidates = Vec::new();
            for dr in self.destination_rules.iter().filter(|d| d.namespace == ns) {
                let Some(h) = dr.text(&dr.spec, "host")? else {
                    return Err(dr.invalid("spec.host: required"));
                };
                let h = fqdn(h, &dr.namespace);
                if host_matches(&h, host) {
                    candidates.push((h.starts_with('*'), dr));
                }
            }
            // Rules for one host in one namespace are merged, the first
            // subset of a name winning (same page, "Split large virtual
            // services and destination rules into multiple resources").
            candidates.sort_by_key(|(wildcard, _)| *wildcard);
            for (_, dr) in &candidates {
                for s in dr.list(&dr.spec, "subsets")? {
                    if dr.text(s, "name")? == Some(subset) {
                        return dr.labels(s, "labels").map(Some);
                    }
                }
            }
            if !candidates.is_empty() {
                return Ok(None);
            }
        }
        Ok(None)
    }
}
