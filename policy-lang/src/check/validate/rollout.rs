//! The rollout: its versions and steps, the strategy's block, its own
//! routes (the preview, sticky canaries), analysis and webhooks.

use std::fmt::Display;

use super::{Doc, Item};
use crate::diagnostic::Code;
use crate::intent::rollout::{Analysis, Rollout, SloGate, Strategy};
use crate::intent::service::ServiceSpec;
use crate::intent::ServiceIntent;
use crate::yaml::did_you_mean;

/// Reports a reference to a version the service does not declare.
pub(super) type VersionRef<'v> = dyn FnMut(&mut Doc<'_, ServiceIntent>, &dyn Display, &str) + 'v;

pub(super) fn rollout(
    d: &mut Doc<'_, ServiceIntent>,
    spec: &ServiceSpec,
    ro: &Rollout,
    l7: bool,
    version_ref: &mut VersionRef<'_>,
) {
    version_ref(d, &"spec.rollout.stable", &ro.stable);
    version_ref(d, &"spec.rollout.canary", &ro.canary);
    if ro.stable == ro.canary {
        d.error(
            Code::Conflict,
            "spec.rollout.canary",
            format!("the canary is the stable version `{}`", ro.stable),
        );
    }
    for (i, st) in ro.steps.iter().enumerate() {
        let p = Item("spec.rollout.steps", i);
        if let Some(w) = st.weight {
            if w > 100 {
                d.error(
                    Code::OutOfRange,
                    format_args!("{p}.weight"),
                    format!(
                        "weight {w} is over 100: a weight is the canary's percentage of traffic"
                    ),
                );
            }
        }
        if st.weight.is_none() && st.pause.is_none() && st.gate.is_none() {
            d.error(
                Code::MissingField,
                p,
                "a step needs a `weight`, a `pause` or a `gate`",
            );
        }
    }
    match ro.strategy {
        Strategy::AbTest if ro.ab_test.is_none() => {
            d.error_key(
                Code::MissingField,
                "spec.rollout.strategy",
                "strategy `abTest` needs an `abTest` block with the requests to send to the canary",
            );
        }
        Strategy::Mirror if ro.mirror.is_none() => {
            d.error_key(
                Code::MissingField,
                "spec.rollout.strategy",
                "strategy `mirror` needs a `mirror` block with the share of traffic to copy",
            );
        }
        _ => {}
    }
    routes(d, ro, l7);
    if let Some(m) = &ro.mirror {
        d.percent(
            "spec.rollout.mirror.percentage",
            "mirror percentage",
            m.percentage,
        );
    }
    if let Some(a) = &ro.analysis {
        analysis(d, a, spec);
    }
    d.unique(
        "webhook",
        "spec.rollout.webhooks",
        "name",
        &ro.webhooks,
        |w| w.name.as_str(),
    );
    for (i, w) in ro.webhooks.iter().enumerate() {
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            d.error(
                Code::InvalidValue,
                format_args!("spec.rollout.webhooks[{i}].url"),
                format!(
                    "webhook URL `{}` must start with http:// or https://",
                    w.url
                ),
            );
        }
    }
}

fn analysis(d: &mut Doc<'_, ServiceIntent>, a: &Analysis, spec: &ServiceSpec) {
    if a.failure_limit == Some(0) {
        d.error(
            Code::OutOfRange,
            "spec.rollout.analysis.failureLimit",
            "failureLimit must be at least 1",
        );
    }
    if let Some(sr) = &a.success_rate {
        d.percent(
            "spec.rollout.analysis.successRate.min",
            "success rate",
            sr.min,
        );
        if let Some(drop) = sr.max_drop_vs_stable {
            d.percent(
                "spec.rollout.analysis.successRate.maxDropVsStable",
                "maxDropVsStable",
                drop,
            );
        }
    }
    if let Some(r) = a.latency.as_ref().and_then(|l| l.max_ratio_vs_stable) {
        if r.is_nan() || r < 1.0 {
            d.error(
                Code::OutOfRange,
                "spec.rollout.analysis.latency.maxRatioVsStable",
                format!("maxRatioVsStable is {r}: a ratio under 1 would fail a canary as fast as stable"),
            );
        }
    }
    if let Some(l) = &a.latency {
        if let Some(p) = l.percentile {
            if ![50, 90, 95, 99].contains(&p) {
                d.error(
                    Code::OutOfRange,
                    "spec.rollout.analysis.latency.percentile",
                    format!("percentile {p} is not one of 50, 90, 95, 99"),
                );
            }
        }
    }
    d.unique(
        "metric",
        "spec.rollout.analysis.metrics",
        "name",
        &a.metrics,
        |m| m.name.as_str(),
    );
    let gated_names = a.slo_gate.as_ref().and_then(SloGate::named);
    let names_at = match &a.slo_gate {
        Some(SloGate::Options(_)) => "spec.rollout.analysis.sloGate.slos",
        _ => "spec.rollout.analysis.sloGate",
    };
    if let Some(names) = gated_names {
        let slos: Vec<&str> = spec.slos.iter().map(|s| s.name.as_str()).collect();
        for (i, n) in names.iter().enumerate() {
            if !slos.contains(&n.as_str()) {
                let hint = did_you_mean(n, &slos);
                d.error(
                    Code::UnknownReference,
                    format_args!("{names_at}[{i}]"),
                    format!("SLO `{n}` is not defined in this service's `slos`"),
                )
                .hint = hint;
            }
        }
    }
    if a.slo_gate.as_ref().is_some_and(SloGate::all) && spec.slos.is_empty() {
        d.error(
            Code::UnknownReference,
            "spec.rollout.analysis.sloGate",
            "the SLO gate covers every SLO, but this service has no SLOs",
        );
    }
    if let Some(w) = a.slo_gate.as_ref().and_then(SloGate::windows) {
        if w.short.as_millis() == 0 || w.short.as_millis() >= w.long.as_millis() {
            d.error(
                Code::Conflict,
                "spec.rollout.analysis.sloGate.windows",
                "the short window must be shorter than the long one, and not zero",
            );
        }
    }
}

