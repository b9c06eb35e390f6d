//! What each emitter can express, declared as data.
//!
//! Every emitter answers [`Emitter::support`] for every [`Feature`], by
//! an exhaustive match without a wildcard: a new feature does not compile
//! until each target says Yes, Partial, No or Elsewhere. Two
//! things come from those answers, so they cannot disagree:
//! - the unsupported-feature errors: a service using a feature its target
//!   declares [`Support::No`] (or [`Support::Elsewhere`] with none of the
//!   named targets rendered alongside) is reported, never silently dropped
//!   ([`report`]);
//! - the feature-by-mesh matrix of `docs/meshes.md` ([`matrix_markdown`]),
//!   which a test keeps identical to the declarations.
//!
//! A unit test renders one service per feature for every emitter and checks
//! the declaration against what the emitter really does.

use meshplan_policy_lang::intent::service::MtlsMode;
use meshplan_policy_lang::intent::{Protocol, Target};

use super::{EmitError, Emitter};
use crate::ir::{Ir, RouteAction, Service};

/// An intent feature an emitter may or may not express.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    WeightedSplit,
    TcpSplit,
    HeaderMatch,
    CookieMatch,
    PathMatch,
    MethodMatch,
    QueryMatch,
    RouteOrder,
    ServiceRoute,
    Redirect,
    Rewrite,
    Timeout,
    Retries,
    PerTryTimeout,
    CircuitBreaker,
    ConnectionPool,
    LoadBalancing,
    SessionAffinity,
    Failover,
    FaultInjection,
    Mirroring,
    StickyCanary,
    RateLimit,
    StrictMtls,
    AllowList,
    AllowListL7,
    SloRules,
}

impl Feature {
    pub const ALL: [Feature; 27] = [
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
        Feature::Rewrite,
        Feature::Timeout,
        Feature::Retries,
        Feature::PerTryTimeout,
        Feature::CircuitBreaker,
        Feature::ConnectionPool,
        Feature::LoadBalancing,
        Feature::SessionAffinity,
        Feature::Failover,
        Feature::FaultInjection,
        Feature::Mirroring,
        Feature::StickyCanary,
        Feature::RateLimit,
        Feature::StrictMtls,
        Feature::AllowList,
        Feature::AllowListL7,
        Feature::SloRules,
    ];

