//! `monitoring.coreos.com`: the Prometheus Operator's `PrometheusRule`,
//! groups of recording rules (a query's result kept as a new series) and
//! alerting rules (a query that fires while it returns anything). Fields in
//! the order of their JSON names (see the module above).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

/// `PrometheusRule` (v1).
#[derive(Debug, Serialize)]
pub(crate) struct PrometheusRuleSpec<'a> {
    pub groups: Vec<RuleGroup<'a>>,
}

/// Rules evaluated together, in order, at the same interval.
#[derive(Debug, Serialize)]
pub(crate) struct RuleGroup<'a> {
    pub name: String,
    pub rules: Vec<Rule<'a>>,
}

/// A recording or an alerting rule: the two differ in their fields only.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Rule<'a> {
    Record(RecordingRule<'a>),
    Alert(AlertingRule<'a>),
}

/// The series `record`, labelled `labels`, is `expr`'s result.
#[derive(Debug, Serialize)]
pub(crate) struct RecordingRule<'a> {
    pub expr: PromQl,
    pub labels: &'a SeriesLabels<'a>,
    pub record: String,
}

/// An SLO's recording rules' labels: the alerts select its series by them.
#[derive(Debug, Serialize)]
pub(crate) struct SeriesLabels<'a> {
    pub namespace: &'a str,
    pub service: &'a str,
    pub slo: &'a str,
}

/// `alert` fires while `expr` returns anything; `labels` route it.
#[derive(Debug, Serialize)]
pub(crate) struct AlertingRule<'a> {
    pub alert: &'static str,
    pub annotations: Annotations<'a>,
    pub expr: PromQl,
    pub labels: BTreeMap<&'a str, &'a str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Annotations<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<&'a str>,
    pub summary: String,
}

/// A PromQL query as the JSON string it is written as: the queries are
/// built already escaped, part by part (`metrics::ErrorRatio::over`), as
/// PromQL is full of quotes and the same parts recur in every window's
/// query; serde writes the text as it is.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(crate) struct PromQl(Box<RawValue>);

impl PromQl {
    /// `quoted`: a JSON string, quotes included. Our own text: were it not
    /// JSON, a debug build stops, and a release build writes `null`, which
    /// the Prometheus Operator refuses, rather than a broken object.
    pub fn quoted(quoted: String) -> PromQl {
        PromQl(RawValue::from_string(quoted).unwrap_or_else(|e| {
            debug_assert!(false, "a query that is not a JSON string: {e}");
            RawValue::NULL.to_owned()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sorted_keys;

    #[test]
    fn a_prometheus_rule_serialises_with_sorted_keys_and_queries_as_written() {
        let labels = SeriesLabels {
            namespace: "n",
            service: "s",
            slo: "a",
        };
        let query = r#""sum(rate(x{a=\"b\"}[5m]))""#;
        let t = serde_json::to_string(&PrometheusRuleSpec {
            groups: vec![RuleGroup {
                name: "g".into(),
                rules: vec![
                    Rule::Record(RecordingRule {
                        expr: PromQl::quoted(query.into()),
                        labels: &labels,
                        record: "r".into(),
                    }),
                    Rule::Alert(AlertingRule {
                        alert: "A",
                        annotations: Annotations {
                            runbook_url: Some("u"),
                            summary: "s".into(),
                        },
                        expr: PromQl::quoted(query.into()),
                        labels: [("severity", "page")].into(),
                    }),
                ],
            }],
        })
        .unwrap();
        assert!(sorted_keys(&t), "{t}");
        assert!(t.contains(&format!(r#""expr":{query}"#)), "{t}");
    }
}
