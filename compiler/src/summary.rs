//! The meaning of a revision in a few facts, mesh-neutral: who may call
//! whom, where each service's traffic goes, its SLOs and its rollout.
//!
//! `meshplan diff` compares two summaries to say what a change *does* —
//! "storefront/web loses access to payments/ledger", "reviews: v1 90% →
//! 75%" — beside the object-by-object YAML diff. The reconciler stores the
//! applied revision's summary with its inventory, so a diff against the
//! cluster explains itself as well as a diff between two checkouts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::ir::{Ir, Peer, RouteAction};

/// One revision's facts, by service (`namespace/name`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub services: BTreeMap<String, ServiceSummary>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSummary {
    /// Who may call the service, one line per caller and scope; `None`
    /// when the service has no allow list (any caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<BTreeSet<String>>,
    /// The default route's weights by version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// SLOs by name, described in one line.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slos: BTreeMap<String, String>,
    /// The rollout, described in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

impl Summary {
    pub fn of(ir: &Ir) -> Summary {
        let services = ir
            .services
            .iter()
            .map(|s| {
                let access = s.access.as_ref().filter(|a| a.default_deny).map(|a| {
                    let mut lines = BTreeSet::new();
                    for rule in &a.rules {
                        let scope = scope(rule);
                        for peer in &rule.from {
                            lines.insert(format!("{}{scope}", peer_name(peer)));
                        }
                    }
                    lines
                });
                let weights = s
                    .routes
                    .last()
                    .and_then(|r| match &r.action {
                        RouteAction::Forward(b) => {
                            Some(b.iter().map(|b| (b.version.clone(), b.weight)).collect())
                        }
                        RouteAction::Redirect(_) => None,
                    })
                    .unwrap_or_default();
                let slos = s
                    .slos
                    .iter()
                    .map(|slo| {
                        let window = slo.window.map_or("30d".to_owned(), |w| w.to_string());
                        let what = match (&slo.sli.availability, &slo.sli.latency) {
                            (Some(_), _) => "availability".to_owned(),
                            (_, Some(l)) => format!("latency under {}", l.threshold),
                            _ => "custom SLI".to_owned(),
                        };
                        (
                            slo.name.clone(),
                            format!("{}% {what} over {window}", slo.objective),
                        )
                    })
                    .collect();
                let rollout = s.rollout.as_ref().map(|r| {
                    let weights: Vec<String> = r
                        .steps
                        .iter()
                        .filter_map(|st| st.weight.map(|w| format!("{w}%")))
                        .collect();
                    let mut line =
                        format!("{:?} {} → {}", r.strategy, r.stable, r.canary).to_lowercase();
                    if !weights.is_empty() {
                        let _ = write!(line, " in steps {}", weights.join(", "));
                    }
                    if r.steps.iter().any(|st| st.gate.is_some()) {
                        line.push_str(", with a manual gate");
                    }
                    line
                });
                (
                    s.key(),
                    ServiceSummary {
                        access,
                        weights,
                        slos,
                        rollout,
                    },
                )
            })
            .collect();
        Summary { services }
    }

    /// What changes from `self` (before) to `after`, as sentences grouped by
    /// service. Empty when nothing meaningful changes.
    pub fn changes(&self, after: &Summary) -> Vec<Change> {
        let empty = ServiceSummary::default();
        let keys: BTreeSet<&String> = self.services.keys().chain(after.services.keys()).collect();
        let mut out = Vec::new();
        for key in keys {
            let (old, new) = (self.services.get(key), after.services.get(key));
            let mut lines = Vec::new();
            match (old, new) {
                (None, Some(_)) => lines.push("new service".to_owned()),
                (Some(_), None) => lines.push("removed".to_owned()),
                _ => {}
            }
            let (o, n) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
            access_changes(o, n, old.is_some(), new.is_some(), &mut lines);
            weight_changes(o, n, &mut lines);
            for name in o.slos.keys().chain(n.slos.keys()).collect::<BTreeSet<_>>() {
                match (o.slos.get(name), n.slos.get(name)) {
                    (None, Some(d)) => lines.push(format!("SLO {name} added: {d}")),
                    (Some(d), None) => lines.push(format!("SLO {name} removed (was {d})")),
                    (Some(a), Some(b)) if a != b => {
                        lines.push(format!("SLO {name} changed: {a} → {b}"))
                    }
                    _ => {}
                }
            }
            match (&o.rollout, &n.rollout) {
                (None, Some(r)) => lines.push(format!("rollout added: {r}")),
                (Some(r), None) => lines.push(format!("rollout removed (was {r})")),
                (Some(a), Some(b)) if a != b => lines.push(format!("rollout changed: {a} → {b}")),
                _ => {}
            }
            if !lines.is_empty() {
                out.push(Change {
                    service: key.clone(),
                    lines,
                });
            }
        }
        out
    }
}

