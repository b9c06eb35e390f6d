//! The YAML reader (both the fast reader and libyaml): any text is a tree
//! or syntax errors, never a panic, a hang or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = meshplan_policy_lang::yaml::parse(&text);
});
