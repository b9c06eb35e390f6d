//! The feature matrix through the models: a target that declares a
//! feature supported (Yes or Partly, docs/meshes.md) must render it with
//! the intent's meaning, not only without an error — the equivalence
//! property on one example service per feature (`example_intent`, the
//! service the emitters' declarations are tested on), on every target
//! that claims it.

use meshplan_compiler::check_sources;
use meshplan_compiler::emit::features::{example_intent, expresses, Feature};
use meshplan_compiler::{Position, Positions};
use meshplan_policy_lang::intent::Target;
use meshplan_policy_lang::parse::Sources;

/// Whether the models observe what `f` means (a feature they do not is
/// held to its schema and declarations only). Exhaustive: a new feature
/// must say.
fn observed(f: Feature) -> bool {
    match f {
        Feature::WeightedSplit
        | Feature::TcpSplit
        | Feature::HeaderMatch
        | Feature::CookieMatch
        | Feature::PathMatch
        | Feature::MethodMatch
        | Feature::QueryMatch
        | Feature::RouteOrder
        | Feature::ServiceRoute
        | Feature::Redirect
        | Feature::Rewrite
        | Feature::Timeout
        | Feature::Retries
        | Feature::PerTryTimeout
        | Feature::FaultInjection
        | Feature::Mirroring
        | Feature::StickyCanary
        | Feature::StrictMtls
        | Feature::AllowList
        | Feature::AllowListL7 => true,
        // Load, failure and metrics behaviour: no request answers it.
        Feature::CircuitBreaker
        | Feature::ConnectionPool
        | Feature::LoadBalancing
        | Feature::SessionAffinity
        | Feature::Failover
        | Feature::RateLimit
        | Feature::SloRules => false,
    }
}

#[test]
fn every_feature_a_target_claims_means_on_it_what_the_intent_says() {
    let config = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\nunsupported: warning\ngatewayApi: { channel: experimental }\n";
    let mut positions = Positions::default();
    positions
        .by_service
        .insert("t/svc".into(), Position::Step(0));
    let mut wrong = Vec::new();
    let mut held = 0;
    for f in Feature::ALL.into_iter().filter(|f| observed(*f)) {
        let (repo, report) = check_sources(&Sources {
            files: vec![
                ("meshplan.yaml".into(), config.into()),
                ("svc.yaml".into(), example_intent(Some(f))),
                // A caller for the allow lists' `callers/web`.
                ("web.yaml".into(), "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: web, namespace: callers }\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n".into()),
            ],
        });
        assert!(report.passes(false), "{f:?}: {:?}", report.diagnostics);
        let claimed: Vec<Target> = Target::ALL
            .into_iter()
            .filter(|t| *t != Target::Smi && expresses(*t, f))
            .collect();
        held += claimed.len();
        for d in super::divergences_on(&repo, &report, &positions, &claimed) {
            wrong.push(format!("{f:?}: {d}"));
        }
    }
    assert!(held >= 40, "only {held} feature × target pairs held");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
