//! Holding a target's answer to the reference's: each part compared
//! unless the target reported (MP4002) the feature it depends on for the
//! request's service. A part the reference leaves to the mesh (no
//! timeout, no retries set) is not compared.

use std::collections::{BTreeMap, BTreeSet};

use meshplan_compiler::emit::features::Feature;
use meshplan_compiler::model::{Answer, Forward, Retries, Routing};

/// What a target reported it cannot express, for one service.
#[derive(Debug, Default)]
pub struct Excused {
    pub features: BTreeSet<Feature>,
    /// A report without a feature excuses everything.
    pub all: bool,
}

impl Excused {
    fn any(&self, fs: &[Feature]) -> bool {
        self.all || fs.iter().any(|f| self.features.contains(f))
    }
}

const ROUTING: &[Feature] = &[
    Feature::WeightedSplit,
    Feature::TcpSplit,
    Feature::HeaderMatch,
    Feature::CookieMatch,
    Feature::PathMatch,
    Feature::MethodMatch,
    Feature::QueryMatch,
    Feature::RouteOrder,
    Feature::ServiceRoute,
    Feature::Redirect,
    Feature::StickyCanary,
];
const ACCESS: &[Feature] = &[
    Feature::AllowList,
    Feature::AllowListL7,
    Feature::StrictMtls,
];

/// The differences between `want` (the reference) and `got`.
pub fn differences(want: &Answer, got: &Answer, excused: &Excused) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(w), Some(g)) = (&want.routing, &got.routing) {
        routing(w, g, excused, &mut out);
    }
    if let (Some(w), Some(g)) = (&want.authorization, &got.authorization) {
        if !excused.any(ACCESS) {
            for (pod, verdict) in w {
                match g.get(pod) {
                    Some(v) if v.allowed() == verdict.allowed() => {}
                    Some(v) => out.push(format!(
                        "at pod {pod}: the intent {} ({verdict:?}), the target {} ({v:?})",
                        if verdict.allowed() {
                            "allows"
                        } else {
                            "denies"
                        },
                        if v.allowed() { "allows" } else { "denies" },
                    )),
                    None => out.push(format!(
                        "pod {pod} is not among the pods the target evaluated: {:?}",
                        g.keys().collect::<Vec<_>>()
                    )),
                }
            }
        }
    }
    out
}

fn routing(want: &Routing, got: &Routing, excused: &Excused, out: &mut Vec<String>) {
    match (want, got) {
        (Routing::Forward(w), Routing::Forward(g)) => forward(w, g, excused, out),
        (Routing::Redirect(w), Routing::Redirect(g)) => {
            if w != g && !excused.any(&[Feature::Redirect]) {
                out.push(format!("redirect: want {w:?}, got {g:?}"));
            }
        }
        (Routing::NoRoute, Routing::NoRoute) => {}
        _ if excused.any(ROUTING) => {}
        _ => out.push(format!("routing: want {}, got {}", show(want), show(got))),
    }
}