    /// How the feature is named in messages and in the matrix.
    pub fn title(self) -> &'static str {
        match self {
            Feature::WeightedSplit => "weighted traffic split (canary, blue/green)",
            Feature::TcpSplit => "a traffic split on tcp ports",
            Feature::HeaderMatch => "header matches",
            Feature::CookieMatch => "cookie matches",
            Feature::PathMatch => "path matches",
            Feature::MethodMatch => "method matches",
            Feature::QueryMatch => "query-parameter matches",
            Feature::RouteOrder => "first-match route order",
            Feature::ServiceRoute => "routes to another service",
            Feature::Redirect => "redirects",
            Feature::Rewrite => "request rewrites",
            Feature::Timeout => "timeouts",
            Feature::Retries => "retries",
            Feature::PerTryTimeout => "a per-try timeout",
            Feature::CircuitBreaker => "circuit breaking (outlier detection)",
            Feature::ConnectionPool => "connection pool limits",
            Feature::LoadBalancing => "a load-balancing policy",
            Feature::SessionAffinity => "session affinity (consistent hash)",
            Feature::Failover => "failover to other services, peers or datacenters",
            Feature::FaultInjection => "fault injection",
            Feature::Mirroring => "traffic mirroring",
            Feature::StickyCanary => "sticky canaries (a cookie keeps a canary's users on it)",
            Feature::RateLimit => "a local rate limit",
            Feature::StrictMtls => "strict mTLS",
            Feature::AllowList => "an allow list (identities, namespaces, ports)",
            Feature::AllowListL7 => "allow-list methods and paths (L7)",
            Feature::SloRules => "SLO recording and burn-rate alert rules",
        }
    }

    /// Where an intent asks for the feature: the first of these paths
    /// that exists (diagnostics point there).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Feature::WeightedSplit => &["spec.rollout", "spec.routes"],
            Feature::TcpSplit => &["spec.rollout", "spec.routes", "spec.ports"],
            Feature::HeaderMatch
            | Feature::CookieMatch
            | Feature::PathMatch
            | Feature::MethodMatch
            | Feature::QueryMatch
            | Feature::RouteOrder
            | Feature::ServiceRoute
            | Feature::Redirect
            | Feature::Rewrite => &["spec.routes"],
            Feature::Timeout => &["spec.resilience.timeout", "spec.routes"],
            Feature::Retries => &["spec.resilience.retries"],
            Feature::PerTryTimeout => &["spec.resilience.retries.perTryTimeout"],
            Feature::CircuitBreaker => &["spec.resilience.circuitBreaker"],
            Feature::ConnectionPool => &["spec.resilience.connectionPool"],
            Feature::LoadBalancing => &["spec.resilience.loadBalancer"],
            Feature::SessionAffinity => &["spec.resilience.loadBalancer.consistentHash"],
            Feature::Failover => &["spec.resilience.failover"],
            Feature::FaultInjection => &["spec.faults", "spec.routes"],
            Feature::Mirroring => &["spec.mirror", "spec.routes"],
            Feature::StickyCanary => &["spec.rollout.sessionAffinity"],
            Feature::RateLimit => &["spec.rateLimit"],
            Feature::StrictMtls => &["spec.mtls"],
            Feature::AllowList => &["spec.access"],
            Feature::AllowListL7 => &["spec.access.allow"],
            Feature::SloRules => &["spec.slos"],
        }
    }

    /// Whether `s` uses the feature.
    pub fn used_by(self, s: &Service) -> bool {
        let forwards = || {
            s.routes.iter().filter_map(|r| match &r.action {
                RouteAction::Forward(b) => Some(b),
                RouteAction::Redirect(_) => None,
            })
        };
        let split = || {
            s.rollout.is_some() || forwards().any(|b| b.iter().filter(|b| b.weight > 0).count() > 1)
        };
        let matches = || s.routes.iter().flat_map(|r| r.matches.iter());
        let rules = || s.access.iter().flat_map(|a| a.rules.iter());
        match self {
            Feature::WeightedSplit => split(),
            Feature::TcpSplit => split() && s.ports.iter().any(|p| p.protocol == Protocol::Tcp),
            Feature::HeaderMatch => matches().any(|m| !m.headers.is_empty()),
            Feature::CookieMatch => matches().any(|m| !m.cookies.is_empty()),
            Feature::PathMatch => matches().any(|m| m.path.is_some()),
            Feature::MethodMatch => matches().any(|m| m.method.is_some()),
            Feature::QueryMatch => matches().any(|m| !m.query_params.is_empty()),
            // Order decides only between two routes that match something.
            Feature::RouteOrder => s.routes.iter().filter(|r| !r.matches.is_empty()).count() > 1,
            Feature::ServiceRoute => forwards().flatten().any(|b| b.service.is_some()),
            Feature::Redirect => s
                .routes
                .iter()
                .any(|r| matches!(r.action, RouteAction::Redirect(_))),
            Feature::Rewrite => s.routes.iter().any(|r| r.rewrite.is_some()),
            Feature::Timeout => s.timeout.is_some() || s.routes.iter().any(|r| r.timeout.is_some()),
            Feature::Retries => s.retries.is_some(),
            Feature::PerTryTimeout => s
                .retries
                .as_ref()
                .is_some_and(|r| r.per_try_timeout.is_some()),
            Feature::CircuitBreaker => s.circuit_breaker.is_some(),
            Feature::ConnectionPool => s.connection_pool.is_some(),
            Feature::LoadBalancing => s.load_balancer.is_some(),
            Feature::SessionAffinity => s
                .load_balancer
                .as_ref()
                .is_some_and(|l| l.consistent_hash.is_some()),
            Feature::Failover => !s.failover.is_empty(),
            Feature::FaultInjection => s.routes.iter().any(|r| r.faults.is_some()),
            Feature::Mirroring => s.routes.iter().any(|r| r.mirror.is_some()),
            // Asked for, at whatever position: a target that cannot set
            // the cookie says so before the rollout starts.
            Feature::StickyCanary => s
                .rollout
                .as_ref()
                .is_some_and(|r| r.session_affinity.is_some()),
            Feature::RateLimit => s.rate_limit.is_some(),
            Feature::StrictMtls => s.mtls == MtlsMode::Strict,
            Feature::AllowList => s.access.is_some(),
            Feature::AllowListL7 => rules().any(|r| !r.methods.is_empty() || !r.paths.is_empty()),
            Feature::SloRules => !s.slos.is_empty(),
        }
    }
}

