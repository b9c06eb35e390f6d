//! Behavioural models: what a mesh *does* with objects, as its own
//! documentation describes it — the test oracle of the emitters.
//!
//! A model reads emitted objects as the mesh would (JSON bodies, never the
//! IR) and answers, for a [`Cluster`] of pods and a [`Request`]: which
//! rule matched under that mesh's precedence, where the request goes (a
//! share per pod, through the selectors actually emitted), its effective
//! timeout, retries, fault and mirror, and whether each destination pod
//! admits it, with the object that decided.
//!
//! One file per mesh (`istio`, `linkerd`, `gateway_api`, `consul`,
//! `cilium`, `networkpolicy`), each written from that project's documented
//! semantics (the section is cited beside the code) and sharing no
//! decision logic with the emitters. [`intent`] is the reference: what the
//! intents mean (first match, weights, allow list with default deny).
//! `tests/model.rs` holds every target's answers to the reference's.
//!
//! # Conventions
//!
//! - Where the objects leave a setting unset, a model answers what the
//!   mesh then does by default (Istio retries a route that sets no
//!   `retries` twice, say), citing the documentation.
//! - `timeout_ms: None`: no timeout; `retries: None`: no retries.
//! - A target that does not route (NetworkPolicy, Cilium) answers
//!   `routing: None`; one that does not authorize (Gateway API) answers
//!   `authorization: None`.
//!
//! # Guarantees
//!
//! - A model never panics on objects it does not understand: an object of
//!   a kind it ignores is ignored; a malformed field answers
//!   [`ModelError`].
//! - Answers are deterministic (ordered maps; shares as exact fractions
//!   where the mesh's weights are integers).

use std::collections::BTreeMap;

use crate::object::MeshObject;

pub mod cilium;
pub mod cluster;
pub mod consul;
mod error;
pub mod gateway_api;
pub mod httproute;
pub mod intent;
pub mod istio;
pub mod linkerd;
pub mod networkpolicy;
#[cfg(test)]
pub(crate) mod testing;

pub use cluster::Cluster;
pub use error::{DurationError, FilterError, ModelError, Problem};

/// The pod id under which a share that reaches no pod is recorded.
pub const NO_POD: &str = "-";

/// Label maps as the models read them.
pub type Labels = BTreeMap<String, String>;

/// A pod of the cluster: what an intent declares of its pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// An id for answers: `<namespace>/<intent>/<version>` (no version:
    /// `<namespace>/<intent>`).
    pub id: String,
    pub namespace: String,
    pub labels: Labels,
    pub service_account: String,
    /// Container ports it listens on.
    pub ports: Vec<u32>,
}

/// A Kubernetes Service the application owns (meshplan never emits a
/// service's own Service; it emits per-version backend Services).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeService {
    pub namespace: String,
    pub name: String,
    pub selector: Labels,
    pub ports: Vec<ServicePort>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u32,
    pub target_port: u32,
    /// `http`, `http2`, `grpc` or `tcp`, as the intent declares it.
    pub protocol: String,
}

/// Who sends a request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A meshed workload, authenticated by its identity (mTLS).
    Workload {
        namespace: String,
        service_account: String,
        labels: Labels,
    },
    /// A caller without a mesh identity: outside the mesh, or a kubelet
    /// probe (`namespace: None`: not a pod at all).
    Unauthenticated { namespace: Option<String> },
}

/// A request as a client sends it, to a Service's port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub source: Source,
    /// The destination Service's namespace and name.
    pub namespace: String,
    pub service: String,
    /// The Service port.
    pub port: u32,
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// Lower-case names. Cookies travel in `cookie` (`a=1; b=2`).
    pub headers: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = match &self.source {
            Source::Workload {
                namespace,
                service_account,
                ..
            } => format!("{namespace}/{service_account}"),
            Source::Unauthenticated { namespace } => format!(
                "unauthenticated{}",
                namespace
                    .as_ref()
                    .map(|n| format!(" in {n}"))
                    .unwrap_or_default()
            ),
        };
        write!(
            f,
            "{} {}.{}:{}{}",
            self.method, self.service, self.namespace, self.port, self.path
        )?;
        if !self.query.is_empty() {
            let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "?{}", q.join("&"))?;
        }
        for (k, v) in &self.headers {
            write!(f, " -H {k}:{v}")?;
        }
        write!(f, " from {from}")
    }
}

/// What a mesh does with a request. A part a target does not handle
/// (routing for a network policy, authorization for Gateway API) is
/// `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    pub routing: Option<Routing>,
    /// The verdict at each pod the destination Service selects, by
    /// [`Pod::id`].
    pub authorization: Option<BTreeMap<String, Verdict>>,
}

