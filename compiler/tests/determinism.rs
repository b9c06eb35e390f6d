//! Same input ⇒ byte-identical output, whatever order the files arrive in.

use meshplan_compiler::{compile, object, Compiled, Options};
use meshplan_policy_lang::cel::Engine;
use meshplan_policy_lang::check::check;
use meshplan_policy_lang::intent::Target;
use meshplan_policy_lang::parse::{parse, read_dir};

fn render_with_order(rotate: usize, reverse: bool) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo");
    let (mut sources, diags) = read_dir(&root).unwrap();
    assert!(diags.is_empty());
    if reverse {
        sources.files.reverse();
    }
    let n = sources.files.len();
    sources.files.rotate_left(rotate % n);
    let (repo, parse_diags) = parse(&sources);
    let report = check(&repo, &Engine::new(), parse_diags);
    assert!(report.passes(false), "{:?}", report.diagnostics);
    let opts = Options {
        targets: Some(vec![Target::Istio, Target::GatewayApi, Target::Linkerd]),
        ..Options::default()
    };
    let compiled = compile(&repo, &report, &opts).unwrap();
    object::to_yaml_stream(&compiled.objects)
}

#[test]
fn rendering_ignores_file_order() {
    let first = render_with_order(0, false);
    assert!(first.contains("kind: VirtualService"));
    for (rotate, reverse) in [(1, false), (3, true), (5, false), (7, true)] {
        assert_eq!(
            first,
            render_with_order(rotate, reverse),
            "rotate {rotate}, reverse {reverse}"
        );
    }
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    assert_eq!(render_with_order(0, false), render_with_order(0, false));
}

/// examples-repo, checked and compiled with `opts`.
fn compile_examples(opts: &Options) -> Compiled {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo");
    let (sources, _) = read_dir(&root).unwrap();
    let (repo, parse_diags) = parse(&sources);
    let report = check(&repo, &Engine::new(), parse_diags);
    compile(&repo, &report, opts).unwrap()
}

#[test]
fn skipping_the_summary_changes_nothing_else() {
    let compile_with = |skip_summary| {
        compile_examples(&Options {
            targets: Some(vec![Target::Istio]),
            skip_summary,
            ..Options::default()
        })
    };
    let (full, lean) = (compile_with(false), compile_with(true));
    assert!(!full.summary.services.is_empty());
    assert!(lean.summary.services.is_empty());
    assert_eq!(
        object::to_yaml_stream(&full.objects),
        object::to_yaml_stream(&lean.objects)
    );
    assert_eq!(full.unsupported, lean.unsupported);
}

#[test]
fn packing_bodies_changes_how_they_are_held_not_what_they_say() {
    // Linkerd and Gateway API both emit the backend Services: merged
    // objects are among them.
    fn pack(objects: &mut [object::MeshObject]) {
        objects.iter_mut().for_each(|o| o.body.pack());
    }
    let compile_with = |on_emitted| {
        compile_examples(&Options {
            targets: Some(vec![Target::Istio, Target::GatewayApi, Target::Linkerd]),
            on_emitted,
            ..Options::default()
        })
    };
    let (text, packed) = (compile_with(None), compile_with(Some(pack)));
    assert_eq!(
        object::to_yaml_stream(&text.objects),
        object::to_yaml_stream(&packed.objects)
    );
    assert_eq!(text.objects, packed.objects);
    let held = |objects: &[object::MeshObject]| -> usize {
        objects.iter().map(|o| o.body.held_len()).sum()
    };
    assert!(
        held(&packed.objects) * 2 < held(&text.objects),
        "packed {} bytes, text {}",
        held(&packed.objects),
        held(&text.objects)
    );
    assert_eq!(text.summary, packed.summary);
}

/// `compile` lowers and emits a namespace at a time when every target is
/// namespace-local; the whole IR at once must give the same objects,
/// unsupported features and summary, for every case and local target.
#[test]
fn emitting_a_namespace_at_a_time_gives_what_the_whole_ir_gives() {
    use meshplan_compiler::check_dir;
    use meshplan_compiler::emit::emitter;
    use meshplan_compiler::{emit_all, lower::lower, Summary};
    use meshplan_policy_lang::intent::config::UnsupportedSetting;

    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<_> = std::fs::read_dir(here.join("tests/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.push(here.join("../examples-repo"));
    let local: Vec<Target> = Target::ALL
        .into_iter()
        .filter(|t| emitter(*t).namespace_local())
        .collect();
    assert!(local.contains(&Target::Istio) && !local.contains(&Target::Consul));
    let mut namespaces_seen = 0;
    for dir in dirs {
        let (repo, report) = check_dir(&dir).unwrap();
        assert!(report.passes(false), "{}", dir.display());
        let namespaces: std::collections::BTreeSet<&str> = repo
            .services
            .iter()
            .map(|s| repo.namespace_of(&s.value))
            .collect();
        namespaces_seen = namespaces_seen.max(namespaces.len());
        let sets = local.iter().map(|t| vec![*t]).chain([local.clone()]);
        for targets in sets {
            let opts = Options {
                targets: Some(targets.clone()),
                unsupported: Some(UnsupportedSetting::Warning),
                ..Options::default()
            };
            let parts = compile(&repo, &report, &opts).unwrap();
            let ir = lower(&repo, &opts.positions).unwrap();
            let summary = Summary::of(&ir);
            let (objects, unsupported) = emit_all(ir, &targets).unwrap();
            let what = format!("{} {targets:?}", dir.display());
            assert_eq!(parts.objects, objects, "{what}");
            assert_eq!(parts.unsupported, unsupported, "{what}");
            assert_eq!(parts.summary, summary, "{what}");
        }
    }
    // The cases must exercise the split: some hold several namespaces.
    assert!(namespaces_seen >= 3, "{namespaces_seen}");
}