/// Targets that render traffic routing.
pub const ROUTING: &[Target] = &[
    Target::Istio,
    Target::Linkerd,
    Target::GatewayApi,
    Target::Consul,
];
/// Targets that render allow lists (at least at L4).
pub const POLICY: &[Target] = &[
    Target::Istio,
    Target::Linkerd,
    Target::Consul,
    Target::Cilium,
    Target::NetworkPolicy,
];
/// Targets that render allow lists with methods and paths.
pub const L7_POLICY: &[Target] = &[
    Target::Istio,
    Target::Linkerd,
    Target::Consul,
    Target::Cilium,
];
/// Targets that authenticate workloads with mTLS.
pub const MTLS: &[Target] = &[
    Target::Istio,
    Target::Linkerd,
    Target::Consul,
    Target::Cilium,
];
/// Targets whose standard metrics SLO rules are written against.
pub const METRICS: &[Target] = &[
    Target::Istio,
    Target::Linkerd,
    Target::Consul,
    Target::Cilium,
];

/// How far an emitter expresses a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Fully.
    Yes,
    /// In part: what is missing is reported by the emitter itself, per
    /// setting. The note says what.
    Partial(&'static str),
    /// Not at all: every use is reported. The note says why.
    No(&'static str),
    /// Left to another target rendered alongside (any one of these); alone,
    /// every use is reported.
    Elsewhere(&'static [Target], &'static str),
}

/// Whether `target` expresses `f`, at least in part (a target it leaves
/// the feature to must).
pub fn expresses(target: Target, f: Feature) -> bool {
    matches!(
        super::emitter(target).support(f),
        Support::Yes | Support::Partial(_)
    )
}

/// The names of those of `others` that express `f`.
fn able(others: &[Target], f: Feature) -> Vec<&'static str> {
    others
        .iter()
        .filter(|t| expresses(**t, f))
        .map(|t| crate::target_name(*t))
        .collect()
}

/// Reports every feature a service uses that `emitter` cannot express,
/// given the targets rendered together.
pub fn report(emitter: &dyn Emitter, ir: &Ir, errors: &mut Vec<EmitError>) {
    let mesh = crate::target_title(emitter.target());
    for s in &ir.services {
        for f in Feature::ALL {
            if !f.used_by(s) {
                continue;
            }
            let why = match emitter.support(f) {
                Support::Yes | Support::Partial(_) => continue,
                Support::Elsewhere(others, _)
                    if others
                        .iter()
                        .any(|t| ir.targets.contains(t) && expresses(*t, f)) =>
                {
                    continue
                }
                Support::No(why) => why.to_owned(),
                Support::Elsewhere(others, _) => {
                    format!("add a target that can: {}", able(others, f).join(", "))
                }
            };
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            let mut e = EmitError::new(
                emitter.name(),
                &s.origin,
                format!(
                    "service `{}`: {mesh} cannot express {}{why}",
                    s.key(),
                    f.title()
                ),
            );
            e.feature = Some(f);
            errors.push(e);
        }
    }
}