/// Where a request goes.
// One answer per request asked, never stored in bulk: a boxed Forward
// would only add indirection to every model.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Routing {
    Forward(Forward),
    Redirect(Redirect),
    /// No route matched, or its backends select no pod.
    NoRoute,
}

/// A forwarded request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Forward {
    /// Percent of requests per destination pod ([`Pod::id`]), summing to
    /// 100 (a pod with no share is absent). Pods sharing one backend share
    /// its weight equally; a share whose backend selects no pod (the mesh
    /// answers 503) is recorded under [`NO_POD`].
    pub pods: BTreeMap<String, f64>,
    /// The whole request's timeout, retries included, in milliseconds.
    pub timeout_ms: Option<u64>,
    pub retries: Option<Retries>,
    pub fault: Option<Fault>,
    /// The pod ids copies go to, and the percent of requests copied.
    pub mirror: Option<(Vec<String>, f64)>,
    /// The `Set-Cookie` header the mesh adds to the responses of each
    /// destination pod that has a share (by [`Pod::id`]), where it adds
    /// one: a sticky canary's cookie.
    pub set_cookie: BTreeMap<String, String>,
    /// The path and host the destination sees, when rewritten.
    pub rewritten_path: Option<String>,
    pub rewritten_host: Option<String>,
    /// What matched, for messages: `Kind ns/name rule N`.
    pub rule: String,
}

/// Retries as the proxy performs them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retries {
    /// Retries after the first try.
    pub attempts: u32,
    pub per_try_timeout_ms: Option<u64>,
    /// Conditions, as the intent language names them (`5xx`,
    /// `gateway-error`, `reset`, `connect-failure`, `retriable-4xx`,
    /// `refused-stream`, `unavailable`, `cancelled`, `deadline-exceeded`,
    /// `resource-exhausted`), sorted; a status code the mesh retries on
    /// that no condition names is written as the number (`409`).
    pub on: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fault {
    /// Percent of requests delayed, and by how long.
    pub delay: Option<(f64, u64)>,
    /// Percent of requests aborted, and with which HTTP status.
    pub abort: Option<(f64, u32)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redirect {
    pub code: u32,
    pub path: Option<String>,
    pub host: Option<String>,
}

/// Whether a pod admits a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `by`: the object that allowed it (`None`: nothing applies, and the
    /// mesh's default admits).
    Allow {
        by: Option<String>,
    },
    Deny {
        by: String,
    },
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }
}

/// A mesh's model: objects in, answers out.
pub trait Model {
    fn answer(
        &self,
        objects: &[MeshObject],
        cluster: &Cluster,
        request: &Request,
    ) -> Result<Answer, ModelError>;
}

/// The model of `target`.
pub fn of(target: meshplan_policy_lang::intent::Target) -> Box<dyn Model> {
    use meshplan_policy_lang::intent::Target;
    match target {
        Target::Istio => Box::new(istio::Istio),
        Target::Linkerd => Box::new(linkerd::Linkerd),
        Target::GatewayApi => Box::new(gateway_api::GatewayApi),
        Target::Consul => Box::new(consul::Consul),
        Target::Cilium => Box::new(cilium::Cilium),
        Target::NetworkPolicy => Box::new(networkpolicy::NetworkPolicy),
        // SMI is deprecated and modelled by nobody: its TrafficSplit is
        // held to the schema only.
        Target::Smi => Box::new(Unmodelled),
    }
}

/// A target without a model.
#[derive(Debug)]
pub struct Unmodelled;

impl Model for Unmodelled {
    fn answer(&self, _: &[MeshObject], _: &Cluster, _: &Request) -> Result<Answer, ModelError> {
        Err(Problem::NoModel.of(""))
    }
}

/// `Kind namespace/name` of an object, for answers and errors.
pub fn object_name(o: &MeshObject) -> String {
    match &o.namespace {
        Some(ns) => format!("{} {ns}/{}", o.kind, o.name),
        None => format!("{} {}", o.kind, o.name),
    }
}

/// Whether `selector` (`matchLabels`) selects a pod with `labels`.
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A duration as Kubernetes APIs write it (`1h`, `30s`, `0.5s`, `500ms`,
/// `1m30s`), in milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms = match &rest[..u] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            _ => return None,
        };
        total += value * ms;
        rest = &rest[u..];
    }
    Some(total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_api_form() {
        assert_eq!(parse_duration_ms("3s"), Some(3000));
        assert_eq!(parse_duration_ms("0.5s"), Some(500));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("5"), None);
    }
}
