//! Notifications end to end: `meshplan run --notifications` announces a
//! revision that does not check, the fixed one applied, and its rollout's
//! transitions — to Slack, Teams, Discord and a generic sink (payloads as
//! their APIs document them) and as GitHub and GitLab commit statuses on
//! the revision's commit, with the token the credentials file binds to the
//! forge's URL, all over HTTPS (the environment's receiver). Needs the
//! test environment.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::running::Running;
use meshplan_testenv::{unique_name, with_temp_ns, TestEnv};
use serde_json::Value;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit(dir: &Path, service: &str) -> String {
    std::fs::write(dir.join("svc.yaml"), service).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "change"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Bodies received under `prefix`, as JSON.
fn got(prefix: &str) -> Vec<(Value, Value)> {
    TestEnv::get()
        .hooks
        .received(prefix)
        .into_iter()
        .map(|r| {
            let body =
                serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
            (r, body)
        })
        .collect()
}

/// Waits up to 40 s for `ok`; on a timeout, fails with meshplan's log.
async fn until(what: &str, run: &Running, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "timed out waiting for {what}; meshplan run said:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn failures_fixes_and_rollouts_are_announced_to_chats_and_forges() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let u = unique_name("note");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hooks = &env.hooks.url;
        // The forge's token, bound to its URL by the credentials file.
        let token = format!("t-{u}");
        std::fs::write(d.join("token"), format!("{token}\n")).unwrap();
        let line = format!("Bearer {token}\n");
        let mut auths = std::fs::read_to_string(&env.hooks.authorizations).unwrap_or_default();
        auths.push_str(&line);
        std::fs::write(&env.hooks.authorizations, auths).unwrap();
        let ca = env.tls.ca_file.display();
        std::fs::write(
            d.join("credentials.yaml"),
            format!("endpoints:\n  - {{ url: '{hooks}', tls: {{ caFile: '{ca}' }} }}\n  - {{ url: '{hooks}/forge-{u}', bearerTokenFile: '{}', tls: {{ caFile: '{ca}' }} }}\n", d.join("token").display()),
        )
        .unwrap();
        std::fs::write(d.join("slack-url"), format!("{hooks}/open/{u}/slack\n")).unwrap();
        std::fs::write(
            d.join("notifications.yaml"),
            format!("sinks:\n  - {{ name: chat, type: slack, urlFile: '{}' }}\n  - {{ name: t, type: teams, url: '{hooks}/open/{u}/teams', on: [reconcile] }}\n  - {{ name: d, type: discord, url: '{hooks}/open/{u}/discord', on: [rollout] }}\n  - {{ name: g, type: generic, url: '{hooks}/open/{u}/generic', template: '{{\"what\": \"{{{{subject}}}}\", \"state\": \"{{{{state}}}}\"}}' }}\n  - {{ name: gh, type: github, url: '{hooks}/forge-{u}/gh', repository: acme/intents }}\n  - {{ name: gl, type: gitlab, url: '{hooks}/forge-{u}/gl', repository: group/intents }}\n", d.join("slack-url").display()),
        )
        .unwrap();
        let repo = d.join("repo");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(
            repo.join("meshplan.yaml"),
            format!("apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\ndefaultNamespace: {ns}\n# A rollout on time alone: it ends within the test.\nrules: {{ MPR007: off }}\n"),
        )
        .unwrap();
        git(&repo, &["init", "-q"]);
        let svc = unique_name("cart");
        let intent = |protocol: &str| format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: {svc} }}\nspec:\n  ports: [{{ name: http, port: 80, protocol: {protocol} }}]\n  versions:\n    - {{ name: v1, labels: {{ app: {svc}, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: {svc}, version: v2 }} }}\n  rollout:\n    stable: v1\n    canary: v2\n    steps: [{{ weight: 10 }}, {{ weight: 100 }}]\n");
        let broken = commit(&repo, &intent("htp"));
        let inv = format!("meshplan-system/{}", unique_name("nt"));
        let run = Running::start(
            &[
                repo.to_str().unwrap(),
                "--interval",
                "5m",
                "--http-credentials",
                d.join("credentials.yaml").to_str().unwrap(),
                "--notifications",
                d.join("notifications.yaml").to_str().unwrap(),
            ],
            &inv,
        );

        // The broken revision: every sink hears of it, once.
        let gh = format!("/forge-{u}/gh/repos/acme/intents/statuses/");
        until("the failure on GitHub", &run, || !got(&format!("{gh}{broken}")).is_empty()).await;
        // Sinks are told one after another: wait for every one of them.
        let gl_path = format!("/forge-{u}/gl/api/v4/projects/group%2Fintents/statuses/{broken}");
        until("the failure in the chats and on GitLab", &run, || {
            ["slack", "teams", "generic"]
                .iter()
                .all(|sink| !got(&format!("/open/{u}/{sink}")).is_empty())
                && !got(&gl_path).is_empty()
        })
        .await;
        let (r, status) = &got(&format!("{gh}{broken}"))[0];
        assert_eq!(r["headers"]["authorization"], format!("Bearer {token}"));
        assert_eq!(r["headers"]["accept"], "application/vnd.github+json");
        assert_eq!(r["status"], 200, "the receiver took the token");
        assert_eq!(status["state"], "failure");
        assert_eq!(status["context"], "meshplan");
        assert!(status["description"].as_str().unwrap().contains("does not pass check"), "{status}");
        let gl = got(&gl_path);
        assert_eq!(gl[0].1["state"], "failed", "{:?}", gl);
        assert_eq!(gl[0].1["name"], "meshplan");
        let (_, slack) = &got(&format!("/open/{u}/slack"))[0];
        let text = slack["text"].as_str().unwrap();
        assert!(text.starts_with("meshplan reconcile repository: ") && text.contains(&broken[..12]), "{text}");
        let (_, teams) = &got(&format!("/open/{u}/teams"))[0];
        assert_eq!(teams["attachments"][0]["content"]["body"][0]["text"], text);
        let (_, generic) = &got(&format!("/open/{u}/generic"))[0];
        assert_eq!(generic, &serde_json::json!({"what": "repository", "state": "failure"}));
        assert!(got(&format!("/open/{u}/discord")).is_empty(), "discord hears rollouts only");

        // Fixed: applied, and its rollout runs to the end.
        let fixed = commit(&repo, &intent("http"));
        until("the rollout's success on GitHub", &run, || {
            got(&format!("{gh}{fixed}"))
                .iter()
                .any(|(_, s)| s["context"] == format!("meshplan/rollout {ns}/{svc}") && s["state"] == "success")
        })
        .await;
        let statuses = got(&format!("{gh}{fixed}"));
        assert!(
            statuses.iter().any(|(_, s)| s["context"] == "meshplan" && s["state"] == "success"),
            "{statuses:?}"
        );
        assert!(
            statuses.iter().any(|(_, s)| s["context"] == format!("meshplan/rollout {ns}/{svc}") && s["state"] == "pending"),
            "{statuses:?}"
        );
        until("the rollout in Discord", &run, || {
            got(&format!("/open/{u}/discord"))
                .iter()
                .any(|(_, b)| b["content"].as_str().unwrap_or("").contains("Succeeded"))
        })
        .await;
        // The failure was told once: no repeats while it lasted.
        let failures = got(&format!("/open/{u}/slack"))
            .iter()
            .filter(|(_, b)| b["text"].as_str().unwrap_or("").contains("does not pass check"))
            .count();
        assert_eq!(failures, 1);
        drop(run);
    })
    .await;
}
