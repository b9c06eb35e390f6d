//! Progressive delivery end to end, driven by people and other systems:
//! manual gates and `meshplan rollout` commands, webhooks, a killed
//! reconciler, a new canary mid-rollout — against the real kube-apiserver
//! and Prometheus. Needs the test environment. Analysis-driven moves:
//! `rollout_live.rs`.

mod common;

use std::time::Duration;

use common::meshplan_sa;
use common::rollouts::*;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use meshplan_testenv::{unique_name, wait_for, with_temp_ns, TestEnv};
use serde_json::Value;

#[tokio::test]
async fn a_manual_gate_waits_for_promote() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("gate");
        let steps = "    steps: [{ weight: 30 }, { gate: manual }, { weight: 100 }]\n";
        let dir = repo(&ns, &svc, &env.prometheus_url, steps);
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        let s = wait_phase(&key, &inv, "paused", Duration::from_secs(30), &run).await;
        assert_eq!(s["reason"], "manualGate", "{s}");
        assert!(
            s["next"]
                .as_str()
                .unwrap()
                .contains("meshplan rollout promote"),
            "{s}"
        );
        wait_weight(&client, &ns, &svc, 30, Duration::from_secs(10), &run).await;
        // It stays there.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(status(&key, &inv).unwrap()["phase"], "paused");

        // `resume` is not how a gate opens: refused, nothing moves.
        let out = meshplan_sa(&["rollout", "resume", &key], &inv);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("use `promote` to pass it"));

        // A pipeline waiting for the promotion with kubectl (kstatus
        // conditions on the MeshRollout).
        let object = format!("meshrollout/meshplan-rollout-{ns}-{svc}");
        let kubeconfig = env.sa_kubeconfig.to_str().unwrap().to_owned();
        let waiter = std::process::Command::new("kubectl")
            .args([
                "--kubeconfig",
                &kubeconfig,
                "-n",
                "meshplan-system",
                "wait",
                &object,
                "--for=condition=Ready",
                "--timeout=60s",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        tokio::time::sleep(Duration::from_secs(2)).await;

        let out = meshplan_sa(&["rollout", "promote", &svc], &inv);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            run.log()
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Paused@step 1 → "),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        wait_weight(&client, &ns, &svc, 100, Duration::from_secs(10), &run).await;
        wait_phase(&key, &inv, "succeeded", Duration::from_secs(10), &run).await;
        let waited = waiter.wait_with_output().unwrap();
        assert!(
            waited.status.success(),
            "kubectl wait: {}{}",
            String::from_utf8_lossy(&waited.stdout),
            String::from_utf8_lossy(&waited.stderr)
        );
        assert!(String::from_utf8_lossy(&waited.stdout).contains("condition met"));

        // Nothing left to promote.
        let out = meshplan_sa(&["rollout", "promote", &key], &inv);
        assert_eq!(out.status.code(), Some(1));
        let text = meshplan_sa(&["rollout", "status", &key], &inv);
        assert!(
            String::from_utf8_lossy(&text.stdout).contains("Succeeded at promoted"),
            "{}",
            String::from_utf8_lossy(&text.stdout)
        );
        run.stop();
    })
    .await;
}

#[tokio::test]
async fn a_killed_reconciler_resumes_at_the_same_step() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("resume");
        traffic(&ns, &svc, 0.0, None, 40.0);
        let steps = "    steps: [{ weight: 20 }, { weight: 60, pause: 1h }, { weight: 100 }]\n";
        let dir = repo(
            &ns,
            &svc,
            &env.prometheus_url,
            &format!("{steps}{HEALTHY_ANALYSIS}"),
        );
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let key = format!("{ns}/{svc}");
        let run = start(dir.path(), &inv);
        wait_weight(&client, &ns, &svc, 60, Duration::from_secs(60), &run).await;
        let before = status(&key, &inv).unwrap();
        drop(run); // SIGKILL: no clean shutdown.

        let run = start(dir.path(), &inv);
        wait_for(
            "the new reconciler to reconcile",
            Duration::from_secs(30),
            || {
                let up = run
                    .metric("meshplan_reconciles_total{result=\"unchanged\"}")
                    .unwrap_or(0.0)
                    + run
                        .metric("meshplan_reconciles_total{result=\"applied\"}")
                        .unwrap_or(0.0);
                async move { (up >= 1.0).then_some(()) }
            },
        )
        .await;
        // Still at step 2 (60 %), for a while and through its analyses.
        for _ in 0..10 {
            assert_eq!(weight(&client, &ns, &svc).await, Some(60), "{}", run.log());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let after = status(&key, &inv).unwrap();
        assert_eq!(after["at"]["at"], "step", "{after}");
        assert_eq!(after["at"]["step"], 1, "{after}");
        assert_eq!(
            after["stageStarted"], before["stageStarted"],
            "the stage restarted"
        );
        run.stop();
    })
    .await;
}

