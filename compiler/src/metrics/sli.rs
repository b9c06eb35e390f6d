//! An SLI as PromQL ([`ErrorRatio`]), and the burn rates of the SLO
//! alerts: the recording rules, the alerts and the rollout engine's SLO
//! gate read the same numbers.

use meshplan_policy_lang::intent::slo::Sli;
use meshplan_policy_lang::intent::Slo;

use super::{escaped, Flavor};

/// (long window, short window, its length in hours, the share of the error
/// budget that burning that fast for the long window spends), per
/// severity.
pub(crate) const PAGE: [(&str, &str, f64, f64); 2] =
    [("1h", "5m", 1.0, 0.02), ("6h", "30m", 6.0, 0.05)];
pub(crate) const TICKET: [(&str, &str, f64, f64); 2] =
    [("1d", "2h", 24.0, 0.10), ("3d", "6h", 72.0, 0.10)];

/// The windows of the SLO alerts' fast page pair (long, short): the
/// rollout engine's SLO gate judges the canary over them by default.
pub const PAGE_WINDOWS: (&str, &str) = (PAGE[0].0, PAGE[0].1);

/// The burn rate over which the SLO's fast page alert fires (14.4 for a
/// 30-day period, 3.36 for 7 days): the SLO gate's threshold.
pub fn page_burn_rate(slo: &Slo) -> f64 {
    let (_, _, hours, share) = PAGE[0];
    burn_factor(slo, hours, share)
}

/// The burn rate that spends `share` of the error budget of `slo`'s period
/// in `hours` (14.4 for 2 % in 1 h of 30 days).
pub(crate) fn burn_factor(slo: &Slo, hours: f64, share: f64) -> f64 {
    let period_hours = slo.window.map_or(30.0 * 24.0, |w| w.as_secs_f64() / 3600.0);
    share * period_hours / hours
}

/// An SLI's error ratio (bad / all events), for any window: what does not
/// depend on the window is worked out once per SLO, since every SLO has a
/// recording rule per window.
///
/// The PromQL is built as it stands inside a JSON string (`"` as `\"`):
/// escaping is the same character by character, so its parts are escaped
/// once each instead of every query whole (PromQL is full of quotes, and
/// the same parts recur in every window's query).
pub(crate) enum ErrorRatio {
    /// `(bad) / (all)`: requests matching any of `bad` (extra matchers,
    /// each a disjoint set of series) of all.
    Requests {
        metric: &'static str,
        bad: Vec<String>,
    },
    /// `1 - ((good) / (all))`: requests in the `le` bucket of all.
    Latency { metric: &'static str, le: String },
    /// `1 - ((good) / (total))`, `{{window}}` replaced.
    Custom { good: String, total: String },
}

impl ErrorRatio {
    pub(crate) fn of(flavor: Flavor, sli: &Sli, grpc: bool) -> Option<Self> {
        if let Some(a) = &sli.availability {
            return Some(ErrorRatio::Requests {
                metric: flavor.requests(),
                bad: flavor
                    .errors(&a.error_codes, grpc)
                    .iter()
                    .map(|e| escaped(e))
                    .collect(),
            });
        }
        if let Some(l) = &sli.latency {
            return Some(ErrorRatio::Latency {
                metric: flavor.buckets(),
                le: flavor.le(l.threshold.as_millis()),
            });
        }
        let c = sli.custom.as_ref()?;
        // `{{window}}` has nothing to escape: replacing it in the escaped
        // text is replacing it in the query.
        Some(ErrorRatio::Custom {
            good: escaped(&c.good_query),
            total: escaped(&c.total_query),
        })
    }

    /// The ratio over `window` as a JSON string (quotes included), `sel`
    /// (escaped) selecting the service's traffic.
    pub(crate) fn over(&self, sel: &str, window: &str) -> String {
        // `sum(rate(<metric>{<sel><extra>}[<window>]))`
        let sum_rate = |out: &mut String, metric: &str, extra: &[&str]| {
            out.push_str("sum(rate(");
            out.push_str(metric);
            out.push('{');
            out.push_str(sel);
            extra.iter().for_each(|e| out.push_str(e));
            out.push_str("}[");
            out.push_str(window);
            out.push_str("]))");
        };
        let mut out = String::with_capacity(2 * sel.len() + 128);
        out.push('"');
        match self {
            ErrorRatio::Requests { metric, bad } => {
                out.push('(');
                if let [one] = bad.as_slice() {
                    sum_rate(&mut out, metric, &[one]);
                } else {
                    // Each part may have no series at all.
                    for (i, b) in bad.iter().enumerate() {
                        if i > 0 {
                            out.push_str(" + ");
                        }
                        out.push('(');
                        sum_rate(&mut out, metric, &[b]);
                        out.push_str(" or vector(0))");
                    }
                }
                out.push_str(") / (");
                sum_rate(&mut out, metric, &[]);
                out.push(')');
            }
            ErrorRatio::Latency { metric, le } => {
                out.push_str("1 - ((");
                sum_rate(&mut out, metric, &[",le=\\\"", le, "\\\""]);
                out.push_str(") / (");
                sum_rate(&mut out, metric, &[",le=\\\"+Inf\\\""]);
                out.push_str("))");
            }
            ErrorRatio::Custom { good, total } => {
                out.push_str("1 - ((");
                out.push_str(&good.replace("{{window}}", window));
                out.push_str(") / (");
                out.push_str(&total.replace("{{window}}", window));
                out.push_str("))");
            }
        }
        out.push('"');
        out
    }
}
