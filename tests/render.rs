//! `meshplan render` as users run it.

use std::path::Path;

mod common;

use common::meshplan;

#[test]
fn renders_the_examples_repo_for_istio_as_a_yaml_stream() {
    let out = meshplan(&["render", "examples-repo", "--mesh", "istio"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "VirtualService",
        "DestinationRule",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "EnvoyFilter",
    ] {
        assert!(stdout.contains(&format!("kind: {kind}\n")), "no {kind}");
    }
    let docs = stdout.split("\n---\n").count();
    assert_eq!(
        docs,
        stdout.matches("\nkind: ").count() + usize::from(stdout.starts_with("kind: "))
    );
}

#[test]
fn refuses_to_render_a_repository_that_fails_check() {
    let out = meshplan(&[
        "render",
        "tests/fixtures/weight-over-100",
        "--mesh",
        "istio",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing may be emitted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[MP2004]"), "{stderr}");
    assert!(stderr.contains("render refused"), "{stderr}");
}

#[test]
fn refuses_a_target_that_cannot_express_the_intents_and_says_where() {
    // examples-repo tolerates what its own targets cannot express; asked
    // for consul on the command line with `--unsupported error`, render
    // refuses and points at each setting.
    let out = meshplan(&[
        "render",
        "examples-repo",
        "--mesh",
        "consul",
        "--unsupported",
        "error",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing may be emitted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[MP4002]: consul: service `bookinfo/details`: Consul cannot express fault injection"), "{stderr}");
    assert!(stderr.contains("--> bookinfo/details.yaml:"), "{stderr}");
    assert!(stderr.contains("render refused:"), "{stderr}");
}

#[test]
fn json_output_is_a_kubernetes_list() {
    let out = meshplan(&[
        "render",
        "examples-repo",
        "--mesh",
        "istio",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "List");
    assert!(v["items"].as_array().unwrap().len() > 10);
}

fn tree(dir: &Path, base: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            tree(&p, base, out);
        } else {
            out.push(
                p.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/"),
            );
        }
    }
}

#[test]
fn out_writes_one_file_per_object_in_a_kubectl_friendly_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rendered");
    let out = meshplan(&[
        "render",
        "examples-repo",
        "--mesh",
        "istio",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let mut files = Vec::new();
    tree(&dir, &dir, &mut files);
    insta::assert_snapshot!(files.join("\n"));
    // Each file is exactly the object the stream holds.
    let stream = meshplan(&["render", "examples-repo", "--mesh", "istio"]);
    let stream = String::from_utf8_lossy(&stream.stdout).into_owned();
    let joined: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    for doc in &joined {
        assert!(stream.contains(doc.as_str()));
    }
    assert_eq!(joined.len(), stream.split("\n---\n").count());
}

#[test]
fn resource_rules_govern_the_rendered_objects() {
    let out = meshplan(&["render", "tests/render-fixtures/resource-rule-violated"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing may be emitted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("output/strict-peer-authentication"),
        "{stderr}"
    );
    assert!(
        stderr.contains("PeerAuthentication web is PERMISSIVE"),
        "{stderr}"
    );
    assert!(stderr.contains("web.yaml:1:1"), "{stderr}");
    assert!(stderr.contains("resource rules failed"), "{stderr}");
}
