//! `meshplan.yaml`, at the repository root: targets, defaults and rule
//! settings for the whole repository.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::service::MtlsMode;

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// `meshplan.dev/v1alpha1`.
    pub api_version: String,
    /// `MeshplanConfig`.
    pub kind: String,
    /// The meshes to compile for.
    pub targets: Vec<Target>,
    /// Namespace of intents that do not set one. Defaults to `default`.
    #[serde(default)]
    pub default_namespace: Option<String>,
    /// The mesh's trust domain. Defaults to `cluster.local`.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Defaults for every service.
    #[serde(default)]
    pub defaults: Option<Defaults>,
    /// Where rollout analysis and SLOs read metrics.
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// Folders inside the repository that must hold Policy documents: one
    /// that is missing, empty or excluded by a `.meshplanignore` is an
    /// error, so that deleting or ignoring it cannot drop its rules
    /// silently. Policies anywhere in the repository are read either way.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Re-grade or disable rules, built-in (`MPR…` codes or names) or
    /// organisation (`policy/rule`): `error`, `warning` or `off`.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleSetting>,
    /// The clusters this repository is applied to.
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    /// Istio-specific output settings.
    #[serde(default)]
    pub istio: Option<IstioSettings>,
    /// What a target that cannot express an intent's feature (fault
    /// injection on Gateway API, say) does: `error` (default: nothing is
    /// rendered) or `warning` (rendered without it, and listed on every
    /// render). Never silently dropped.
    #[serde(default)]
    pub unsupported: Option<UnsupportedSetting>,
    /// Gateway API-specific output settings.
    #[serde(default)]
    pub gateway_api: Option<GatewayApiSettings>,
    /// Consul-specific output settings.
    #[serde(default)]
    pub consul: Option<ConsulSettings>,
    /// Namespaces whose workloads are in the mesh though no intent of this
    /// repository lives there (an ingress gateway, other teams'
    /// repositories). A caller namespace of an allow list that is neither
    /// here nor home to an intent may be outside the mesh: with STRICT mTLS
    /// its calls would be refused (MP2008).
    #[serde(default)]
    pub meshed_namespaces: Vec<String>,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Istio,
    Linkerd,
    GatewayApi,
    Consul,
    Cilium,
    /// Plain Kubernetes NetworkPolicy (L3/L4).
    #[serde(rename = "networkpolicy")]
    NetworkPolicy,
    /// SMI TrafficSplit (deprecated: SMI was archived in 2023).
    Smi,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Istio,
        Target::Linkerd,
        Target::GatewayApi,
        Target::Consul,
        Target::Cilium,
        Target::NetworkPolicy,
        Target::Smi,
    ];

    /// Its name in meshplan.yaml.
    pub fn name(self) -> &'static str {
        match self {
            Target::Istio => "istio",
            Target::Linkerd => "linkerd",
            Target::GatewayApi => "gateway-api",
            Target::Consul => "consul",
            Target::Cilium => "cilium",
            Target::NetworkPolicy => "networkpolicy",
            Target::Smi => "smi",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Defaults {
    /// mTLS mode of services that do not set one. Defaults to strict.
    #[serde(default)]
    pub mtls: Option<MtlsMode>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    #[serde(default)]
    pub provider: MetricsProvider,
    /// The Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    pub url: String,
    /// Whose metric names rollout analysis queries. Defaults to that of the
    /// first of the istio, linkerd, consul and cilium (`hubble`) targets;
    /// with none of them, a rollout's analysis is an error (MP2014) until
    /// it is set.
    #[serde(default)]
    pub flavor: Option<MetricsFlavor>,
    /// How a version's requests are told apart in those metrics, when not
    /// the flavour's own way: the metric label naming the workload and its
    /// value, e.g. `{ label: deployment, name: "{{service}}-{{version}}" }`.
    /// By default Istio reads `destination_version` (the pods'
    /// `service.istio.io/canonical-revision`, `app.kubernetes.io/version`
    /// or `version` label), Linkerd and Consul the version's pod labels as
    /// the scrape copies them, Hubble `destination_workload` named
    /// `<service>-<version>`.
    #[serde(default)]
    pub workload: Option<MetricsWorkload>,
}

/// A version's traffic in the metrics: series whose `label` is `name`, with
/// `{{service}}` (the Kubernetes Service) and `{{version}}` (the version's
/// name) substituted. A service without versions is `name` with
/// `{{version}}` and the `-`, `_` or `.` before it removed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsWorkload {
    /// A Prometheus label name, e.g. `deployment` or `destination_workload`.
    pub label: String,
    /// Its value for a version, e.g. `{{service}}-{{version}}`.
    pub name: String,
}

