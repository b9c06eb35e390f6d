//! Compile a CEL expression (the first part of the input) and evaluate it
//! on a value (the second, read as YAML): within the size and cost bounds,
//! never a panic, a hang or a stack overflow.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meshplan_policy_lang::cel::{Bindings, Bound, Engine};

fuzz_target!(|data: &[u8]| {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    let engine = ENGINE.get_or_init(Engine::new);
    let text = String::from_utf8_lossy(data);
    let (expr, value) = text.split_once('\0').unwrap_or((&text, ""));
    let Ok(compiled) = engine.compile(expr, &["intent"]) else {
        return;
    };
    let value: serde_json::Value = serde_saphyr::from_str(value).unwrap_or_default();
    let Ok(bound) = Bound::new(&value) else {
        return;
    };
    let _ = engine.eval(&compiled, &Bindings::new().with("intent", &bound));
});
