//! Load and check a repository, and render its diagnostics in every
//! format: never a panic, whatever the files hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshplan_compiler::check_sources;
use meshplan_policy_lang::diagnostic::{human, json, sarif};

fuzz_target!(|data: &[u8]| {
    let (_, report) = check_sources(&meshplan_fuzz::sources(data));
    let _ = human::render_all(&report.diagnostics);
    let _ = json::render(&report.diagnostics);
    let _ = sarif::render(&report.diagnostics, &[]);
});
