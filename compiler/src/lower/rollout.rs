//! The rollout at its position: the canary's weight, and the mirror while
//! a `mirror` rollout copies traffic.

use meshplan_policy_lang::intent::rollout::Strategy;
use meshplan_policy_lang::intent::service::ServiceSpec;

use crate::ir::{Mirror, Position};

/// The canary's share of traffic at `position`.
pub fn canary_weight(r: &meshplan_policy_lang::intent::Rollout, position: Position) -> u32 {
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