impl MetricsWorkload {
    /// The label's value for `version` of `service` (`None`: the whole
    /// service without versions).
    pub fn name_of(&self, service: &str, version: Option<&str>) -> String {
        let name = match version {
            Some(v) => self.name.replace("{{version}}", v),
            None => [
                "-{{version}}",
                "_{{version}}",
                ".{{version}}",
                "{{version}}",
            ]
            .iter()
            .fold(self.name.clone(), |n, p| n.replace(p, "")),
        };
        name.replace("{{service}}", service)
    }
}

/// A mesh whose standard request metrics meshplan queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricsFlavor {
    /// `istio_requests_total`, `istio_request_duration_milliseconds`.
    Istio,
    /// `response_total`, `response_latency_ms` (inbound).
    Linkerd,
    /// Consul's Envoy sidecars: `envoy_cluster_upstream_rq`,
    /// `envoy_cluster_upstream_rq_time` of the inbound cluster `local_app`.
    Consul,
    /// Cilium's Hubble: `hubble_http_requests_total`,
    /// `hubble_http_request_duration_seconds` (`reporter="server"`).
    Hubble,
}

impl MetricsFlavor {
    /// The flavour of the request metrics `target`'s data plane writes;
    /// `None` for a target that writes none of its own.
    pub fn of_target(target: Target) -> Option<MetricsFlavor> {
        match target {
            Target::Istio => Some(MetricsFlavor::Istio),
            Target::Linkerd => Some(MetricsFlavor::Linkerd),
            Target::Consul => Some(MetricsFlavor::Consul),
            Target::Cilium => Some(MetricsFlavor::Hubble),
            Target::GatewayApi | Target::NetworkPolicy | Target::Smi => None,
        }
    }
}

impl Config {
    /// Whose metric names rollout analysis queries: `metrics.flavor`, else
    /// that of the first of the istio, linkerd, consul and cilium targets;
    /// `None` when meshplan does not know the targets' metrics.
    pub fn metrics_flavor(&self) -> Option<MetricsFlavor> {
        let set = self.metrics.as_ref().and_then(|m| m.flavor);
        set.or_else(|| {
            [
                Target::Istio,
                Target::Linkerd,
                Target::Consul,
                Target::Cilium,
            ]
            .into_iter()
            .find(|t| self.targets.contains(t))
            .and_then(MetricsFlavor::of_target)
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricsProvider {
    #[default]
    Prometheus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RuleSetting {
    Error,
    Warning,
    Off,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    /// The kubeconfig context to use (default: the cluster's name).
    #[serde(default)]
    pub context: Option<String>,
    /// Only intents in these namespaces go to this cluster (default: all).
    #[serde(default)]
    pub namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioSettings {
    /// Stamp `istio.io/rev: <revision>` on every object (revision-based
    /// upgrades; managed Istio such as the AKS add-on or Cloud Service Mesh).
    #[serde(default)]
    pub revision: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayApiSettings {
    /// The release channel of the Gateway API CRDs installed in the
    /// clusters. `standard` (default) has no HTTPRoute `retry`: retries on a
    /// gateway-api target need `experimental`.
    #[serde(default)]
    pub channel: GatewayApiChannel,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsulSettings {
    /// Whether the Consul servers have namespaces (Consul Enterprise, with
    /// Kubernetes namespaces mirrored). Without them (the default) an
    /// intention names services only, and an allow rule naming a whole
    /// namespace cannot be expressed.
    #[serde(default)]
    pub namespaces: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GatewayApiChannel {
    #[default]
    Standard,
    Experimental,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UnsupportedSetting {
    #[default]
    Error,
    Warning,
}