/// A webhook receiver: answers each path with the status set for it
/// (default 200) and keeps every JSON body it got.
#[derive(Clone)]
struct Hooks {
    port: u16,
    status: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u16>>>,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

impl Hooks {
    async fn start() -> Hooks {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let hooks = Hooks {
            port: listener.local_addr().unwrap().port(),
            status: Default::default(),
            bodies: Default::default(),
        };
        let h = hooks.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let h = h.clone();
                tokio::spawn(async move {
                    let mut r = BufReader::new(stream);
                    let mut line = String::new();
                    r.read_line(&mut line).await.ok()?;
                    let path = line.split_whitespace().nth(1)?.to_owned();
                    let mut len = 0;
                    loop {
                        let mut l = String::new();
                        r.read_line(&mut l).await.ok()?;
                        let l = l.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().ok()?;
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).await.ok()?;
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    h.bodies.lock().unwrap().push((path.clone(), v));
                    let code = h.status.lock().unwrap().get(&path).copied().unwrap_or(200);
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    r.into_inner().write_all(resp.as_bytes()).await.ok()
                });
            }
        });
        hooks
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn answer(&self, path: &str, code: u16) {
        self.status.lock().unwrap().insert(path.to_owned(), code);
    }

    fn got(&self, path: &str) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_gate_the_start_each_step_and_the_promotion_and_hear_every_transition() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("hooked");
        traffic(&ns, &svc, 0.0, None, 40.0);
        let hooks = Hooks::start().await;
        // Not yet: the load test is not ready, the step is not confirmed.
        hooks.answer("/pre", 503);
        hooks.answer("/confirm", 409);
        let webhooks = format!(
            "    webhooks:\n      - {{ name: load-test, type: preRollout, url: '{}', timeout: 2s, metadata: {{ rps: '50' }} }}\n      - {{ name: approve, type: stepConfirmation, url: '{}' }}\n      - {{ name: smoke, type: postRollout, url: '{}' }}\n      - {{ name: chat, type: notification, url: '{}' }}\n",
            hooks.url("/pre"),
            hooks.url("/confirm"),
            hooks.url("/post"),
            hooks.url("/note"),
        );
        let steps = "    steps: [{ weight: 25 }, { weight: 100 }]\n";
        let dir = repo(&ns, &svc, &env.prometheus_url, &format!("{steps}{HEALTHY_ANALYSIS}{webhooks}"));
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let key = format!("{ns}/{svc}");
        let run = start(dir.path(), &inv);

        // The pre-rollout hook holds the start: all traffic on stable. A
        // 503 may pass: each call tries three times.
        let s = wait_for("the pre-rollout hook's answer", Duration::from_secs(30), || {
            let s = status(&key, &inv);
            async move {
                let next = s.as_ref()?["next"].as_str()?;
                next.contains("answered 503 (after 3 attempts)").then_some(s?)
            }
        })
        .await;
        assert_eq!(s["phase"], "idle", "{s}");
        assert!(hooks.got("/pre").len() >= 3);
        // The revision is applied once the rollouts are read (their gates
        // asked): all traffic on stable.
        wait_weight(&client, &ns, &svc, 0, Duration::from_secs(20), &run).await;
        let pre = &hooks.got("/pre")[0];
        assert_eq!(pre["type"], "preRollout");
        assert_eq!(pre["service"], svc.as_str());
        assert_eq!(pre["metadata"]["rps"], "50");

        hooks.answer("/pre", 200);
        wait_weight(&client, &ns, &svc, 25, Duration::from_secs(30), &run).await;
        // Passing analyses, but no confirmation: the step holds.
        wait_for("step confirmation to be asked", Duration::from_secs(40), || {
            let n = hooks.got("/confirm").len();
            async move { (n >= 2).then_some(()) }
        })
        .await;
        let s = status(&key, &inv).unwrap();
        assert_eq!(s["weight"], 25, "{s}");
        assert!(s["next"].as_str().unwrap().contains("waits for step confirmation"), "{s}");
        assert!(s["passes"].as_u64().unwrap() >= 1, "{s}");

        hooks.answer("/confirm", 200);
        wait_phase(&key, &inv, "succeeded", Duration::from_secs(40), &run).await;
        assert_eq!(hooks.got("/post").len(), 1, "post-rollout is called once, on promotion");
        // Every transition was announced.
        wait_for("the notifications", Duration::from_secs(10), || {
            let notes: Vec<String> = hooks
                .got("/note")
                .iter()
                .map(|v| v["reason"].as_str().unwrap_or_default().to_owned())
                .collect();
            async move {
                (notes.iter().any(|r| r.contains("rollout started"))
                    && notes.iter().any(|r| r.contains("→ Succeeded@canary")))
                .then_some(())
            }
        })
        .await;
        run.stop();
    })
    .await;
}