/// The longest cookie name accepted (browsers keep names and values of
/// kilobytes; one this long is a mistake).
const MAX_COOKIE_NAME: usize = 64;
/// Browsers cap a cookie's `Max-Age` at 400 days (RFC 6265bis, "The
/// Max-Age Attribute").
const MAX_AGE_DAYS: u64 = 400;

fn routes(d: &mut Doc<'_, ServiceIntent>, ro: &Rollout, l7: bool) {
    if let Some(p) = &ro.preview {
        if ro.strategy == Strategy::AbTest {
            d.error(Code::Conflict, "spec.rollout.preview", "an A/B test's `abTest.match` already sends its requests to the canary: a preview has no place beside it");
        } else if p.matches.is_empty() {
            d.error_key(
                Code::MissingField,
                "spec.rollout.preview.match",
                "a preview needs a `match`: the requests (a header, a cookie) sent to the canary",
            );
        }
    }
    let Some(sa) = &ro.session_affinity else {
        return;
    };
    let at = "spec.rollout.sessionAffinity";
    match ro.strategy {
        Strategy::BlueGreen => {
            d.error(Code::Conflict, at, "a blue/green switches all traffic at once: no user is split from the rest to keep on the canary (session affinity is for `canary` and `mirror`)");
        }
        Strategy::AbTest => {
            d.error(Code::Conflict, at, "an A/B test's `abTest.match` decides who reaches the canary: session affinity has no place beside it");
        }
        Strategy::Canary | Strategy::Mirror if !l7 => {
            d.error(Code::Conflict, at, "session affinity is a cookie: it needs an http, http2 or grpc port, and this service only has tcp ports");
        }
        Strategy::Canary | Strategy::Mirror => {}
    }
    if let Some(name) = &sa.cookie_name {
        if !is_cookie_token(name) {
            d.error(
                Code::InvalidValue,
                format_args!("{at}.cookieName"),
                format!("cookie name `{}` is not a cookie name: use 1 to {MAX_COOKIE_NAME} letters, digits and `!#$&'*+-.^_`|~` (no spaces, `=`, `;`, `%` or quotes), not starting `__Host-` or `__Secure-` (browsers keep those only from https with `Secure`)", name.escape_debug()),
            );
        }
    }
    if let Some(age) = sa.max_age {
        if age.as_millis() < 1000 || age.as_millis() > MAX_AGE_DAYS * 86_400_000 {
            d.error(
                Code::OutOfRange,
                format_args!("{at}.maxAge"),
                format!("maxAge {age} is out of range: a cookie's lifetime is from 1s to {MAX_AGE_DAYS}d (browsers cap it at 400 days)"),
            );
        }
    }
}

/// A cookie name as RFC 6265 allows it (an HTTP token), less `%`, which
/// Envoy reads as a variable in a header value (Istio's and Consul's
/// response headers), and the `__Host-` and `__Secure-` prefixes, which
/// browsers accept only with a `Secure` cookie.
fn is_cookie_token(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (1..=MAX_COOKIE_NAME).contains(&name.len())
        && !lower.starts_with("__host-")
        && !lower.starts_with("__secure-")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b))
}
