//! The mesh-neutral intermediate representation: what every emitter reads.
//!
//! Everything an emitter needs is resolved here, once: names and namespaces
//! defaulted, references to other services turned into identities, the
//! service's default route appended with the weights of the rollout's
//! current position, ports' target ports filled in. An emitter only
//! translates; it never looks anything up in the repository.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshplan_policy_lang::intent::labels::Labels;

use meshplan_policy_lang::intent::service::{
    Faults, LoadBalancer, Match, MtlsMode, Redirect, Retries, Rewrite,
};
use meshplan_policy_lang::intent::{Duration, Protocol, Rollout, Slo};

/// The whole repository, lowered.
#[derive(Clone, Debug, PartialEq)]
pub struct Ir {
    pub trust_domain: String,
    /// Sorted by namespace, then name.
    pub services: Vec<Service>,
    /// `istio.io/rev` to stamp on Istio objects.
    pub istio_revision: Option<String>,
    /// mTLS mode of services that set none.
    pub default_mtls: MtlsMode,
    /// Whether Gateway API's experimental fields (HTTPRoute `retry`) exist.
    pub gateway_api_experimental: bool,
    /// Whether Consul has namespaces (Enterprise) for intentions to name.
    pub consul_namespaces: bool,
    /// `metrics.workload`: how a version's requests are found in the
    /// metrics, when not the flavour's own way.
    pub metrics_workload: Option<meshplan_policy_lang::intent::config::MetricsWorkload>,
    /// Every target rendered together (set by `emit_all`): an emitter may
    /// leave a feature to another target of the set.
    pub targets: Vec<meshplan_policy_lang::intent::Target>,
}

impl Ir {
    /// The vocabulary of `flavor`'s metrics for this repository.
    pub fn metrics(&self, flavor: crate::metrics::Flavor) -> crate::metrics::Vocabulary {
        crate::metrics::Vocabulary::new(flavor, self.metrics_workload.clone())
    }
}

/// Where an object came from: the intent and its file position
/// ([`OriginData`]'s fields, through `Deref`). Shared: every object of a
/// service points at one (8 bytes an object, not 40, and a service has
/// several objects).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin(Arc<OriginData>);

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct OriginData {
    /// `namespace/name` of the intent.
    pub intent: Arc<str>,
    pub file: Arc<str>,
    pub line: u32,
    /// `file:line`, written once for every object the service makes.
    pub source: Box<str>,
}

impl Origin {
    pub fn new(intent: &str, file: &str, line: u32) -> Self {
        Origin(Arc::new(OriginData {
            intent: intent.into(),
            file: file.into(),
            line,
            source: format!("{file}:{line}").into(),
        }))
    }
}

impl std::ops::Deref for Origin {
    type Target = OriginData;
    fn deref(&self) -> &OriginData {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// The intent's name.
    pub name: String,
    pub namespace: String,
    /// The Kubernetes Service traffic is addressed to.
    pub host: String,
    /// The workloads' ServiceAccount (mesh identity).
    pub service_account: String,
    pub origin: Origin,
    pub ports: Vec<Port>,
    pub versions: Vec<Version>,
    /// Labels every version's pods carry: selects the whole service.
    pub workload_selector: Labels,
    /// Routes in order, the catch-all default route last.
    pub routes: Vec<Route>,
    pub timeout: Option<Duration>,
    pub retries: Option<Retries>,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub connection_pool: Option<ConnectionPool>,
    pub load_balancer: Option<LoadBalancer>,
    /// Tried in order when none of the service's endpoints is healthy.
    pub failover: Vec<Failover>,
    pub rate_limit: Option<RateLimit>,
    pub mtls: MtlsMode,
    pub access: Option<Access>,
    pub slos: Vec<Slo>,
    pub rollout: Option<Rollout>,
}

impl Service {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The fully qualified host name.
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.host, self.namespace)
    }

    pub fn l7_ports(&self) -> impl Iterator<Item = &Port> {
        self.ports.iter().filter(|p| p.protocol.is_l7())
    }

    pub fn has_l7(&self) -> bool {
        self.l7_ports().next().is_some()
    }

    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.name == name)
    }
}

