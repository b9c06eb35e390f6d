//! The built-in rule pack: CEL rules shipped in the binary
//! (`policy-lang/rules/builtin.yaml`), each with a stable `MPR…` code.

use crate::intent::Policy;
use crate::parse::{self, Loaded, Sources};

pub const SOURCE_NAME: &str = "<builtin>/rules.yaml";
const SOURCE: &str = include_str!("../../rules/builtin.yaml");

/// Rule name → code. Codes are stable: never reuse one.
pub const CODES: &[(&str, &str)] = &[
    ("canary-weights-increase", "MPR001"),
    ("canary-ends-at-100", "MPR002"),
    ("first-step-at-most-50", "MPR003"),
    ("slo-objective-in-range", "MPR004"),
    ("retries-fit-timeout", "MPR005"),
    ("no-wildcard-callers-under-default-deny", "MPR006"),
    ("rollout-has-analysis-or-gate", "MPR007"),
    ("retries-have-per-try-timeout", "MPR008"),
];

pub fn code_of(name: &str) -> Option<&'static str> {
    CODES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// The pack, parsed. It is part of the binary, so failing to parse it is a
/// bug caught by the unit tests; an empty pack is returned then.
pub fn policy() -> Option<Loaded<Policy>> {
    let sources = Sources {
        files: vec![(SOURCE_NAME.to_string(), SOURCE.to_string())],
    };
    let (repo, diags) = parse::parse(&sources);
    debug_assert!(diags.is_empty(), "built-in rules: {diags:?}");
    repo.policies.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_rule_has_a_unique_code() {
        let p = policy().expect("the pack parses");
        assert_eq!(p.value.spec.rules.len(), CODES.len());
        for r in &p.value.spec.rules {
            assert!(code_of(&r.name).is_some(), "no code for {}", r.name);
        }
        let mut codes: Vec<_> = CODES.iter().map(|(_, c)| c).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), CODES.len());
    }
}
