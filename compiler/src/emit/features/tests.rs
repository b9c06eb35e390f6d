//! Each emitter's declarations against what it really does: one service per
//! feature, rendered by every emitter alone.

use super::*;
use crate::ir::{Position, Positions};
use crate::testing::ir_of;

/// A service using `feature`, and little else (permissive mTLS, so strict
/// mTLS is only the feature that asks for it).
fn fixture(feature: Feature) -> &'static str {
    match feature {
        Feature::WeightedSplit => "rollout: { stable: v1, canary: v2, steps: [{ weight: 50 }, { gate: manual }, { weight: 100 }] }",
        Feature::TcpSplit => "rollout: { stable: v1, canary: v2, steps: [{ weight: 50 }, { gate: manual }, { weight: 100 }] }",
        Feature::HeaderMatch => "routes: [{ name: r, match: [{ headers: { x-beta: { exact: \"on\" } } }], destination: { version: v2 } }]",
        Feature::CookieMatch => "routes: [{ name: r, match: [{ cookies: { beta: { exact: \"on\" } } }], destination: { version: v2 } }]",
        Feature::PathMatch => "routes: [{ name: r, match: [{ path: { prefix: /beta/ } }], destination: { version: v2 } }]",
        Feature::MethodMatch => "routes: [{ name: r, match: [{ method: POST }], destination: { version: v2 } }]",
        Feature::QueryMatch => "routes: [{ name: r, match: [{ queryParams: { beta: { exact: \"1\" } } }], destination: { version: v2 } }]",
        Feature::RouteOrder => "routes: [{ name: a, match: [{ headers: { x-user: { exact: jason } } }], destination: { version: v2 } }, { name: b, match: [{ path: { prefix: /api }, method: GET }], destination: { version: v1 } }]",
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
        Feature::RateLimit => "rateLimit: { requests: 100, per: 1s }",
        Feature::StrictMtls => "mtls: strict",
        Feature::AllowList => "access: { allow: [{ from: [{ serviceAccount: callers/web }] }] }",
        Feature::AllowListL7 => "access: { allow: [{ from: [{ serviceAccount: callers/web }], methods: [GET] }] }",
        Feature::SloRules => "slos: [{ name: availability, objective: 99.9, sli: { availability: {} } }]",
    }
}

fn service(feature: Option<Feature>) -> String {
    let ports = match feature {
        Some(Feature::TcpSplit) => "[{ name: db, port: 5432, protocol: tcp }]",
        _ => "[{ name: http, port: 80, protocol: http }]",
    };
    let extra = feature.map(fixture).unwrap_or("");
    let mtls = if feature == Some(Feature::StrictMtls) {
        ""
    } else {
        "mtls: permissive"
    };
    format!(
        "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: svc, namespace: t }}\nspec:\n  ports: {ports}\n  versions:\n    - {{ name: v1, labels: {{ app: svc, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: svc, version: v2 }} }}\n  {mtls}\n  {extra}\n"
    )
}

/// The errors `target` alone reports for a service using `feature`.
fn errors_of(target: Target, feature: Option<Feature>) -> Vec<String> {
    let mut positions = Positions::default();
    positions
        .by_service
        .insert("t/svc".into(), Position::Step(0));
    let mut ir = ir_of(&[("svc.yaml", &service(feature))], &positions);
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
    let text = service(Some(Feature::AllowList));
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
