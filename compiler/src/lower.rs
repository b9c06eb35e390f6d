//! The lower stage: a checked [`Repository`] → the mesh-neutral [`Ir`].
//!
//! Runs only on a repository `check` passed, so every reference resolves;
//! if one does not (a check bug, or a caller that skipped `check`), lowering
//! returns an error naming it instead of guessing or panicking.

use meshplan_policy_lang::intent::config::GatewayApiChannel;
use meshplan_policy_lang::intent::service::MtlsMode;
use meshplan_policy_lang::intent::{workloads, PortRef, ServiceIntent};
use meshplan_policy_lang::parse::{Loaded, Repository};
use meshplan_policy_lang::resolve::ServiceIndex;

use crate::ir::{Ir, Origin, Port, Positions, Service, Version};

mod access;
mod resilience;
mod rollout;
mod routes;

/// Why lowering failed: a reference `check` should have caught.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct LowerError {
    /// `file:line` of the intent.
    pub origin: String,
    pub message: String,
}

/// Lowers every service of `repo`, with rollouts at `positions`.
pub fn lower(repo: &Repository, positions: &Positions) -> Result<Ir, LowerError> {
    let lowering = Lowering::new(repo, positions);
    let mut ir = lowering.settings();
    ir.services = lowering.services(&repo.services.iter().collect::<Vec<_>>())?;
    Ok(ir)
}

/// Lowering in parts: the repository's settings once, then any group of
/// its services — a namespace at a time, so that a large repository's IR
/// is never whole (see `compile`). Lowering every group gives the same
/// services as [`lower`].
pub struct Lowering<'r> {
    repo: &'r Repository,
    index: ServiceIndex<'r>,
    positions: &'r Positions,
    settings: Ir,
}

impl std::fmt::Debug for Lowering<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lowering")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<'r> Lowering<'r> {
    pub fn new(repo: &'r Repository, positions: &'r Positions) -> Self {
        let config = repo.config.as_ref().map(|c| &c.value);
        let settings = Ir {
            trust_domain: repo.trust_domain().to_owned(),
            services: Vec::new(),
            istio_revision: config
                .and_then(|c| c.istio.as_ref())
                .and_then(|i| i.revision.clone()),
            default_mtls: config
                .and_then(|c| c.defaults.as_ref())
                .and_then(|d| d.mtls)
                .unwrap_or(MtlsMode::Strict),
            gateway_api_experimental: config
                .and_then(|c| c.gateway_api.as_ref())
                .is_some_and(|g| g.channel == GatewayApiChannel::Experimental),
            consul_namespaces: config
                .and_then(|c| c.consul.as_ref())
                .is_some_and(|c| c.namespaces),
            metrics_workload: config
                .and_then(|c| c.metrics.as_ref())
                .and_then(|m| m.workload.clone()),
            targets: Vec::new(),
        };
        Lowering {
            repo,
            index: ServiceIndex::new(repo),
            positions,
            settings,
        }
    }

    /// The repository-wide part of the IR: no services.
    pub fn settings(&self) -> Ir {
        self.settings.clone()
    }

    /// The repository's intents by namespace, namespaces in order.
    pub fn by_namespace(&self) -> Vec<Vec<&'r Loaded<ServiceIntent>>> {
        let mut groups: std::collections::BTreeMap<&str, Vec<&Loaded<ServiceIntent>>> =
            std::collections::BTreeMap::new();
        for s in &self.repo.services {
            groups
                .entry(self.repo.namespace_of(&s.value))
                .or_default()
                .push(s);
        }
        groups.into_values().collect()
    }

    /// `intents` lowered, sorted by namespace, then name.
    pub fn services(&self, intents: &[&Loaded<ServiceIntent>]) -> Result<Vec<Service>, LowerError> {
        // Sized up front: collecting through `Result` does not know the
        // count, and doubling leaves up to half the vector spare.
        let mut services = Vec::with_capacity(intents.len());
        for s in intents {
            services.push(service(
                self.repo,
                &self.index,
                s,
                self.settings.default_mtls,
                self.positions,
            )?);
        }
        services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(services)
    }
}

