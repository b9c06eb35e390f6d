//! Routes lowered: each intent route's destination resolved to weighted
//! backends — this service's versions, or another service's default
//! route — then the rollout's own routes (A/B test, preview, sticky
//! canary) and the default route appended.

use meshplan_policy_lang::intent::rollout::{SessionAffinity, Strategy};
use meshplan_policy_lang::intent::service::{Destination, Match, ServiceSpec};
use meshplan_policy_lang::intent::{workloads, PortRef};
use meshplan_policy_lang::resolve::ServiceIndex;

use super::LowerError;
use crate::ir::{Backend, Mirror, OtherService, Position, Positions, Route, RouteAction};
use crate::rollout::canary_weight;

/// What lowering one service's routes reads.
pub(super) struct Routing<'a> {
    pub index: &'a ServiceIndex<'a>,
    pub positions: &'a Positions,
    pub namespace: &'a str,
    /// The intent's name.
    pub name: &'a str,
    pub spec: &'a ServiceSpec,
    pub position: Position,
    /// The service's mirror (or its mirror rollout's, while it copies).
    pub mirror: Option<Mirror>,
}

/// Where the rollout of `namespace/name` stands.
pub(super) fn position(positions: &Positions, namespace: &str, name: &str) -> Position {
    positions
        .by_service
        .get(&format!("{namespace}/{name}"))
        .copied()
        .unwrap_or(Position::NotStarted)
}

/// The service's routes in order, the default route last.
pub(super) fn routes(
    cx: &Routing<'_>,
    fail: &dyn Fn(String) -> LowerError,
) -> Result<Vec<Route>, LowerError> {
    let spec = cx.spec;
    let mut routes = Vec::with_capacity(spec.routes.len() + 2);
    for r in &spec.routes {
        let action = match (&r.redirect, &r.destination) {
            (Some(redirect), _) => RouteAction::Redirect(redirect.clone()),
            (None, Some(d)) => RouteAction::Forward(destination(cx, d, &|m| {
                fail(format!("route `{}`: {m}", r.name))
            })?),
            (None, None) => {
                return Err(fail(format!(
                    "route `{}` has neither a destination nor a redirect",
                    r.name
                )))
            }
        };
        routes.push(Route {
            name: r.name.clone(),
            matches: r.matches.clone(),
            action,
            rewrite: r.rewrite.clone(),
            timeout: r.timeout,
            faults: r.faults.clone().or_else(|| spec.faults.clone()),
            mirror: r
                .mirror
                .as_ref()
                .map(|m| Mirror {
                    version: m.version.clone(),
                    percentage: m.percentage.unwrap_or(100.0),
                })
                .or_else(|| cx.mirror.clone()),
        });
    }
    // A/B acts for the whole rollout; mirroring only before any weight
    // moves.
    if let Some(r) = spec.rollout.as_ref().filter(|r| {
        r.strategy == Strategy::AbTest
            && matches!(cx.position, Position::Shadow | Position::Step(_))
    }) {
        if let Some(ab) = &r.ab_test {
            routes.push(Route {
                name: "rollout-ab-test".into(),
                matches: ab.matches.clone(),
                action: RouteAction::Forward(vec![Backend::version(&r.canary, 100)]),
                rewrite: None,
                timeout: None,
                faults: spec.faults.clone(),
                mirror: cx.mirror.clone(),
            });
        }
    }
    // The preview route and the sticky canary's, while the rollout is
    // under way.
    for (name, matches, canary) in rollout_routes(cx) {
        routes.push(Route {
            name: name.into(),
            matches,
            action: RouteAction::Forward(vec![Backend::version(canary, 100)]),
            rewrite: None,
            timeout: None,
            faults: spec.faults.clone(),
            mirror: cx.mirror.clone(),
        });
    }
    routes.push(Route {
        name: "default".into(),
        matches: Vec::new(),
        action: RouteAction::Forward(sticky(
            spec,
            (cx.namespace, cx.name),
            cx.position,
            default_backends(spec, cx.position),
        )),
        rewrite: None,
        timeout: None,
        faults: spec.faults.clone(),
        mirror: cx.mirror.clone(),
    });
    Ok(routes)
}