/// The feature-by-mesh matrix, as the Markdown table and notes that
/// `docs/meshes.md` carries between its `matrix` markers.
pub fn matrix_markdown() -> String {
    let emitters: Vec<Box<dyn Emitter>> = Target::ALL.iter().map(|t| super::emitter(*t)).collect();
    let mut out = String::from("| feature |");
    for e in &emitters {
        out.push_str(&format!(" {} |", e.name()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(emitters.len()));
    out.push('\n');
    let mut notes: Vec<String> = Vec::new();
    for f in Feature::ALL {
        out.push_str(&format!("| {} |", f.title()));
        for e in &emitters {
            let (mark, note) = match e.support(f) {
                Support::Yes => ("yes".to_owned(), None),
                Support::Partial(n) => ("partly".to_owned(), Some(n)),
                Support::No(n) => ("no".to_owned(), (!n.is_empty()).then_some(n)),
                Support::Elsewhere(others, n) => (
                    format!("via {}", able(others, f).join(" / ")),
                    (!n.is_empty()).then_some(n),
                ),
            };
            match note {
                Some(n) => {
                    // One note per emitter and text, however many cells
                    // share it.
                    let text = format!("{}: {n}", e.name());
                    let i = match notes.iter().position(|x| *x == text) {
                        Some(i) => i,
                        None => {
                            notes.push(text);
                            notes.len() - 1
                        }
                    };
                    out.push_str(&format!(" {mark} [{}] |", i + 1));
                }
                None => out.push_str(&format!(" {mark} |")),
            }
        }
        out.push('\n');
    }
    out.push('\n');
    for (i, n) in notes.iter().enumerate() {
        out.push_str(&format!("{}. {n}\n", i + 1));
    }
    out
}

/// The part of an example intent that uses `feature`.
fn example_spec(feature: Feature) -> &'static str {
    match feature {
        Feature::WeightedSplit => "rollout: { stable: v1, canary: v2, steps: [{ weight: 50 }, { gate: manual }, { weight: 100 }] }",
        Feature::TcpSplit => "rollout: { stable: v1, canary: v2, steps: [{ weight: 50 }, { gate: manual }, { weight: 100 }] }",
        Feature::HeaderMatch => "routes: [{ name: r, match: [{ headers: { x-beta: { exact: \"on\" } } }], destination: { version: v2 } }]",
        Feature::CookieMatch => "routes: [{ name: r, match: [{ cookies: { beta: { exact: \"on\" } } }], destination: { version: v2 } }]",
        Feature::PathMatch => "routes: [{ name: r, match: [{ path: { prefix: /beta/ } }], destination: { version: v2 } }]",
        Feature::MethodMatch => "routes: [{ name: r, match: [{ method: POST }], destination: { version: v2 } }]",
        Feature::QueryMatch => "routes: [{ name: r, match: [{ queryParams: { beta: { exact: \"1\" } } }], destination: { version: v2 } }]",
        Feature::RouteOrder => "routes: [{ name: a, match: [{ headers: { x-user: { exact: jason } } }], destination: { version: v2 } }, { name: b, match: [{ path: { prefix: /api }, method: GET }], destination: { version: v1 } }]",
        Feature::ServiceRoute => "routes: [{ name: r, match: [{ path: { prefix: /legacy } }], destination: { service: other } }]",
        Feature::Redirect => "routes: [{ name: r, match: [{ path: { prefix: /old/ } }], redirect: { path: /new/ } }]",
        Feature::Rewrite => "routes: [{ name: r, match: [{ path: { prefix: /api/ } }], destination: { version: v1 }, rewrite: { pathPrefix: / } }]",
        Feature::Timeout => "resilience: { timeout: 3s }",
        Feature::Retries => "resilience: { timeout: 3s, retries: { attempts: 2 } }",
        Feature::PerTryTimeout => "resilience: { timeout: 3s, retries: { attempts: 2, perTryTimeout: 1s } }",
        Feature::CircuitBreaker => "resilience: { circuitBreaker: { consecutiveErrors: 5 } }",
        Feature::ConnectionPool => "resilience: { connectionPool: { maxConnections: 10 } }",
        Feature::LoadBalancing => "resilience: { loadBalancer: { policy: leastRequest } }",
        Feature::SessionAffinity => "resilience: { loadBalancer: { policy: consistentHash, consistentHash: { header: x-user } } }",
        Feature::Failover => "resilience: { failover: [{ peer: east }] }",
        Feature::FaultInjection => "faults: { abort: { percentage: 1, httpStatus: 503 } }",
        Feature::Mirroring => "mirror: { version: v2, percentage: 10 }",
        Feature::StickyCanary => "rollout: { stable: v1, canary: v2, steps: [{ weight: 50 }, { gate: manual }, { weight: 100 }], sessionAffinity: { maxAge: 1h } }",
        Feature::RateLimit => "rateLimit: { requests: 100, per: 1s }",
        Feature::StrictMtls => "mtls: strict",
        Feature::AllowList => "access: { allow: [{ from: [{ serviceAccount: callers/web }] }] }",
        Feature::AllowListL7 => "access: { allow: [{ from: [{ serviceAccount: callers/web }], methods: [GET] }] }",
        Feature::SloRules => "slos: [{ name: availability, objective: 99.9, sli: { availability: {} } }]",
    }
}

/// A ServiceIntent `t/svc` using `feature` and little else (permissive
/// mTLS, so that strict mTLS is only the feature that asks for it; a
/// rollout renders at step 0): what the tests hold each emitter to, its
/// declarations and the feature's meaning (`compiler/tests/model/`).
pub fn example_intent(feature: Option<Feature>) -> String {
    let ports = match feature {
        Some(Feature::TcpSplit) => "[{ name: db, port: 5432, protocol: tcp }]",
        _ => "[{ name: http, port: 80, protocol: http }]",
    };
    let extra = feature.map(example_spec).unwrap_or("");
    let mtls = if feature == Some(Feature::StrictMtls) {
        ""
    } else {
        "mtls: permissive"
    };
    // The service a route to another service sends to.
    let other = match feature {
        Some(Feature::ServiceRoute) => "---\napiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: other, namespace: t }\nspec:\n  ports: [{ name: http, port: 8080, protocol: http }]\n  versions: [{ name: v1, labels: { app: other, version: v1 } }]\n  mtls: permissive\n",
        _ => "",
    };
    format!(
        "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: svc, namespace: t }}\nspec:\n  ports: {ports}\n  versions:\n    - {{ name: v1, labels: {{ app: svc, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: svc, version: v2 }} }}\n  {mtls}\n  {extra}\n{other}"
    )
}

#[cfg(test)]
mod tests;
