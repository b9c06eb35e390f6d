//! Each emitter's declarations against what it really does: one service per
//! feature, rendered by every emitter alone.

use super::*;
use crate::ir::{Position, Positions};
use crate::testing::ir_of;

/// The errors `target` alone reports for a service using `feature`.
fn errors_of(target: Target, feature: Option<Feature>) -> Vec<String> {
    let mut positions = Positions::default();
    positions
        .by_service
        .insert("t/svc".into(), Position::Step(0));
    let mut ir = ir_of(&[("svc.yaml", &example_intent(feature))], &positions);
    ir.targets = vec![target];
    let e = crate::emit::emitter(target);
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    report(e.as_ref(), &ir, &mut errors);
    e.emit(&ir, &mut objects, &mut errors);
    errors.into_iter().map(|e| e.message).collect()
}

#[test]
fn a_plain_service_renders_on_every_target_without_a_report() {
    for t in Target::ALL {
        assert_eq!(errors_of(t, None), Vec::<String>::new(), "{t:?}");
    }
}

#[test]
fn every_emitter_does_what_it_declares_for_every_feature() {
    let mut wrong = Vec::new();
    for t in Target::ALL {
        let e = crate::emit::emitter(t);
        for f in Feature::ALL {
            let errors = errors_of(t, Some(f));
            let reported = errors.iter().any(|m| m.contains(f.title()));
            match e.support(f) {
                Support::Yes if !errors.is_empty() => wrong.push(format!(
                    "{t:?} declares {f:?} supported, yet reports {errors:?}"
                )),
                Support::No(_) | Support::Elsewhere(..) if !reported => wrong.push(format!(
                    "{t:?} declares {f:?} unsupported alone, yet does not report it: {errors:?}"
                )),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_feature_left_to_another_target_is_not_reported_beside_it() {
    let text = example_intent(Some(Feature::AllowList));
    let mut ir = ir_of(&[("svc.yaml", &text)], &Positions::default());
    ir.targets = vec![Target::GatewayApi, Target::Cilium];
    let mut errors = Vec::new();
    report(&crate::emit::gateway_api::GatewayApi, &ir, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    ir.targets = vec![Target::GatewayApi];
    report(&crate::emit::gateway_api::GatewayApi, &ir, &mut errors);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("add a target that can"),
        "{}",
        errors[0].message
    );
}

#[test]
fn the_matrix_has_a_row_per_feature_and_a_column_per_target() {
    let m = matrix_markdown();
    let table: Vec<&str> = m.lines().take_while(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 2 + Feature::ALL.len());
    assert!(table[0].contains("| networkpolicy |"));
    assert_eq!(table[0].matches('|').count(), Target::ALL.len() + 2);
}
