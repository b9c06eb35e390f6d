//! The `slos` block: availability and latency objectives with burn-rate
//! alerting.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Slo {
    /// A name for the SLO (a DNS label).
    pub name: String,
    /// The target, in percent: strictly between 0 and 100, e.g. 99.9.
    pub objective: f64,
    /// The compliance window. Defaults to 30d.
    #[serde(default)]
    pub window: Option<Duration>,
    /// What is measured.
    pub sli: Sli,
    /// Burn-rate alerts.
    #[serde(default)]
    pub alerting: Option<Alerting>,
}

/// Exactly one of `availability`, `latency`, `custom`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sli {
    /// Share of requests that are not server errors, from the mesh's
    /// standard metrics.
    #[serde(default)]
    pub availability: Option<AvailabilitySli>,
    /// Share of requests faster than `threshold`, from the mesh's standard
    /// latency histogram.
    #[serde(default)]
    pub latency: Option<LatencySli>,
    /// Your own PromQL for good and total events.
    #[serde(default)]
    pub custom: Option<CustomSli>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailabilitySli {
    /// Count these status codes as errors too (default: 5xx only).
    #[serde(default)]
    pub error_codes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencySli {
    /// Requests at or under this are good.
    pub threshold: Duration,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomSli {
    /// PromQL: rate of good events. `{{window}}` is substituted.
    pub good_query: String,
    /// PromQL: rate of all events.
    pub total_query: String,
}

/// Multi-window multi-burn-rate alerts.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Alerting {
    /// Fast burn (14.4× over 1h and 5m, 6× over 6h and 30m): wake someone.
    #[serde(default)]
    pub page: Option<AlertTarget>,
    /// Slow burn (3× over 1d and 2h, 1× over 3d and 6h): open a ticket.
    #[serde(default)]
    pub ticket: Option<AlertTarget>,
    /// A runbook linked from every alert.
    #[serde(default)]
    pub runbook_url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertTarget {
    /// Defaults to true once the block is present.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Labels added to the alert (routing in Alertmanager).
    #[serde(default)]
    pub labels: super::labels::Labels,
}
