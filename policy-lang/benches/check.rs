//! Benchmarks of the check stage (results in docs/benchmarks.md).
//!
//! - `load_check/1000`: parse + validate + every rule on a generated
//!   1,000-service repository (target: under 100 ms on one core). The
//!   result (repository and report) is freed outside the measurement, as
//!   the CLI never frees it (it exits); `load_check_and_free/1000` includes
//!   freeing it.
//! - `rule_eval`: one built-in rule on one intent, compiled once and bound
//!   once (target: under 2 µs median).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use meshplan_policy_lang::cel::{Bindings, Bound, Engine};
use meshplan_policy_lang::check::{check_sources, Views};
use meshplan_policy_lang::generate;
use meshplan_policy_lang::parse;

// The allocator of the `meshplan` binary, so the numbers are the CLI's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn load_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("load_check");
    g.sample_size(20);
    let sources = generate::repository(1000);
    g.bench_function("1000", |b| {
        b.iter_with_large_drop(|| {
            let (repo, report) = check_sources(black_box(&sources));
            assert!(report.diagnostics.is_empty());
            (repo, report)
        })
    });
    g.finish();
    let mut g = c.benchmark_group("load_check_and_free");
    g.sample_size(20);
    g.bench_function("1000", |b| {
        b.iter(|| {
            let (_, report) = check_sources(black_box(&sources));
            assert!(report.diagnostics.is_empty());
        })
    });
    g.finish();
}

fn rule_eval(c: &mut Criterion) {
    let sources = generate::repository(1);
    let (repo, _) = parse::parse(&sources);
    let views = Views::new(&repo);
    let engine = Engine::new();
    let intent: &Bound = &views.intents[0];
    let mut g = c.benchmark_group("rule_eval");
    for (name, src) in [
        ("first-step-at-most-50", "intent.spec.rollout.steps.filter(s, has(s.weight))[0].weight <= 50"),
        ("slo-objective-in-range", "intent.spec.slos.all(s, s.objective > 0.0 && s.objective < 100.0)"),
        ("retries-fit-timeout", "intent.spec.resilience.retries.attempts * intent.spec.resilience.retries.perTryTimeout.getMilliseconds() <= intent.spec.resilience.timeout.getMilliseconds()"),
    ] {
        let compiled = engine.compile(src, &["intent", "config"]).expect("compiles");
        g.bench_function(name, |b| {
            b.iter(|| {
                let bindings = Bindings::new().with("intent", intent).with("config", &views.config);
                let v = engine.eval(&compiled, black_box(&bindings)).expect("evaluates");
                black_box(v)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, load_check, rule_eval);
criterion_main!(benches);
