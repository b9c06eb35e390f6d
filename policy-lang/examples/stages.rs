//! Times each stage of load + check on a generated repository, to see where
//! the time goes: `cargo run --release -p meshplan-policy-lang --example
//! stages -- [N] [ROUNDS]`.

use std::time::{Duration, Instant};

use meshplan_policy_lang::cel::Engine;
use meshplan_policy_lang::check::{rules, semantic, validate, Views};
use meshplan_policy_lang::generate;
use meshplan_policy_lang::parse;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let n = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let sources = generate::repository(n);
    let mut t: Vec<(&str, Duration)> = Vec::new();
    let mut add = |name: &'static str, d: Duration| match t.iter_mut().find(|(n, _)| *n == name) {
        Some((_, total)) => *total += d,
        None => t.push((name, d)),
    };
    for _ in 0..rounds {
        let s = Instant::now();
        for (_, text) in &sources.files {
            drop(meshplan_policy_lang::yaml::parse(text));
        }
        add("(yaml tree only)", s.elapsed());
        let s = Instant::now();
        let (repo, mut diags) = parse::parse(&sources);
        add("parse", s.elapsed());
        let s = Instant::now();
        diags.extend(validate::validate(&repo));
        add("validate", s.elapsed());
        let s = Instant::now();
        diags.extend(semantic::analyze(&repo));
        add("semantic", s.elapsed());
        let s = Instant::now();
        let engine = Engine::new();
        let set = rules::compile(&engine, &repo, &mut diags);
        rules::check_metric_conditions(&engine, &repo, &mut diags);
        add("compile rules", s.elapsed());
        let s = Instant::now();
        let views = Views::for_rules(&repo, &set);
        add("views", s.elapsed());
        let s = Instant::now();
        diags.extend(set.eval_intents(&engine, &repo, &views));
        add("eval intents", s.elapsed());
        let s = Instant::now();
        diags.extend(set.eval_repository(&engine, &views));
        add("eval repository", s.elapsed());
        assert!(diags.is_empty(), "{diags:?}");
        let s = Instant::now();
        drop((views, set, repo));
        add("drop", s.elapsed());
    }
    let total: Duration = t.iter().map(|(_, d)| *d).sum();
    for (name, d) in &t {
        println!(
            "{name:16} {:8.2} ms",
            d.as_secs_f64() * 1000.0 / rounds as f64
        );
    }
    println!(
        "{:16} {:8.2} ms",
        "total",
        total.as_secs_f64() * 1000.0 / rounds as f64
    );
}