/// The routes a rollout adds after the service's own while it is under
/// way (before promotion), each to the canary: the preview's match, and
/// the sticky canary's cookie (weights shifting: not `blueGreen`, whose
/// switch is whole, nor `abTest`, whose match decides).
fn rollout_routes<'a>(cx: &Routing<'a>) -> Vec<(&'static str, Vec<Match>, &'a str)> {
    let Some(r) = cx.spec.rollout.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let under_way = matches!(cx.position, Position::Shadow | Position::Step(_));
    if let Some(p) = r
        .preview
        .as_ref()
        .filter(|_| under_way && r.strategy != Strategy::AbTest)
    {
        out.push(("rollout-preview", p.matches.clone(), r.canary.as_str()));
    }
    if let Some(sa) = affinity_at(cx.spec, cx.position) {
        let sticky = vec![sa.sticky_match(cx.namespace, cx.name, &r.canary)];
        out.push(("rollout-sticky", sticky, r.canary.as_str()));
    }
    out
}

/// `spec`'s session affinity at `position`: a `canary` or `mirror`
/// rollout at a step that gives the canary a share (before it, a cookie
/// left from an earlier run of the same version would pin users to a
/// canary nobody chose).
fn affinity_at(spec: &ServiceSpec, position: Position) -> Option<&SessionAffinity> {
    let r = spec.rollout.as_ref()?;
    let shifting = matches!(r.strategy, Strategy::Canary | Strategy::Mirror);
    let at_step = matches!(position, Position::Step(_)) && canary_weight(r, position) > 0;
    r.session_affinity.as_ref().filter(|_| shifting && at_step)
}

/// The default route's backends of the service `name`, the canary's
/// responses setting the sticky cookie while weight shifts (also when
/// another service's route reaches them: the canary answered).
fn sticky(
    spec: &ServiceSpec,
    (namespace, name): (&str, &str),
    position: Position,
    mut backends: Vec<Backend>,
) -> Vec<Backend> {
    if let (Some(sa), Some(r)) = (affinity_at(spec, position), spec.rollout.as_ref()) {
        for b in backends.iter_mut().filter(|b| b.version == r.canary) {
            b.set_cookie = Some(sa.set_cookie(namespace, name, &r.canary));
        }
    }
    backends
}

/// The default route's backends at `position`: the rollout's stable and
/// canary weights, else the default version (none: no versions, the
/// Service's pods).
fn default_backends(spec: &ServiceSpec, position: Position) -> Vec<Backend> {
    match &spec.rollout {
        Some(r) => {
            let canary = canary_weight(r, position);
            vec![
                Backend::version(&r.stable, 100 - canary),
                Backend::version(&r.canary, canary),
            ]
        }
        None => spec
            .default_version
            .as_deref()
            .or_else(|| spec.versions.first().map(|v| v.name.as_str()))
            .map(|v| vec![Backend::version(v, 100)])
            .unwrap_or_default(),
    }
}

/// `fail` makes the error of a destination that does not resolve (a
/// reference `check` should have caught).
fn destination(
    cx: &Routing<'_>,
    d: &Destination,
    fail: &dyn Fn(String) -> LowerError,
) -> Result<Vec<Backend>, LowerError> {
    if let Some(reference) = &d.service {
        return other_service(cx, reference, d.port.as_ref(), fail);
    }
    Ok(match &d.version {
        Some(v) => vec![Backend::version(v, 100)],
        None => d
            .weights
            .iter()
            .map(|w| Backend::version(&w.version, w.weight))
            .collect(),
    })
}

/// A route to another service: that service's default route, at its own
/// rollout's position (resolved exactly as check resolves it), on the
/// port the intent names or its one http port.
fn other_service(
    cx: &Routing<'_>,
    reference: &str,
    port: Option<&PortRef>,
    fail: &dyn Fn(String) -> LowerError,
) -> Result<Vec<Backend>, LowerError> {
    let (intent, namespace) = cx
        .index
        .resolve(cx.namespace, reference)
        .map_err(|e| fail(e.to_string()))?;
    let mut l7 = intent.spec.ports.iter().filter(|p| p.protocol.is_l7());
    let chosen = match port {
        Some(r) => l7.find(|p| match r {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(n) => &p.name == n,
        }),
        None => l7.next().filter(|_| l7.next().is_none()),
    };
    let port = chosen
        .ok_or_else(|| fail(format!("no single http port of `{reference}` to route to")))?
        .port;
    let other = std::sync::Arc::new(OtherService {
        namespace: namespace.to_owned(),
        name: intent.metadata.name.clone(),
        host: workloads::host(intent).to_owned(),
        port,
    });
    let at = position(cx.positions, namespace, &intent.metadata.name);
    let key = (namespace, intent.metadata.name.as_str());
    let mut backends = sticky(&intent.spec, key, at, default_backends(&intent.spec, at));
    if backends.is_empty() {
        // No versions: the whole Service.
        backends.push(Backend::version("", 100));
    }
    for b in &mut backends {
        b.service = Some(other.clone());
    }
    Ok(backends)
}
