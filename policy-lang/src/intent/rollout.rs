//! The `rollout` block: how a new version replaces the stable one.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::service::Match;

/// Progressive delivery of `canary` in place of `stable`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    #[serde(default)]
    pub strategy: Strategy,
    /// The version serving traffic today.
    pub stable: String,
    /// The version being rolled out.
    pub canary: String,
    /// The steps, in order. A canary's weights must strictly increase and end
    /// at 100.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// For `abTest`: the requests sent to the canary while it is analysed.
    #[serde(default)]
    pub ab_test: Option<AbTest>,
    /// For `mirror`: the share of traffic copied to the canary while it is
    /// analysed, before any is shifted.
    #[serde(default)]
    pub mirror: Option<MirrorStage>,
    /// Requests that reach the canary while it is analysed, before
    /// promotion (a blue/green's dark version, a canary's), so testers and
    /// synthetic checks can try it and the analysis judges real requests.
    #[serde(default)]
    pub preview: Option<Preview>,
    /// Sticky canaries: a user the canary answered keeps reaching it for
    /// the rest of the rollout (a cookie set on its responses).
    #[serde(default)]
    pub session_affinity: Option<SessionAffinity>,
    /// How each step is judged.
    #[serde(default)]
    pub analysis: Option<Analysis>,
    /// Called at the rollout's stages.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    /// On failure, hold the current weights instead of rolling back (for
    /// changes that cannot be reversed, such as a schema migration).
    #[serde(default)]
    pub freeze_on_failure: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// Shift weight step by step.
    #[default]
    Canary,
    /// Run the canary beside stable, then switch all traffic at once.
    BlueGreen,
    /// Send matching requests (header, cookie) to the canary, then promote.
    AbTest,
    /// Copy traffic to the canary, then shift.
    Mirror,
}

/// One step: set a weight, pause, or wait for a manual approval.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// Percentage of traffic sent to the canary, 0–100.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Stay at this step this long (analysis keeps running).
    #[serde(default)]
    pub pause: Option<Duration>,
    /// `manual`: wait here until `meshplan rollout promote`.
    #[serde(default)]
    pub gate: Option<Gate>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Gate {
    Manual,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbTest {
    /// Requests matching any of these go to the canary.
    #[serde(rename = "match")]
    pub matches: Vec<Match>,
    /// Analysis intervals to pass before promoting.
    pub iterations: u32,
}

/// The preview route: requests matching any of these go to the canary.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preview {
    /// e.g. `[{ headers: { x-preview: { exact: "true" } } }]`, or a cookie.
    #[serde(rename = "match")]
    pub matches: Vec<Match>,
}

/// Session affinity during a canary. While weight shifts, the canary's
/// responses on the default route carry `Set-Cookie:
/// <cookieName>=<canary>; Max-Age=<maxAge>; Path=/`, and a request
/// carrying that cookie goes to the canary, whatever the weights. The
/// value is the canary version's name, so a cookie from an earlier
/// rollout of another version reaches nothing.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionAffinity {
    /// The cookie's name. Defaults to `meshplan-canary-<namespace>-<service>`
    /// (two services of one name behind one host keep their own).
    #[serde(default)]
    pub cookie_name: Option<String>,
    /// How long a browser keeps the cookie. Defaults to 24h.
    #[serde(default)]
    pub max_age: Option<Duration>,
}

impl SessionAffinity {
    /// `maxAge` when unset.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(86_400);

    /// The cookie's name for the service `namespace/service`.
    pub fn cookie(&self, namespace: &str, service: &str) -> String {
        self.cookie_name
            .clone()
            .unwrap_or_else(|| format!("meshplan-canary-{namespace}-{service}"))
    }

    /// The `Set-Cookie` header value the canary's responses carry.
    pub fn set_cookie(&self, namespace: &str, service: &str, canary: &str) -> String {
        let age = self.max_age.unwrap_or(Self::DEFAULT_MAX_AGE).as_millis() / 1000;
        let name = self.cookie(namespace, service);
        format!("{name}={canary}; Max-Age={age}; Path=/")
    }

