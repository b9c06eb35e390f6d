//! The rollout at its position: the mirror while a `mirror` rollout
//! copies traffic (the canary's weight is [`crate::rollout::canary_weight`]).

use meshplan_policy_lang::intent::rollout::Strategy;
use meshplan_policy_lang::intent::service::ServiceSpec;

use crate::ir::{Mirror, Position};

/// The service's mirror, or its `mirror` rollout's while it copies
/// traffic (before any weight moves).
pub(super) fn mirror(spec: &ServiceSpec, position: Position) -> Option<Mirror> {
    let mut mirror = spec.mirror.as_ref().map(|m| Mirror {
        version: m.version.clone(),
        percentage: m.percentage.unwrap_or(100.0),
    });
    if let Some(r) = spec
        .rollout
        .as_ref()
        .filter(|r| position == Position::Shadow && r.strategy == Strategy::Mirror)
    {
        if let Some(m) = &r.mirror {
            mirror = Some(Mirror {
                version: r.canary.clone(),
                percentage: m.percentage,
            });
        }
    }
    mirror
}
