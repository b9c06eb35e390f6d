//! The intent language, `meshplan.dev/v1alpha1`.
//!
//! The types here are what users write. Their doc comments are also the
//! descriptions in the JSON Schema that `meshplan schema` prints, so write
//! them for users. `Serialize` exists only to build the CEL view of an
//! intent (durations become CEL durations).

pub mod access;
pub mod config;
pub mod duration;
pub mod labels;
pub mod policy;
pub mod rollout;
pub mod service;
pub mod slo;
pub mod workloads;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use access::{Access, AllowRule, Caller, PortRef};
pub use config::{Config, RuleSetting, Target};
pub use duration::Duration;
pub use policy::{PolicySpec, Rule, RuleSeverity, Scope};
pub use rollout::{Analysis, Rollout, Step, Strategy};
pub use service::{Port, Protocol, ServiceSpec, Version};
pub use slo::Slo;

pub const API_GROUP: &str = "meshplan.dev";
pub const API_VERSION: &str = "meshplan.dev/v1alpha1";

/// The kinds a document may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ServiceIntent,
    Policy,
    MeshplanConfig,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::ServiceIntent, Kind::Policy, Kind::MeshplanConfig];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceIntent => "ServiceIntent",
            Kind::Policy => "Policy",
            Kind::MeshplanConfig => "MeshplanConfig",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A DNS-1123 label, as the JSON Schema states what `check` enforces
/// (object, port, version and route names).
pub const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The object's name (a DNS label).
    #[schemars(regex(pattern = crate::intent::DNS_LABEL), length(max = 63))]
    pub name: String,
    /// Defaults to `defaultNamespace` from meshplan.yaml.
    #[serde(default)]
    #[schemars(regex(pattern = crate::intent::DNS_LABEL), length(max = 63))]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: labels::Labels,
    #[serde(default)]
    pub annotations: labels::Labels,
}

/// A document of one kind: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S> {
    /// `meshplan.dev/v1alpha1`.
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
}

/// A service's intent.
pub type ServiceIntent = Object<ServiceSpec>;
/// A set of organisation rules.
pub type Policy = Object<PolicySpec>;
