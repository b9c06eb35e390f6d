//! The bound refuses what would exhaust the machine, and lets through
//! what rules are written for.

use serde_json::json;

use crate::cel::eval::COST_BUDGET;
use crate::cel::{Bindings, Bound, Engine, EvalError};

/// The estimate of `src` with `intent` bound to `data`.
fn estimate(src: &str, data: serde_json::Value) -> u64 {
    let engine = Engine::new();
    let compiled = engine.compile(src, &["intent"]).expect("compiles");
    let bound = Bound::new(&data).unwrap();
    let b = Bindings::new().with("intent", &bound);
    super::estimate(compiled.program.expression(), &b)
}

fn refused(src: &str, data: serde_json::Value) {
    let engine = Engine::new();
    let compiled = engine.compile(src, &["intent"]).expect("compiles");
    let bound = Bound::new(&data).unwrap();
    let b = Bindings::new().with("intent", &bound);
    match engine.eval(&compiled, &b) {
        Err(EvalError::Budget { estimated }) => assert!(estimated > COST_BUDGET),
        other => panic!("`{src}` ran: {other:?}"),
    }
}

fn intent() -> serde_json::Value {
    let routes: Vec<_> = (0..50)
        .map(|i| json!({"name": format!("route-{i}"), "prefix": format!("/p{i}"), "weight": i}))
        .collect();
    json!({
        "metadata": {"name": "checkout", "description": "d".repeat(20_000)},
        "spec": {"routes": routes, "labels": {"app": "checkout"}}
    })
}

#[test]
fn strings_that_grow_by_replacement_are_refused() {
    let chained = format!(
        "intent.metadata.name{} != ''",
        ".replace('c', 'cccccccccc')".repeat(11)
    );
    refused(&chained, intent());
    // Concatenation alone, no comprehension: still bounded.
    let concat = vec!["intent.metadata.description"; 90].join(" + ");
    refused(&format!("size({concat}) > 0"), intent());
    // An empty pattern inserts between every two characters.
    refused(
        "intent.metadata.description.replace('', intent.metadata.description) != ''",
        intent(),
    );
}

#[test]
fn lists_the_expression_builds_count_their_length() {
    refused(
        "lists.range(1000000).all(a, lists.range(1000000).all(b, a + b >= 0))",
        intent(),
    );
    refused(
        "lists.range(1000000).map(l, string(l) + string(l) + string(l)).size() > 0",
        intent(),
    );
    refused(
        "intent.spec.routes.map(r, intent.metadata.description + r.name).all(s, s != '')",
        json!({
            "metadata": {"description": "d".repeat(200_000)},
            "spec": {"routes": (0..100).collect::<Vec<_>>()}
        }),
    );
    // Splitting a long string makes as many items as it has characters.
    refused(
        "intent.metadata.description.split('').all(a, \
         intent.metadata.description.split('').exists(b, a == b))",
        intent(),
    );
}

#[test]
fn rules_as_written_run() {
    let each_route_named_once = "intent.spec.routes.all(r, \
        intent.spec.routes.exists_one(q, q.name == r.name))";
    let small = estimate(each_route_named_once, intent());
    assert!(small < COST_BUDGET / 10, "{small}");
    // A long string elsewhere in the intent does not weigh on the routes.
    let cheap = estimate("intent.spec.routes.all(r, r.weight <= 100)", intent());
    assert!(cheap < 2_000, "{cheap}");
    let labels = estimate(
        "intent.spec.labels.all(k, k.matches('^[a-z]+$') && intent.spec.labels[k].size() < 64)",
        intent(),
    );
    assert!(labels < 500, "{labels}");
    let sorted = estimate(
        "intent.spec.routes.sortBy(r, r.weight).map(r, r.name).join(',') != ''",
        intent(),
    );
    assert!(sorted < COST_BUDGET / 10, "{sorted}");
}

/// The estimate is an upper bound: it grows with what the rule reads.
#[test]
fn the_estimate_follows_the_input() {
    let src = "intent.spec.routes.all(r, intent.spec.routes.exists(q, q.prefix == r.prefix))";
    let at = |n: usize| {
        let routes: Vec<_> = (0..n).map(|i| json!({"prefix": format!("/{i}")})).collect();
        estimate(src, json!({"spec": {"routes": routes}}))
    };
    assert!(at(10) < at(20));
    assert!(at(20) * 3 < at(40), "{} {}", at(20), at(40));
    refused(
        src,
        json!({"spec": {"routes": (0..5_000).map(|i| json!({"prefix": i})).collect::<Vec<_>>()}}),
    );
}