fn service(
    repo: &Repository,
    index: &ServiceIndex<'_>,
    loaded: &Loaded<ServiceIntent>,
    default_mtls: MtlsMode,
    positions: &Positions,
) -> Result<Service, LowerError> {
    let s = &loaded.value;
    let spec = &s.spec;
    let namespace = repo.namespace_of(s).to_owned();
    let name = s.metadata.name.clone();
    let host = workloads::host(s).to_owned();
    let origin = Origin::new(
        &format!("{namespace}/{name}"),
        &loaded.file.name,
        loaded.span.start.line,
    );
    let fail = |message: String| LowerError {
        origin: origin.source.to_string(),
        message,
    };

    let ports: Vec<Port> = spec
        .ports
        .iter()
        .map(|p| Port {
            name: p.name.clone(),
            port: p.port,
            target_port: p.target_port.unwrap_or(p.port),
            protocol: p.protocol,
        })
        .collect();
    let find_port = |r: &PortRef| -> Result<Port, LowerError> {
        ports
            .iter()
            .find(|p| match r {
                PortRef::Number(n) => p.port == *n || p.target_port == *n,
                PortRef::Name(n) => &p.name == n,
            })
            .cloned()
            .ok_or_else(|| fail(format!("unknown port {r:?}")))
    };
    // The pods of each version carry the service's selector and their own
    // labels: every selector emitted is one of these (`check` proved
    // they reach this service's pods only).
    let workload_selector = workloads::selector(s);
    let versions: Vec<Version> = spec
        .versions
        .iter()
        .map(|v| Version {
            name: v.name.clone(),
            labels: workloads::pod_labels(&workload_selector, &v.labels),
        })
        .collect();

    let position = routes::position(positions, &namespace, &name);
    let mirror = rollout::mirror(spec, position);
    let routes = routes::routes(
        &routes::Routing {
            index,
            positions,
            namespace: &namespace,
            name: &name,
            spec,
            position,
            mirror,
        },
        &fail,
    )?;
    let res = spec.resilience.clone().unwrap_or_default();
    let rate_limit = spec
        .rate_limit
        .as_ref()
        .map(|rl| resilience::rate_limit(rl, &ports, &find_port))
        .transpose()?;

    let access = spec
        .access
        .as_ref()
        .map(|a| access::access(index, &namespace, a, &find_port, &fail))
        .transpose()?;

    let failover = resilience::failover(&res.failover, &namespace);

    Ok(Service {
        name,
        namespace,
        host,
        service_account: workloads::service_account(s).to_owned(),
        origin,
        ports,
        versions,
        workload_selector,
        routes,
        timeout: res.timeout,
        retries: res.retries,
        circuit_breaker: res.circuit_breaker,
        connection_pool: res.connection_pool,
        load_balancer: res.load_balancer,
        failover,
        rate_limit,
        mtls: spec.mtls.unwrap_or(default_mtls),
        access,
        slos: spec.slos.clone(),
        rollout: spec.rollout.clone(),
    })
}

#[cfg(test)]
mod tests {
    use meshplan_policy_lang::intent::labels::Labels;

    use crate::ir::{Peer, Position};

    use super::*;

    #[test]
    fn a_sticky_canary_holds_only_while_the_canary_has_a_share() {
        let text = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: web, namespace: a }\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n  versions:\n    - { name: v1, labels: { app: web, version: v1 } }\n    - { name: v2, labels: { app: web, version: v2 } }\n  rollout:\n    stable: v1\n    canary: v2\n    sessionAffinity: {}\n    steps: [{ gate: manual }, { weight: 50 }, { weight: 100 }]\n";
        let at = |p: Position| {
            let mut positions = Positions::default();
            positions.by_service.insert("a/web".into(), p);
            let ir = crate::testing::ir_of(&[("web.yaml", text)], &positions);
            let web = ir.services.into_iter().next().unwrap();
            let route = web.routes.iter().any(|r| r.name == "rollout-sticky");
            let cookies: Vec<String> = match &web.routes.last().unwrap().action {
                crate::ir::RouteAction::Forward(b) => {
                    b.iter().filter_map(|b| b.set_cookie.clone()).collect()
                }
                crate::ir::RouteAction::Redirect(_) => vec![],
            };
            (route, cookies)
        };
        let none = (false, vec![]);
        assert_eq!(at(Position::NotStarted), none);
        assert_eq!(
            at(Position::Step(0)),
            none,
            "a manual gate before any weight"
        );
        let on = (
            true,
            vec!["meshplan-canary-a-web=v2; Max-Age=86400; Path=/".to_owned()],
        );
        assert_eq!(at(Position::Step(1)), on);
        assert_eq!(at(Position::Promoted), none);
    }

    #[test]
    fn resolves_callers_exactly_as_check_does() {
        // `web` is named without a namespace and lives only in `b`: check
        // accepts it, so lowering must resolve it too.
        let text = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: api, namespace: a }\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n  access:\n    allow:\n      - from: [{ service: web }]\n---\napiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: web, namespace: b }\nspec:\n  serviceAccount: web-sa\n  ports: [{ name: http, port: 80, protocol: http }]\n";
        let (repo, report) =
            meshplan_policy_lang::check::check_sources(&meshplan_policy_lang::parse::Sources {
                files: vec![("s.yaml".into(), text.into())],
            });
        assert!(report.passes(false), "{:?}", report.diagnostics);
        let ir = lower(&repo, &Positions::default()).unwrap();
        let api = ir.services.iter().find(|s| s.name == "api").unwrap();
        assert_eq!(
            api.access.as_ref().unwrap().rules[0].from,
            [Peer::ServiceAccount {
                namespace: "b".into(),
                name: "web-sa".into(),
                service: Some("web".into()),
            }]
        );
    }

    #[test]
    fn a_versions_pods_carry_the_service_selector() {
        // Before: reviews' versions labelled only `version: vN` gave
        // backend Services selecting every `version: v1` pod of the
        // namespace.
        let text = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: reviews }\nspec:\n  selector: { app: reviews }\n  ports: [{ name: http, port: 80, protocol: http }]\n  versions:\n    - { name: v1, labels: { version: v1 } }\n    - { name: v2, labels: { version: v2 } }\n";
        let (repo, report) =
            meshplan_policy_lang::check::check_sources(&meshplan_policy_lang::parse::Sources {
                files: vec![("s.yaml".into(), text.into())],
            });
        assert!(report.passes(false), "{:?}", report.diagnostics);
        let ir = lower(&repo, &Positions::default()).unwrap();
        let s = &ir.services[0];
        assert_eq!(s.workload_selector, Labels::from([("app", "reviews")]));
        assert_eq!(
            s.versions[0].labels,
            Labels::from([("app", "reviews"), ("version", "v1")])
        );
    }
}