/// What changes for one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub service: String,
    pub lines: Vec<String>,
}

fn access_changes(
    o: &ServiceSummary,
    n: &ServiceSummary,
    existed: bool,
    exists: bool,
    lines: &mut Vec<String>,
) {
    match (&o.access, &n.access) {
        (None, Some(allowed)) if existed => {
            lines.push("access: now default deny (was open to every caller)".to_owned());
            lines.extend(allowed.iter().map(|a| format!("access: allows {a}")));
        }
        (None, Some(allowed)) => {
            lines.extend(allowed.iter().map(|a| format!("access: allows {a}")));
        }
        (Some(_), None) if exists => {
            lines.push("access: now open to every caller (no allow list)".to_owned())
        }
        (Some(a), Some(b)) => {
            lines.extend(b.difference(a).map(|g| format!("access: gains {g}")));
            lines.extend(a.difference(b).map(|g| format!("access: loses {g}")));
        }
        _ => {}
    }
}

fn weight_changes(o: &ServiceSummary, n: &ServiceSummary, lines: &mut Vec<String>) {
    if o.weights == n.weights || o.weights.is_empty() || n.weights.is_empty() {
        return;
    }
    let versions: BTreeSet<&String> = o.weights.keys().chain(n.weights.keys()).collect();
    let moves: Vec<String> = versions
        .into_iter()
        .filter_map(|v| {
            let (a, b) = (
                o.weights.get(v).copied().unwrap_or(0),
                n.weights.get(v).copied().unwrap_or(0),
            );
            (a != b).then(|| format!("{v} {a}% → {b}%"))
        })
        .collect();
    lines.push(format!("traffic: {}", moves.join(", ")));
}

fn peer_name(p: &Peer) -> String {
    match p {
        Peer::ServiceAccount {
            namespace, name, ..
        } => format!("serviceaccount {namespace}/{name}"),
        Peer::Namespace(ns) => format!("namespace {ns}"),
        Peer::AnyNamespace => "any namespace".to_owned(),
        Peer::Anyone => "anyone".to_owned(),
    }
}

fn scope(rule: &crate::ir::AllowRule) -> String {
    let mut s = String::new();
    if !rule.ports.is_empty() {
        let ports: Vec<&str> = rule.ports.iter().map(|p| p.name.as_str()).collect();
        let _ = write!(s, " on port {}", ports.join(","));
    }
    if !rule.methods.is_empty() {
        let _ = write!(s, " methods {}", rule.methods.join(","));
    }
    if !rule.paths.is_empty() {
        let _ = write!(s, " paths {}", rule.paths.join(","));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(access: Option<&[&str]>, weights: &[(&str, u32)]) -> ServiceSummary {
        ServiceSummary {
            access: access.map(|a| a.iter().map(|s| s.to_string()).collect()),
            weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
            ..ServiceSummary::default()
        }
    }

    fn summary(services: &[(&str, ServiceSummary)]) -> Summary {
        Summary {
            services: services
                .iter()
                .map(|(k, s)| (k.to_string(), s.clone()))
                .collect(),
        }
    }

    #[test]
    fn reports_gained_and_lost_access_and_weight_moves() {
        let before = summary(&[(
            "shop/api",
            svc(
                Some(&["serviceaccount shop/web"]),
                &[("v1", 90), ("v2", 10)],
            ),
        )]);
        let after = summary(&[(
            "shop/api",
            svc(Some(&["namespace ops"]), &[("v1", 75), ("v2", 25)]),
        )]);
        let changes = before.changes(&after);
        assert_eq!(
            changes,
            vec![Change {
                service: "shop/api".into(),
                lines: vec![
                    "access: gains namespace ops".into(),
                    "access: loses serviceaccount shop/web".into(),
                    "traffic: v1 90% → 75%, v2 10% → 25%".into(),
                ],
            }]
        );
    }

    #[test]
    fn an_unchanged_summary_has_no_changes() {
        let s = summary(&[("a/b", svc(None, &[("v1", 100)]))]);
        assert!(s.changes(&s.clone()).is_empty());
    }

    #[test]
    fn a_new_allow_list_says_the_service_is_now_default_deny() {
        let before = summary(&[("a/b", svc(None, &[]))]);
        let after = summary(&[("a/b", svc(Some(&["namespace c"]), &[]))]);
        assert_eq!(
            before.changes(&after)[0].lines,
            vec![
                "access: now default deny (was open to every caller)",
                "access: allows namespace c"
            ]
        );
    }
}
