//! Check a repository and, when it passes, compile it for every target and
//! write the objects as YAML and JSON: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshplan_compiler::check_sources;
use meshplan_compiler::{compile, object, Options};
use meshplan_policy_lang::intent::Target;

fuzz_target!(|data: &[u8]| {
    let (repo, report) = check_sources(&meshplan_fuzz::sources(data));
    if !report.passes(false) {
        return;
    }
    let opts = Options {
        targets: Some(Target::ALL.to_vec()),
        ..Options::default()
    };
    if let Ok(compiled) = compile(&repo, &report, &opts) {
        let _ = object::to_yaml_stream(&compiled.objects);
        let _ = object::to_json_list(&compiled.objects);
    }
});
