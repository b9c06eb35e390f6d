//! The PromQL of a version's traffic the rollout engine evaluates: the
//! analysis' request volume, success rate and latency, and an SLO's error
//! ratio for the SLO gate. Reached through [`crate::rollout::Subject`].

use meshplan_policy_lang::intent::{Protocol, Slo};

use super::{escaped, fmt_f64, ErrorRatio, Vocabulary};
use crate::ir::Service;

/// The error ratio of `slo`'s SLI for `version` of `s` over `window`, as
/// plain PromQL: the query of the SLO's recording rules (its `errorCodes`,
/// gRPC statuses, latency bucket or custom queries alike), with the
/// version's selector. A custom SLI's queries are the author's: their
/// `{{version}}`, `{{service}}` and `{{namespace}}` are substituted, and
/// without `{{version}}` they measure the whole service.
pub(crate) fn version_error_ratio(
    vocab: &Vocabulary,
    s: &Service,
    slo: &Slo,
    version: &str,
    window: &str,
) -> Option<String> {
    let grpc = s.ports.iter().any(|p| p.protocol == Protocol::Grpc);
    let ratio = ErrorRatio::of(vocab.flavor, &slo.sli, grpc)?;
    let quoted = ratio.over(&escaped(&vocab.selector(s, Some(version))), window);
    let plain: String = serde_json::from_str(&quoted).ok()?;
    Some(
        plain
            .replace("{{version}}", version)
            .replace("{{service}}", &s.host)
            .replace("{{namespace}}", &s.namespace),
    )
}

/// The PromQL the rollout engine evaluates for one version over an
/// analysis interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalysisQueries {
    /// Requests in the interval (compared with `minRequestVolume`).
    pub request_volume: String,
    /// Success rate in percent.
    pub success_rate: String,
    /// The latency percentile, in milliseconds.
    pub latency: String,
}

/// Analysis queries for `version` of `s` over `interval` (`1m`), with the
/// latency `percentile` (50–99).
pub(crate) fn analysis_queries(
    vocab: &Vocabulary,
    s: &Service,
    version: &str,
    interval: &str,
    percentile: u32,
) -> AnalysisQueries {
    let flavor = vocab.flavor;
    let sel = vocab.selector(s, Some(version));
    let req = flavor.requests();
    // The rollout engine's success rate: HTTP failures (issue: gRPC and
    // `errorCodes` are the SLO's, not yet the analysis').
    let errors = flavor.errors(&[], false).remove(0);
    AnalysisQueries {
        request_volume: format!("sum(increase({req}{{{sel}}}[{interval}]))"),
        success_rate: format!(
            "100 * (1 - (sum(rate({req}{{{sel}{errors}}}[{interval}])) or vector(0)) / sum(rate({req}{{{sel}}}[{interval}])))"
        ),
        // In milliseconds whatever the histogram's unit.
        latency: format!(
            "{}histogram_quantile({}, sum by (le) (rate({}{{{sel}}}[{interval}])))",
            if flavor.in_seconds() { "1000 * " } else { "" },
            fmt_f64(f64::from(percentile) / 100.0),
            flavor.buckets()
        ),
    }
}