#[tokio::test]
async fn pause_resume_abort_and_a_hand_edited_weight_behave() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("ops");
        traffic(&ns, &svc, 0.0, None, 40.0);
        // Step 1 holds long enough for every command below.
        let steps = "    steps: [{ weight: 40, pause: 1h }, { weight: 100 }]\n";
        let dir = repo(
            &ns,
            &svc,
            &env.prometheus_url,
            &format!("{steps}{HEALTHY_ANALYSIS}"),
        );
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        wait_weight(&client, &ns, &svc, 40, Duration::from_secs(30), &run).await;

        // The step's weights are the desired state: a hand edit is drift,
        // and it is healed back to the step's weights.
        let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
        let vs: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
        );
        let patch = serde_json::json!([
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 0},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 100}
        ]);
        vs.patch(
            &svc,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::<()>::Json(serde_json::from_value(patch).unwrap()),
        )
        .await
        .unwrap();
        wait_weight(&client, &ns, &svc, 40, Duration::from_secs(10), &run).await;

        let ok = |args: &[&str]| {
            let out = meshplan_sa(args, &inv);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(ok(&["rollout", "pause", &key]).contains("→ Paused@step 0"));
        assert_eq!(status(&key, &inv).unwrap()["reason"], "requested");
        assert!(ok(&["rollout", "resume", &key]).contains("→ Progressing@step 0"));
        ok(&["rollout", "skip-analysis", &key]);
        assert_eq!(status(&key, &inv).unwrap()["skipAnalysis"], true);
        assert!(ok(&["rollout", "abort", &key]).contains("→ RollingBack@stable"));
        let s = wait_phase(&key, &inv, "failed", Duration::from_secs(10), &run).await;
        assert_eq!(s["reason"], "aborted", "{s}");
        wait_weight(&client, &ns, &svc, 0, Duration::from_secs(10), &run).await;

        // Each transition is a Kubernetes Event, the rollback a Warning.
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(client.clone(), "meshplan-system");
        let name = inv.split_once('/').unwrap().1.to_owned();
        wait_for(
            "a RolloutRolledBack warning event",
            Duration::from_secs(10),
            || {
                let events = events.clone();
                let key = key.clone();
                let name = name.clone();
                async move {
                    let list = events.list(&Default::default()).await.ok()?;
                    list.items
                        .iter()
                        .any(|e| {
                            e.reason.as_deref() == Some("RolloutRolledBack")
                                && e.type_.as_deref() == Some("Warning")
                                && e.message.as_deref().unwrap_or_default().contains(&key)
                                && e.involved_object
                                    .name
                                    .as_deref()
                                    .unwrap_or_default()
                                    .starts_with(&name)
                        })
                        .then_some(())
                }
            },
        )
        .await;
        run.stop();
    })
    .await;
}