pub use meshplan_policy_lang::intent::service::{CircuitBreaker, ConnectionPool};

#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub name: String,
    pub port: u32,
    /// The container port (defaults to `port`).
    pub target_port: u32,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub name: String,
    pub labels: Labels,
}

/// A routing rule with its destination resolved to weighted versions.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub name: String,
    /// Any one matches; empty matches every request.
    pub matches: Vec<Match>,
    pub action: RouteAction,
    pub rewrite: Option<Rewrite>,
    pub timeout: Option<Duration>,
    /// The route's faults, else the service's.
    pub faults: Option<Faults>,
    /// The route's mirror, else the service's (or the rollout's, while it
    /// mirrors).
    pub mirror: Option<Mirror>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RouteAction {
    /// Versions and their weights (summing to 100; zero weights kept so the
    /// version stays addressable).
    Forward(Vec<Backend>),
    Redirect(Redirect),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    /// A version of the service the route belongs to, or, with `service`,
    /// of that service (empty: it declares none; its whole Service).
    pub version: String,
    pub weight: u32,
    /// Another service of the repository (`destination.service`): the
    /// route sends to its default route, flattened into these backends.
    pub service: Option<Arc<OtherService>>,
    /// A `Set-Cookie` header value the mesh adds to this backend's
    /// responses: a sticky canary's cookie, on the default route's canary.
    pub set_cookie: Option<String>,
}

impl Backend {
    /// A version of the route's own service.
    pub fn version(version: &str, weight: u32) -> Self {
        Backend {
            version: version.to_owned(),
            weight,
            service: None,
            set_cookie: None,
        }
    }

    /// Whether this is `version` of the route's own service.
    pub fn is_own(&self, version: &str) -> bool {
        self.service.is_none() && self.version == version
    }
}

/// Another service a route sends to, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherService {
    pub namespace: String,
    /// Its intent's name.
    pub name: String,
    /// Its Kubernetes Service.
    pub host: String,
    /// The Service port requests go to.
    pub port: u32,
}

impl OtherService {
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.host, self.namespace)
    }
}

/// A failover target, its service resolved to a namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failover {
    /// `(namespace, name)`; `None`: this service.
    pub service: Option<(String, String)>,
    pub peer: Option<String>,
    pub datacenter: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mirror {
    pub version: String,
    /// 0–100.
    pub percentage: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
    /// The ports limited (all L7 ports unless named).
    pub ports: Vec<Port>,
}

/// The allow list, with every caller resolved to an identity.
#[derive(Clone, Debug, PartialEq)]
pub struct Access {
    pub default_deny: bool,
    pub rules: Vec<AllowRule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AllowRule {
    pub from: Vec<Peer>,
    /// Ports of this service (empty: any).
    pub ports: Vec<Port>,
    pub methods: Vec<String>,
    /// Exact paths, or prefixes ending in `*`.
    pub paths: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// A workload identity; `service`: the Kubernetes Service of the
    /// repository's service that runs as it, when the caller was named as
    /// a service (Consul names callers by service, not identity).
    ServiceAccount {
        namespace: String,
        name: String,
        service: Option<String>,
    },
    /// Every workload of a namespace.
    Namespace(String),
    /// Any namespace.
    AnyNamespace,
    /// Any caller the mTLS mode admits, with or without a mesh identity.
    Anyone,
}

/// Where each service's rollout stands. The compiler renders the weights of
/// that position; the rollout engine moves it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Positions {
    /// By `namespace/name`. A service with a rollout and no entry has not
    /// started it: all traffic stays on the stable version.
    pub by_service: BTreeMap<String, Position>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Stable takes everything (before the rollout, or after a rollback).
    NotStarted,
    /// The pre-shift stage of the `abTest` and `mirror` strategies: the
    /// A/B match (abTest) or a copy of traffic (mirror) reaches the canary;
    /// no weight moves.
    Shadow,
    /// At `steps[i]`: the canary's weight is that of the last step at or
    /// before `i` that sets one (`abTest` never shifts weight: its steps
    /// keep the A/B match; blue/green shifts only on promotion).
    Step(usize),
    /// Promoted: the canary takes everything.
    Promoted,
}