    /// The match of the requests that carry the cookie.
    pub fn sticky_match(&self, namespace: &str, service: &str, canary: &str) -> Match {
        let exact = super::service::StringMatch {
            exact: Some(canary.to_owned()),
            ..Default::default()
        };
        Match {
            cookies: [(self.cookie(namespace, service), exact)].into(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorStage {
    /// Percentage of requests copied, 0–100.
    pub percentage: f64,
    /// Analysis intervals to pass before shifting.
    pub iterations: u32,
}

/// How the canary is judged at every interval.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    /// How often metrics are checked. Defaults to 1m.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Consecutive failed checks before rolling back. Defaults to 3.
    #[serde(default)]
    pub failure_limit: Option<u32>,
    /// Consecutive inconclusive checks (too little traffic, no data) before
    /// `onInconclusive` applies. Defaults to 5.
    #[serde(default)]
    pub inconclusive_limit: Option<u32>,
    /// What to do after `inconclusiveLimit`: `pause` (default) or `rollback`.
    #[serde(default)]
    pub on_inconclusive: Option<OnInconclusive>,
    /// Fewer canary requests than this in an interval is inconclusive.
    #[serde(default)]
    pub min_request_volume: Option<u64>,
    /// Built-in check: the canary's success rate (percent) must be at least
    /// this.
    #[serde(default)]
    pub success_rate: Option<SuccessRateCheck>,
    /// Built-in check: the canary's latency percentile must stay under
    /// `max`.
    #[serde(default)]
    pub latency: Option<LatencyCheck>,
    /// Custom PromQL checks.
    #[serde(default)]
    pub metrics: Vec<MetricCheck>,
    /// Block promotion while the canary burns an SLO's error budget faster
    /// than its page threshold. `true` gates on every SLO of the service;
    /// a list names the SLOs.
    #[serde(default)]
    pub slo_gate: Option<SloGate>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnInconclusive {
    Pause,
    Rollback,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessRateCheck {
    /// Minimum success rate, in percent (0–100).
    pub min: f64,
    /// Also fail when the canary's success rate is more than this many
    /// percentage points under the stable version's, over the same
    /// interval (e.g. 0.5).
    #[serde(default)]
    pub max_drop_vs_stable: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyCheck {
    /// The percentile checked: 50, 90, 95 or 99. Defaults to 99.
    #[serde(default)]
    pub percentile: Option<u32>,
    /// The latency the percentile must stay under.
    pub max: Duration,
    /// Also fail when the canary's percentile is more than this many times
    /// the stable version's, over the same interval (e.g. 1.5).
    #[serde(default)]
    pub max_ratio_vs_stable: Option<f64>,
}

/// A PromQL query and the CEL condition its result must satisfy.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricCheck {
    pub name: String,
    /// PromQL returning one number. `{{service}}`, `{{namespace}}`,
    /// `{{version}}` and `{{interval}}` are substituted.
    pub query: String,
    /// CEL over `result` (a double), e.g. `result <= 0.01`.
    pub success_condition: String,
}

/// `sloGate`: `true` (every SLO of the service), a list of SLO names, or
/// the options.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SloGate {
    All(bool),
    Named(Vec<String>),
    Options(SloGateOptions),
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SloGateOptions {
    /// The SLOs gated (default: every SLO of the service).
    #[serde(default)]
    pub slos: Option<Vec<String>>,
    /// What a canary burning a gated SLO's budget does: `hold` promotion
    /// (default) or `fail` the interval.
    #[serde(default)]
    pub on_burn: Option<OnBurn>,
    /// The page alert's windows, judged on the canary. Default: 1h and 5m,
    /// the fast-burn page pair of the SLO's alerts.
    #[serde(default)]
    pub windows: Option<BurnWindows>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnBurn {
    Hold,
    Fail,
}

/// A long window and a short one: the canary burns only when it burns over
/// both (the short one makes the gate open soon after the burning stops).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BurnWindows {
    pub long: Duration,
    pub short: Duration,
}

impl SloGate {
    /// Whether the SLO `name` is gated.
    pub fn covers(&self, name: &str) -> bool {
        match self {
            SloGate::All(on) => *on,
            SloGate::Named(names) => names.iter().any(|n| n == name),
            SloGate::Options(o) => o.slos.as_ref().is_none_or(|n| n.iter().any(|n| n == name)),
        }
    }

    /// The SLO names it lists, if it lists some.
    pub fn named(&self) -> Option<&[String]> {
        match self {
            SloGate::Named(names) => Some(names),
            SloGate::Options(o) => o.slos.as_deref(),
            SloGate::All(_) => None,
        }
    }

    /// Whether it gates on every SLO of the service.
    pub fn all(&self) -> bool {
        match self {
            SloGate::All(on) => *on,
            SloGate::Options(o) => o.slos.is_none(),
            SloGate::Named(_) => false,
        }
    }

    pub fn on_burn(&self) -> OnBurn {
        match self {
            SloGate::Options(o) => o.on_burn.unwrap_or(OnBurn::Hold),
            _ => OnBurn::Hold,
        }
    }

    pub fn windows(&self) -> Option<BurnWindows> {
        match self {
            SloGate::Options(o) => o.windows,
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: WebhookType,
    /// Receives an HTTP POST with a JSON body; a 2xx answer proceeds.
    pub url: String,
    /// No answer within this is "not yet". Defaults to 10s.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// After this many "not yet" answers in a row (any answer but 2xx, or
    /// none), the rollout fails: rolled back when it had started. Without
    /// it, a gate waits as long as it takes (an approval).
    #[serde(default)]
    pub failure_limit: Option<u32>,
    /// Extra fields sent in the body.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WebhookType {
    PreRollout,
    StepConfirmation,
    PostRollout,
    Rollback,
    Notification,
}