#[tokio::test]
async fn a_new_canary_pushed_mid_rollout_restarts_at_the_first_step() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("again");
        traffic(&ns, &svc, 0.0, None, 40.0);
        let steps = "    steps: [{ weight: 20 }, { weight: 60, pause: 1h }, { weight: 100 }]\n";
        let dir = repo(&ns, &svc, &env.prometheus_url, &format!("{steps}{HEALTHY_ANALYSIS}"));
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        wait_weight(&client, &ns, &svc, 60, Duration::from_secs(60), &run).await;
        // v3 replaces v2 as the canary (the folder is watched).
        let file = dir.path().join("svc.yaml");
        let text = std::fs::read_to_string(&file).unwrap()
            .replace("    - { name: v2, labels: { app: SVC, version: v2 } }\n".replace("SVC", &svc).as_str(),
                &format!("    - {{ name: v2, labels: {{ app: {svc}, version: v2 }} }}\n    - {{ name: v3, labels: {{ app: {svc}, version: v3 }} }}\n"))
            .replace("    canary: v2\n", "    canary: v3\n");
        std::fs::write(&file, text).unwrap();
        wait_for("the rollout of v3 to start over", Duration::from_secs(30), || {
            let s = status(&key, &inv);
            async move {
                let s = s?;
                (s["canary"] == "v3" && s["at"]["step"] == 0).then_some(())
            }
        })
        .await;
        // v2 has left the default route's split; v3 has the first step's 20 %.
        let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
        let vs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"));
        wait_for("v3 at 20 %", Duration::from_secs(15), || {
            let vs = vs.clone();
            let svc = svc.clone();
            async move {
                let o = vs.get(&svc).await.ok()?;
                let route = o.data["spec"]["http"].as_array()?.last()?["route"].as_array()?.clone();
                let w = |v: &str| route.iter().find(|r| r["destination"]["subset"] == v).map(|r| r["weight"].as_i64().unwrap_or(0));
                (w("v3") == Some(20) && w("v2").unwrap_or(0) == 0).then_some(())
            }
        })
        .await;
        run.stop();
    })
    .await;
}

#[test]
fn rollout_commands_without_a_rollout_say_so() {
    let env = TestEnv::get();
    let inv = format!("meshplan-system/{}", unique_name("ro"));
    let out = meshplan_sa(
        &["rollout", "promote", "nowhere/nothing", "--wait", "1s"],
        &inv,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no rollout for `nowhere/nothing`"), "{err}");
    let _ = env;
}

/// A step-confirmation hook that keeps refusing, with `failureLimit: 2`:
/// the rollout fails and goes back to stable instead of holding forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_past_its_failure_limit_fails_the_rollout() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("hookfail");
        traffic(&ns, &svc, 0.0, None, 40.0);
        let hooks = Hooks::start().await;
        hooks.answer("/confirm", 409);
        let webhooks = format!(
            "    webhooks:\n      - {{ name: approve, type: stepConfirmation, url: '{}', failureLimit: 2 }}\n",
            hooks.url("/confirm"),
        );
        let steps = "    steps: [{ weight: 25 }, { weight: 100 }]\n";
        let dir = repo(&ns, &svc, &env.prometheus_url, &format!("{steps}{HEALTHY_ANALYSIS}{webhooks}"));
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let key = format!("{ns}/{svc}");
        let run = start(dir.path(), &inv);
        let s = wait_phase(&key, &inv, "failed", Duration::from_secs(60), &run).await;
        assert!(
            s["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("webhook `approve` failed 2 times in a row"),
            "{s}"
        );
        // A 409 is an answer, not a failure to try again: asked once per
        // analysis that passed.
        assert_eq!(hooks.got("/confirm").len(), 2);
        wait_weight(&client, &ns, &svc, 0, Duration::from_secs(20), &run).await;
        run.stop();
    })
    .await;
}
