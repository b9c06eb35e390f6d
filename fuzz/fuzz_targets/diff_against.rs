//! `diff --against` a rendered tree: the input is read as the YAML of the
//! base's objects, planned against a fixed repository's and rendered in
//! every format: never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meshplan_compiler::check_sources;
use meshplan_compiler::{compile, Compiled, Options};
use meshplan_policy_lang::intent::Target;
use meshplan_reconciler::diff::{plan_against, render, Format};

/// A small repository, compiled once.
fn desired() -> &'static Compiled {
    static DESIRED: OnceLock<Compiled> = OnceLock::new();
    DESIRED.get_or_init(|| {
        let seed = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\n\
                    defaultNamespace: shop\n\0web.yaml\0apiVersion: meshplan.dev/v1alpha1\n\
                    kind: ServiceIntent\nmetadata: { name: web }\nspec:\n  \
                    ports: [{ name: http, port: 80, protocol: http }]\n  \
                    versions: [{ name: v1, labels: { app: web, version: v1 } }]\n";
        let (repo, report) = check_sources(&meshplan_fuzz::sources(seed.as_bytes()));
        let opts = Options {
            targets: Some(Target::ALL.to_vec()),
            ..Options::default()
        };
        compile(&repo, &report, &opts).expect("the seed repository compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(old) = serde_saphyr::from_multiple::<serde_json::Value>(&text) else {
        return;
    };
    let d = desired();
    let plan = plan_against(&d.objects, &d.summary, &old, None);
    for format in [Format::Text, Format::Markdown, Format::Json] {
        let _ = render(&plan, format);
    }
});
