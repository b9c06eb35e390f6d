//! Benchmarks of the compile stage (results in docs/benchmarks.md):
//! lower + emit + YAML for generated repositories of 1,000 and 10,000
//! services (each: 3 versions, a canary, 5 allow-list peers, 2 SLOs,
//! resilience), per mesh. Check is measured by policy-lang's bench.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use meshplan_compiler::{emit_all, lower::lower, object, Positions};
use meshplan_policy_lang::generate;
use meshplan_policy_lang::intent::Target;
use meshplan_policy_lang::parse::parse;

// The same allocator as the `meshplan` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    g.sample_size(10);
    for n in [1000usize, 10_000] {
        let (repo, diags) = parse(&generate::repository(n));
        assert!(diags.is_empty());
        for (mesh, target) in [
            ("istio", Target::Istio),
            ("gateway-api", Target::GatewayApi),
            ("linkerd", Target::Linkerd),
        ] {
            let ir = lower(&repo, &Positions::default()).unwrap();
            let (objects, _) = emit_all(ir, &[target]).unwrap();
            g.throughput(Throughput::Elements(objects.len() as u64));
            g.bench_with_input(BenchmarkId::new(mesh, n), &repo, |b, repo| {
                b.iter(|| {
                    let ir = lower(black_box(repo), &Positions::default()).unwrap();
                    let (objects, _) = emit_all(ir, &[target]).unwrap();
                    black_box(object::to_yaml_stream(&objects))
                })
            });
            g.bench_with_input(
                BenchmarkId::new(format!("{mesh}-no-yaml"), n),
                &repo,
                |b, repo| {
                    b.iter(|| {
                        let ir = lower(black_box(repo), &Positions::default()).unwrap();
                        black_box(emit_all(ir, &[target]).unwrap())
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
