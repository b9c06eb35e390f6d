//! Property tests over load + check: no input makes it panic, and output
//! is deterministic. This is the stable-toolchain stand-in for a cargo-fuzz
//! target (cargo-fuzz needs nightly): it mutates real intents and generates
//! arbitrary YAML-ish text. Bounded by PROPTEST_CASES (default below).

use meshplan_policy_lang::check::check_sources;
use meshplan_policy_lang::diagnostic::human;
use meshplan_policy_lang::parse::Sources;
use proptest::prelude::*;

const SEED: &str = include_str!("../../examples-repo/bookinfo/reviews.yaml");
const POLICY: &str = include_str!("../../examples-repo/policies/payments.yaml");

fn run(files: Vec<(String, String)>) -> String {
    let (_, report) = check_sources(&Sources { files });
    human::render_all(&report.diagnostics)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
        let _ = run(vec![("a.yaml".into(), text)]);
    }

    #[test]
    fn yaml_shaped_text_never_panics(text in "([a-zA-Z:\\-\\[\\]{}'\"|>&*!#,. \n0-9]|  ){0,300}") {
        let _ = run(vec![("a.yaml".into(), format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\n{text}"))]);
    }

    #[test]
    fn mutated_intents_never_panic_and_render_deterministically(
        cut in 0usize..SEED.len(),
        len in 0usize..40,
        insert in "[ -~\n]{0,12}",
    ) {
        let mut s = SEED.to_string();
        let cut = (0..=cut).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let end = (cut + len).min(s.len());
        let end = (end..=s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
        s.replace_range(cut..end, &insert);
        let files = vec![("reviews.yaml".to_string(), s), ("policies/p.yaml".to_string(), POLICY.to_string())];
        let a = run(files.clone());
        let b = run(files);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn mutated_policies_never_panic(cut in 0usize..POLICY.len(), insert in "[ -~]{0,8}") {
        let mut p = POLICY.to_string();
        let cut = (0..=cut).rev().find(|i| p.is_char_boundary(*i)).unwrap_or(0);
        p.insert_str(cut, &insert);
        let _ = run(vec![("svc.yaml".into(), SEED.into()), ("policies/p.yaml".into(), p)]);
    }
}
