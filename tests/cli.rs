//! The `meshplan` binary as users run it: exit codes, formats, help.

use std::path::Path;

mod common;

use common::meshplan;

fn fixture(name: &str) -> String {
    Path::new("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn check_passes_on_the_examples_repo() {
    let out = meshplan(&["check", "examples-repo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("check passed"), "{stdout}");
    assert!(stdout.contains("0 errors, "), "{stdout}");
    // Its only warnings: what the migration-preview targets (linkerd,
    // gateway-api) cannot express, tolerated by `unsupported: warning`.
    let warnings = stdout.matches("warning[").count();
    assert!(warnings > 0, "{stdout}");
    assert_eq!(
        stdout.matches("warning[MP4002]").count(),
        warnings,
        "{stdout}"
    );
}

#[test]
fn check_reports_what_a_target_cannot_express_at_the_field_that_asks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meshplan.yaml"),
        "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [linkerd]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("web.yaml"),
        "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: { name: web }\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n  faults:\n    abort: { percentage: 1, httpStatus: 503 }\n",
    )
    .unwrap();
    let repo = dir.path().to_str().unwrap();
    let out = meshplan(&["check", repo]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "error[MP4002]: linkerd: service `default/web`: Linkerd cannot express fault injection"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("web.yaml:6:3"), "{stdout}");
    // Tolerated: the same finding, as a warning, and check passes.
    let config = dir.path().join("meshplan.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("unsupported: warning\n");
    std::fs::write(&config, text).unwrap();
    let out = meshplan(&["check", repo, "--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("\"MP4002\""), "{stdout}");
    assert!(stdout.contains("\"warning\""), "{stdout}");
}

#[test]
fn check_exits_1_on_errors() {
    let out = meshplan(&["check", &fixture("weight-over-100")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error[MP2004]"));
}

#[test]
fn warnings_pass_unless_strict() {
    let case = fixture("first-step-regraded-to-warning");
    assert_eq!(meshplan(&["check", &case]).status.code(), Some(0));
    assert_eq!(
        meshplan(&["check", "--strict", &case]).status.code(),
        Some(1)
    );
}

#[test]
fn check_exits_2_on_a_missing_repository() {
    let out = meshplan(&["check", "does/not/exist"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot check does/not/exist"));
}

#[test]
fn check_exits_2_on_a_usage_error() {
    assert_eq!(
        meshplan(&["check", "--format", "xml"]).status.code(),
        Some(2)
    );
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0() {
    let out = meshplan(&[
        "check",
        "--format",
        "sarif",
        &fixture("cel-unknown-variable-in-block"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "meshplan");
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "MP3002");
    assert_eq!(result["level"], "error");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], 10);
    assert_eq!(region["startColumn"], 11);
    // The rule table describes the result's rule.
    let idx = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
    assert_eq!(run["tool"]["driver"]["rules"][idx]["id"], "MP3002");
}

#[test]
fn json_output_lists_diagnostics_and_a_summary() {
    let out = meshplan(&[
        "check",
        "--format",
        "json",
        &fixture("duplicate-service-names"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["summary"]["errors"], 1);
    assert_eq!(v["diagnostics"][0]["code"], "MP2001");
    assert_eq!(v["diagnostics"][0]["file"], "b.yaml");
}

#[test]
fn schema_is_json_schema_for_every_kind() {
    let out = meshplan(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    for kind in ["ServiceIntent", "Policy", "MeshplanConfig"] {
        assert!(v["$defs"][kind].is_object(), "{kind}");
    }
    let one = meshplan(&["schema", "--kind", "policy"]);
    let v: serde_json::Value = serde_json::from_slice(&one.stdout).expect("JSON");
    assert!(v["$defs"]["ServiceIntent"].is_null());
}

#[test]
fn rules_lists_the_builtin_pack_and_a_repositorys_policies() {
    let out = meshplan(&["rules"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("MPR001") && text.contains("canary-weights-increase"),
        "{text}"
    );
    let out = meshplan(&["rules", "examples-repo", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let codes: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"payments/strict-mtls"), "{codes:?}");
    // Re-graded in examples-repo/meshplan.yaml.
    let r = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "MPR008")
        .unwrap();
    assert_eq!(r["severity"], "error");
}

#[test]
fn check_output_is_identical_across_runs() {
    let a = meshplan(&[
        "check",
        "--format",
        "json",
        &fixture("unknown-fields-all-reported"),
    ]);
    let b = meshplan(&[
        "check",
        "--format",
        "json",
        &fixture("unknown-fields-all-reported"),
    ]);
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn help_explains_exit_codes() {
    let out = meshplan(&["check", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Exit status"), "{text}");
}

#[test]
fn check_with_schemas_validates_the_compiled_output_offline() {
    let crds = std::env::var("MESHPLAN_CRDS").unwrap_or_else(|_| "../shared/crds".into());
    let out = meshplan(&["check", "examples-repo", "--schemas", &crds]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("schemas: 116 objects checked against"),
        "{stderr}"
    );
    assert!(stderr.contains("no schema for v1 Service"), "{stderr}");
}

#[test]
fn a_schema_violation_is_an_mp4001_error_at_the_intent() {
    let dir = tempfile::tempdir().unwrap();
    // A VirtualService schema stricter than Istio's: at most one route.
    std::fs::write(
        dir.path().join("strict.yaml"),
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: virtualservices.networking.istio.io }
spec:
  group: networking.istio.io
  names: { kind: VirtualService, plural: virtualservices }
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
              properties:
                http: { type: array, maxItems: 1, items: { type: object, x-kubernetes-preserve-unknown-fields: true } }
"#,
    )
    .unwrap();
    let out = meshplan(&[
        "check",
        "examples-repo",
        "--schemas",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("error[MP4001]: VirtualService bookinfo/reviews (from the istio emitter) breaks its schema at `spec.http`: 3 items, more than the maximum 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--> bookinfo/reviews.yaml:"),
        "located at the intent: {stdout}"
    );
}
