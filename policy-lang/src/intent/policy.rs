//! `Policy`: an organisation's rules, written in CEL.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    pub rules: Vec<Rule>,
}

/// A rule: where `match` holds, `rule` must hold.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// A name (a DNS label); the diagnostic code is `policy/rule`.
    pub name: String,
    /// What the rule is evaluated on. Defaults to `intent`.
    #[serde(default)]
    pub scope: Scope,
    /// CEL selecting what the rule applies to (default: everything in scope).
    #[serde(default, rename = "match")]
    pub match_expr: Option<String>,
    /// CEL that must be true.
    pub rule: String,
    /// The message when the rule is broken.
    #[serde(default)]
    pub message: Option<String>,
    /// CEL building the message (a string), over the same variables.
    #[serde(default)]
    pub message_expression: Option<String>,
    /// `error` (default) fails the check; `warning` only reports.
    #[serde(default)]
    pub severity: RuleSeverity,
    /// Where in the intent the diagnostic points, e.g. `spec.mtls`
    /// (`intent` scope; default: the intent's name).
    #[serde(default)]
    pub field_path: Option<String>,
    /// CEL building `fieldPath` (a string), to point at the offending item,
    /// e.g. `'spec.slos[' + string(i) + '].objective'`. Evaluated only when
    /// the rule fails.
    #[serde(default)]
    pub field_path_expression: Option<String>,
    /// A hint shown with the message.
    #[serde(default)]
    pub hint: Option<String>,
}

/// What a rule sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    /// Each ServiceIntent in turn: variables `intent` and `config`.
    #[default]
    Intent,
    /// The whole repository once: variables `intents` and `config`.
    Repository,
    /// Each compiled mesh object, like a ValidatingAdmissionPolicy: variable
    /// `object` (and `config`).
    Resource,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Intent => "intent",
            Scope::Repository => "repository",
            Scope::Resource => "resource",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RuleSeverity {
    #[default]
    Error,
    Warning,
}
