//! The compile-time rollout API: everything the rollout engine needs to
//! know of a revision's rollouts, without reaching into lowering or the
//! emitters.
//!
//! # Expected flow
//!
//! 1. [`declared`] lists the rollouts as the intents declare them (no
//!    lowering): enough to read their stored states and decide where each
//!    stands.
//! 2. [`crate::compile`] lowers the revision once, at those
//!    [positions](crate::Positions), and returns one [`Subject`] per
//!    service with a rollout ([`crate::Compiled::rollouts`]).
//! 3. The engine measures a [`Subject`]'s versions with the queries it
//!    builds ([`Subject::analysis_queries`], [`Subject::error_ratio`]), in
//!    the repository's metric vocabulary ([`crate::metrics`]), and turns a
//!    position into the canary's share with [`canary_weight`].
//!
//! # Guarantees
//!
//! - The weight the engine reports and the weight the emitted routes give
//!   are one function's answer ([`canary_weight`]).
//! - A [`Subject`]'s queries select what the SLO recording rules and alerts
//!   select: both are built by [`crate::metrics`].

use std::sync::Arc;

use meshplan_policy_lang::intent::rollout::Strategy;
use meshplan_policy_lang::intent::{Rollout, Slo};
use meshplan_policy_lang::parse::Repository;

use crate::ir::{Position, Positions, Service};
use crate::metrics::analysis::{analysis_queries, version_error_ratio};
use crate::metrics::{AnalysisQueries, Flavor, Vocabulary};
use crate::LowerError;

/// The canary's share of traffic at `position`.
pub fn canary_weight(r: &Rollout, position: Position) -> u32 {
    match position {
        Position::NotStarted | Position::Shadow => 0,
        Position::Promoted => 100,
        Position::Step(i) => match r.strategy {
            // Blue/green switches at once, on promotion only; A/B never
            // shifts weight, it promotes.
            Strategy::BlueGreen | Strategy::AbTest => 0,
            _ => r
                .steps
                .iter()
                .take(i + 1)
                .filter_map(|s| s.weight)
                .next_back()
                .unwrap_or(0)
                .min(100),
        },
    }
}

/// A rollout as its intent declares it.
#[derive(Clone, Copy, Debug)]
pub struct Declared<'r> {
    pub namespace: &'r str,
    pub name: &'r str,
    pub rollout: &'r Rollout,
}

impl Declared<'_> {
    /// `namespace/name`, the key of [`Positions`].
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The repository's rollouts, in the intents' order.
pub fn declared(repo: &Repository) -> impl Iterator<Item = Declared<'_>> {
    repo.services.iter().filter_map(move |s| {
        s.value.spec.rollout.as_ref().map(|rollout| Declared {
            namespace: repo.namespace_of(&s.value),
            name: &s.value.metadata.name,
            rollout,
        })
    })
}

/// A service with a rollout, lowered, in the repository's metric
/// vocabulary: what its analysis measures.
#[derive(Clone, Debug)]
pub struct Subject {
    service: Arc<Service>,
    metrics: Vocabulary,
}

impl Subject {
    /// `service` measured in the repository's vocabulary (`metrics.flavor`
    /// or its targets', else Istio's: `check` refuses an analysis whose
    /// flavour it cannot tell, MP2014).
    pub(crate) fn new(service: Service, repo: &Repository) -> Subject {
        let config = repo.config.as_ref().map(|c| &c.value);
        Subject {
            service: Arc::new(service),
            metrics: Vocabulary::of(config).unwrap_or_else(|| Flavor::Istio.into()),
        }
    }

    /// The same service, measured in `metrics` instead.
    pub fn with_metrics(mut self, metrics: Vocabulary) -> Subject {
        self.metrics = metrics;
        self
    }

    /// `namespace/name`, the key of [`Positions`].
    pub fn key(&self) -> String {
        self.service.key()
    }

    pub fn rollout(&self) -> Option<&Rollout> {
        self.service.rollout.as_ref()
    }

    pub fn slos(&self) -> &[Slo] {
        &self.service.slos
    }

    pub fn metrics(&self) -> &Vocabulary {
        &self.metrics
    }

    /// The analysis' queries for `version` over `interval` (`1m`), with the
    /// latency `percentile` (50–99).
    pub fn analysis_queries(
        &self,
        version: &str,
        interval: &str,
        percentile: u32,
    ) -> AnalysisQueries {
        analysis_queries(&self.metrics, &self.service, version, interval, percentile)
    }

    /// An intent's own analysis query with its placeholders filled:
    /// `{{service}}`, `{{namespace}}`, `{{version}}`, `{{interval}}`.
    pub fn own_query(&self, template: &str, version: &str, interval: &str) -> String {
        template
            .replace("{{service}}", &self.service.host)
            .replace("{{namespace}}", &self.service.namespace)
            .replace("{{version}}", version)
            .replace("{{interval}}", interval)
    }

    /// The error ratio of `slo`'s SLI for `version` over `window`: the
    /// recording rules' query with the version's selector (`None`: the SLO
    /// has no SLI).
    pub fn error_ratio(&self, slo: &Slo, version: &str, window: &str) -> Option<String> {
        version_error_ratio(&self.metrics, &self.service, slo, version, window)
    }
}

