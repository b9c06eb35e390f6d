//! The runtime budget stops what the static bound would have let run, and
//! the engine's macros mean what the standard ones mean.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Budget, Stopped, MAX_ITERATIONS};
use crate::cel::{Bindings, Engine, EvalError};

fn compiled(engine: &Engine, src: &str) -> crate::cel::Compiled {
    engine
        .compile(src, &[])
        .unwrap_or_else(|e| panic!("{src}: {e:?}"))
}

/// Without the static bound, only the runtime budget stands between
/// these and hours of work: each is stopped, within seconds.
#[test]
fn the_interpreter_is_stopped_when_the_bound_is_not_asked() {
    let engine = Engine::new();
    for src in [
        "lists.range(1000000).all(a, lists.range(1000000).all(b, a <= b || true))",
        "lists.range(1000000).map(a, lists.range(1000000).filter(b, b == a)).size() > 0",
        "lists.range(1000).exists(a, lists.range(1000).exists(b, \
         lists.range(1000).exists(c, a + b + c < 0)))",
    ] {
        let c = compiled(&engine, src);
        let started = Instant::now();
        let out = engine.interpret(&c, &Bindings::new());
        assert!(matches!(out, Err(EvalError::Stopped(_))), "{src}: {out:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{src}");
    }
}

/// The fast path charges the same budget: a spent one leaves the
/// evaluation to the interpreter, which reports it.
#[test]
fn the_fast_path_charges_the_budget_too() {
    let engine = Engine::new();
    let c = compiled(
        &engine,
        "lists.range(10).all(a, lists.range(10).all(b, a < 100))",
    );
    assert!(c.fast.is_some(), "the fast path takes this expression");
    let (out, stopped) = Budget::run_within(50, Duration::from_secs(60), || {
        c.fast.as_ref().and_then(|p| p.eval(&Bindings::new()))
    });
    assert_eq!((out, stopped), (None, Some(Stopped::Iterations)));
    let (out, stopped) = Budget::run_within(110, Duration::from_secs(60), || {
        c.fast.as_ref().and_then(|p| p.eval(&Bindings::new()))
    });
    assert_eq!((out, stopped), (Some(cel::Value::Bool(true)), None));
}

#[test]
fn a_loop_after_the_time_is_up_does_not_start() {
    let engine = Engine::new();
    let c = compiled(&engine, "[1, 2].map(x, x * 2) == [2, 4]");
    let (out, stopped) = Budget::run_within(MAX_ITERATIONS, Duration::ZERO, || {
        engine.execute(&c, &Bindings::new())
    });
    assert!(out.is_err());
    assert_eq!(stopped, Some(Stopped::Time));
}

/// `error || true` is `true` in CEL: a budget error absorbed that way
/// still stops the evaluation.
#[test]
fn an_absorbed_budget_error_still_stops_the_evaluation() {
    let engine = Engine::new();
    let c = compiled(
        &engine,
        "lists.range(3).exists(a, \
         lists.range(1000000).all(b, lists.range(1000000).all(c, true)) || true)",
    );
    let out = engine.interpret(&c, &Bindings::new());
    assert!(matches!(out, Err(EvalError::Stopped(_))), "{out:?}");
    let message = out.unwrap_err().to_string();
    assert!(
        message.starts_with("over the evaluation budget"),
        "{message}"
    );
}

#[test]
fn outside_an_evaluation_nothing_is_charged_and_budgets_nest() {
    assert!(super::charge(u64::MAX));
    let ((), outer) = Budget::run_within(10, Duration::from_secs(60), || {
        let (inner_ok, inner) = Budget::run_within(5, Duration::from_secs(60), || super::charge(6));
        assert!(!inner_ok);
        assert_eq!(inner, Some(Stopped::Iterations));
        // The outer budget is untouched by the inner one.
        assert!(super::charge(10));
        assert!(!super::charge(1));
    });
    assert_eq!(outer, Some(Stopped::Iterations));
}

/// The engine expands the macros itself: on every shape, with errors and
/// empty ranges, its answers are those of the `cel` crate's standard
/// expansion.
#[test]
fn the_engines_macros_mean_what_the_standard_ones_mean() {
    let engine = Engine::new();
    let mut env = cel::Env::stdlib();
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    let env = Arc::new(env);
    let ctx = cel::Context::with_env(Arc::clone(&env));
    for src in [
        "[1, 2, 3].all(x, x > 0)",
        "[1, 2, 3].all(x, x > 1)",
        "[].all(x, x > 1)",
        "[1, 0].all(x, 1 / x > 0)",
        "[0, 1].all(x, 1 / x > 5)",
        "[1, 2, 3].exists(x, x == 2)",
        "[].exists(x, true)",
        "[0, 1].exists(x, 1 / x == 1)",
        "[0].exists(x, 1 / x == 1)",
        "[1, 2, 2].exists_one(x, x == 2)",
        "[1, 2, 3].exists_one(x, x == 2)",
        "[1, 2, 3].existsOne(x, x == 3)",
        "[1, 2, 3].map(x, x * 2)",
        "[1, 2, 3].map(x, x > 1, x * 2)",
        "[1, 2, 3].filter(x, x % 2 == 1)",
        "{'a': 1, 'b': 2}.all(k, k.size() == 1)",
        "{'a': 1, 'b': 2}.map(k, k + k).size()",
        "[[1], [2, 3]].map(l, l.map(x, x + 1))",
        "has({'a': 1}.a)",
        "has({'a': 1}.b)",
        "[1, 2].all(x, [3, 4].exists(y, x < y))",
        "[1, 2].map(x, x).sortBy(x, -x)",
        "'abc'.all(c, true)",
        "[1, 2].map(x, y)",
    ] {
        let ours = engine
            .compile(src, &[])
            .map_err(|_| ())
            .and_then(|c| engine.eval(&c, &Bindings::new()).map_err(|_| ()));
        let theirs = env
            .compile(src)
            .map_err(|_| ())
            .and_then(|p| p.execute(&ctx).map_err(|_| ()));
        assert_eq!(ours, theirs, "{src}");
    }
}

#[test]
fn macro_arguments_are_checked_as_the_standard_ones_are() {
    let engine = Engine::new();
    for src in ["[1].all(1, true)", "has(a)", "[1].map(x.y, x)"] {
        assert!(engine.compile(src, &[]).is_err(), "{src}");
    }
}