fn forward(w: &Forward, g: &Forward, excused: &Excused, out: &mut Vec<String>) {
    let same_pods = w.pods.len() == g.pods.len()
        && w.pods
            .iter()
            .all(|(p, s)| g.pods.get(p).is_some_and(|t| (s - t).abs() < 0.01));
    if excused.any(ROUTING) {
        // Another route may have been chosen: what depends on it differs
        // for that reason, already reported.
        return;
    }
    if !same_pods {
        out.push(format!(
            "destination: want {:?} ({}), got {:?} ({})",
            w.pods, w.rule, g.pods, g.rule
        ));
    }
    if w.timeout_ms.is_some() && w.timeout_ms != g.timeout_ms && !excused.any(&[Feature::Timeout]) {
        out.push(format!(
            "timeout: want {:?} ms, got {:?} ms ({})",
            w.timeout_ms, g.timeout_ms, g.rule
        ));
    }
    if let Some(wr) = &w.retries {
        retries(wr, g.retries.as_ref(), excused, out);
    }
    if w.fault != g.fault && !excused.any(&[Feature::FaultInjection]) {
        out.push(format!("fault: want {:?}, got {:?}", w.fault, g.fault));
    }
    if w.mirror != g.mirror && !excused.any(&[Feature::Mirroring]) {
        out.push(format!("mirror: want {:?}, got {:?}", w.mirror, g.mirror));
    }
    if !excused.any(&[Feature::StickyCanary]) {
        let want: BTreeMap<_, _> = w.set_cookie.iter().map(|(p, c)| (p, cookie(c))).collect();
        let got: BTreeMap<_, _> = g.set_cookie.iter().map(|(p, c)| (p, cookie(c))).collect();
        if want != got {
            out.push(format!(
                "Set-Cookie on answers: want {:?}, got {:?} ({})",
                w.set_cookie, g.set_cookie, g.rule
            ));
        }
    }
    if !excused.any(&[Feature::Rewrite]) {
        if w.rewritten_path.is_some() && w.rewritten_path != g.rewritten_path {
            out.push(format!(
                "rewritten path: want {:?}, got {:?}",
                w.rewritten_path, g.rewritten_path
            ));
        }
        if w.rewritten_host.is_some() && w.rewritten_host != g.rewritten_host {
            out.push(format!(
                "rewritten host: want {:?}, got {:?}",
                w.rewritten_host, g.rewritten_host
            ));
        }
    }
}

fn retries(w: &Retries, g: Option<&Retries>, excused: &Excused, out: &mut Vec<String>) {
    let none = Retries::default();
    let g = g.unwrap_or(&none);
    // Conditions compared by meaning: `5xx` is every status from 500 to
    // 599, `gateway-error` 502–504, `retriable-4xx` 409.
    let same =
        w.attempts == g.attempts && (w.on.is_empty() || conditions(&w.on) == conditions(&g.on));
    if !same && !excused.any(&[Feature::Retries]) {
        out.push(format!("retries: want {w:?}, got {g:?}"));
    }
    if w.per_try_timeout_ms.is_some()
        && w.per_try_timeout_ms != g.per_try_timeout_ms
        && !excused.any(&[Feature::Retries, Feature::PerTryTimeout])
    {
        out.push(format!(
            "per-try timeout: want {:?}, got {:?}",
            w.per_try_timeout_ms, g.per_try_timeout_ms
        ));
    }
}

/// A `Set-Cookie` value by meaning: the cookie (`name=value`) and its
/// attributes, names in lower case, in any order (RFC 6265 §4.1.1).
fn cookie(header: &str) -> (String, BTreeMap<String, String>) {
    let mut parts = header.split(';').map(str::trim);
    let pair = parts.next().unwrap_or_default().to_owned();
    let attributes = parts
        .filter(|a| !a.is_empty())
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
            None => (a.to_ascii_lowercase(), String::new()),
        })
        .collect();
    (pair, attributes)
}

/// Retry conditions as the statuses they retry on and the other
/// conditions by name.
fn conditions(on: &[String]) -> (BTreeSet<u16>, BTreeSet<String>) {
    let mut statuses = BTreeSet::new();
    let mut named = BTreeSet::new();
    for c in on {
        match c.as_str() {
            "5xx" => statuses.extend(500..=599),
            "gateway-error" => statuses.extend(502..=504),
            "retriable-4xx" => {
                statuses.insert(409);
            }
            other => match other.parse::<u16>() {
                Ok(code) => {
                    statuses.insert(code);
                }
                Err(_) => {
                    named.insert(other.to_owned());
                }
            },
        }
    }
    (statuses, named)
}

fn show(r: &Routing) -> String {
    match r {
        Routing::Forward(f) => format!("forward to {:?} ({})", f.pods, f.rule),
        Routing::Redirect(r) => format!("redirect {r:?}"),
        Routing::NoRoute => "no route".into(),
    }
}