/// The services of `repo` with a rollout, lowered on their own (for a
/// caller with no compiled revision: `meshplan rollout simulate`).
pub fn subjects(repo: &Repository) -> Result<Vec<Subject>, LowerError> {
    let not_started = Positions::default();
    let lowering = crate::lower::Lowering::new(repo, &not_started);
    let with_rollout: Vec<_> = repo
        .services
        .iter()
        .filter(|s| s.value.spec.rollout.is_some())
        .collect();
    Ok(lowering
        .services(&with_rollout)?
        .into_iter()
        .map(|s| Subject::new(s, repo))
        .collect())
}

#[cfg(test)]
mod tests {
    use meshplan_policy_lang::intent::rollout::Step;

    use super::*;
    use crate::ir::RouteAction;
    use crate::testing::ir_of;

    fn rollout(strategy: Strategy, weights: &[Option<u32>]) -> Rollout {
        Rollout {
            strategy,
            stable: "v1".into(),
            canary: "v2".into(),
            steps: weights
                .iter()
                .map(|w| Step {
                    weight: *w,
                    ..Step::default()
                })
                .collect(),
            ab_test: None,
            preview: None,
            session_affinity: None,
            mirror: None,
            analysis: None,
            webhooks: vec![],
            freeze_on_failure: false,
        }
    }

    #[test]
    fn a_manual_gate_keeps_the_previous_steps_weight() {
        let r = rollout(Strategy::Canary, &[Some(5), Some(20), None, Some(100)]);
        assert_eq!(canary_weight(&r, Position::NotStarted), 0);
        assert_eq!(canary_weight(&r, Position::Step(0)), 5);
        assert_eq!(canary_weight(&r, Position::Step(2)), 20);
        assert_eq!(canary_weight(&r, Position::Step(3)), 100);
        assert_eq!(canary_weight(&r, Position::Promoted), 100);
    }

    #[test]
    fn blue_green_switches_only_on_promotion() {
        let r = rollout(Strategy::BlueGreen, &[Some(100)]);
        assert_eq!(canary_weight(&r, Position::Step(0)), 0);
        assert_eq!(canary_weight(&r, Position::Promoted), 100);
    }

    #[test]
    fn an_ab_test_never_shifts_weight_before_promotion() {
        let r = rollout(Strategy::AbTest, &[Some(100)]);
        assert_eq!(canary_weight(&r, Position::Shadow), 0);
        assert_eq!(canary_weight(&r, Position::Step(0)), 0);
        assert_eq!(canary_weight(&r, Position::Promoted), 100);
    }

    /// The routes the compiler emits at a position give the canary what
    /// [`canary_weight`] says: one answer for the engine and the mesh.
    #[test]
    fn the_lowered_default_route_carries_the_weight_of_the_position() {
        let text = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: web, namespace: a }\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n  versions:\n    - { name: v1, labels: { app: web, version: v1 } }\n    - { name: v2, labels: { app: web, version: v2 } }\n  rollout:\n    stable: v1\n    canary: v2\n    steps: [{ weight: 10 }, { gate: manual }, { weight: 40 }, { weight: 100 }]\n";
        for at in [
            Position::NotStarted,
            Position::Step(0),
            Position::Step(1),
            Position::Step(2),
            Position::Step(3),
            Position::Promoted,
        ] {
            let mut positions = Positions::default();
            positions.by_service.insert("a/web".into(), at);
            let ir = ir_of(&[("web.yaml", text)], &positions);
            let s = &ir.services[0];
            let canary: u32 = match &s.routes.last().unwrap().action {
                RouteAction::Forward(b) => {
                    b.iter().filter(|b| b.is_own("v2")).map(|b| b.weight).sum()
                }
                RouteAction::Redirect(_) => panic!("a redirect"),
            };
            assert_eq!(
                canary,
                canary_weight(s.rollout.as_ref().unwrap(), at),
                "{at:?}"
            );
        }
    }

    /// What the engine reads before compiling is what lowering sees.
    #[test]
    fn declared_rollouts_are_the_subjects_of_the_repository() {
        let text = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: web }\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n  versions:\n    - { name: v1, labels: { app: web, version: v1 } }\n    - { name: v2, labels: { app: web, version: v2 } }\n  rollout: { stable: v1, canary: v2, steps: [{ weight: 10 }, { gate: manual }, { weight: 100 }] }\n---\napiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: db, namespace: data }\nspec:\n  ports: [{ name: tcp, port: 5432, protocol: tcp }]\n";
        let (repo, report) =
            meshplan_policy_lang::check::check_sources(&meshplan_policy_lang::parse::Sources {
                files: vec![("s.yaml".into(), text.into())],
            });
        assert!(report.passes(false), "{:?}", report.diagnostics);
        let declared: Vec<String> = declared(&repo).map(|d| d.key()).collect();
        let subjects: Vec<String> = subjects(&repo).unwrap().iter().map(Subject::key).collect();
        assert_eq!(declared, ["default/web"]);
        assert_eq!(subjects, declared);
    }
}
