//! Progressive delivery end to end: `meshplan run` (as the least-privilege
//! ServiceAccount) moves a canary's weights on the real kube-apiserver
//! from the verdicts of a real Prometheus scraping the controlled metrics
//! generator. 1–2 s analysis intervals; every wait polls for a condition.
//! Needs the test environment.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::running::{free_port, Running};
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use meshplan_testenv::{unique_name, wait_for, with_temp_ns, TestEnv, Workload};
use serde_json::Value;

/// A repository with one service `svc` (v1 stable, v2 canary) whose
/// rollout is `rollout` (YAML lines under `rollout:`), analysed from
/// `metrics_url`.
fn repo(ns: &str, svc: &str, metrics_url: &str, rollout: &str) -> tempfile::TempDir {
    repo_for("istio", ns, svc, metrics_url, rollout)
}

fn repo_for(
    target: &str,
    ns: &str,
    svc: &str,
    metrics_url: &str,
    rollout: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meshplan.yaml"),
        format!("apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [{target}]\ndefaultNamespace: {ns}\nmetrics:\n  url: {metrics_url}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("svc.yaml"),
        format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: {svc}\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: {svc}, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: {svc}, version: v2 }} }}\n  rollout:\n    stable: v1\n    canary: v2\n{rollout}"),
    )
    .unwrap();
    dir
}

/// Healthy traffic to both versions of `svc`.
fn traffic(ns: &str, svc: &str, error_rate: f64, tail_ms: Option<f64>, rps: f64) {
    let mut canary = Workload::new(svc, ns, "v2")
        .rps(rps)
        .error_rate(error_rate)
        .latency_ms(20.0);
    if let Some(ms) = tail_ms {
        canary = canary.tail(0.2, ms);
    }
    TestEnv::get()
        .metrics()
        .set(&[
            Workload::new(svc, ns, "v1")
                .rps(30.0)
                .error_rate(0.0)
                .latency_ms(20.0),
            canary,
        ])
        .unwrap();
}

fn start(dir: &Path, inventory: &str) -> Running {
    // A long interval: every move below comes from the rollout ticks.
    Running::start(&[dir.to_str().unwrap(), "--interval", "5m"], inventory)
}

/// The canary's weight on the VirtualService's default route.
async fn weight(client: &kube::Client, ns: &str, svc: &str) -> Option<i64> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    );
    let vs = api.get_opt(svc).await.ok()??;
    let routes = vs.data["spec"]["http"].as_array()?;
    let default = routes.last()?;
    default["route"]
        .as_array()?
        .iter()
        .find(|r| r["destination"]["subset"] == "v2")
        .map(|r| r["weight"].as_i64().unwrap_or(0))
}

fn meshplan_sa(args: &[&str], inventory: &str) -> std::process::Output {
    let env = TestEnv::get();
    let mut all = args.to_vec();
    all.extend([
        "--kubeconfig",
        env.sa_kubeconfig.to_str().unwrap(),
        "--inventory",
        inventory,
    ]);
    common::meshplan(&all)
}

/// `meshplan rollout status KEY --format json`, once there is a state.
fn status(key: &str, inventory: &str) -> Option<Value> {
    let out = meshplan_sa(&["rollout", "status", key, "--format", "json"], inventory);
    if out.status.code() != Some(0) {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0).cloned()
}

async fn wait_phase(
    key: &str,
    inventory: &str,
    phase: &str,
    within: Duration,
    run: &Running,
) -> Value {
    let what = format!("{key} to reach {phase}");
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = status(key, inventory) {
            if s["phase"] == phase {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: it is {}\n--- meshplan run:\n{}",
                    serde_json::to_string_pretty(&s).unwrap(),
                    run.log()
                );
            }
        } else if Instant::now() > deadline {
            panic!("{what}: no state\n--- meshplan run:\n{}", run.log());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_weight(
    client: &kube::Client,
    ns: &str,
    svc: &str,
    w: i64,
    within: Duration,
    run: &Running,
) {
    let deadline = Instant::now() + within;
    loop {
        let now = weight(client, ns, svc).await;
        if now == Some(w) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{ns}/{svc}: canary weight {now:?}, expected {w}\n--- meshplan run:\n{}",
                run.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Clone, Copy)]
enum Mesh {
    Istio,
    Linkerd,
}

/// Every canary weight the route shows, in order, until it reaches 100.
async fn weights_until_promoted(
    client: &kube::Client,
    ns: &str,
    svc: &str,
    mesh: Mesh,
    within: Duration,
    run: &Running,
) -> Vec<i64> {
    let mut seen: Vec<i64> = Vec::new();
    let deadline = Instant::now() + within;
    while seen.last() != Some(&100) {
        let w = match mesh {
            Mesh::Istio => weight(client, ns, svc).await,
            Mesh::Linkerd => linkerd_weight(client, ns, svc).await,
        };
        if let Some(w) = w.filter(|w| seen.last() != Some(w)) {
            seen.push(w);
        }
        assert!(
            Instant::now() < deadline,
            "weights so far {seen:?}\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

const HEALTHY_ANALYSIS: &str = "    analysis:\n      interval: 2s\n      failureLimit: 2\n      inconclusiveLimit: 1000\n      minRequestVolume: 10\n      successRate: { min: 99 }\n      latency: { percentile: 99, max: 500ms }\n";

#[tokio::test]
async fn a_healthy_canary_advances_through_every_step_and_promotes() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("cart");
        traffic(&ns, &svc, 0.0, None, 40.0);
        let steps = "    steps: [{ weight: 20 }, { weight: 50 }, { weight: 100 }]\n";
        let dir = repo(
            &ns,
            &svc,
            &env.prometheus_url,
            &format!("{steps}{HEALTHY_ANALYSIS}"),
        );
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        // Every weight shows up, in order.
        let seen = weights_until_promoted(
            &client,
            &ns,
            &svc,
            Mesh::Istio,
            Duration::from_secs(90),
            &run,
        )
        .await;
        assert_eq!(seen, [20, 50, 100], "{}", run.log());
        let s = wait_phase(&key, &inv, "succeeded", Duration::from_secs(10), &run).await;
        assert_eq!(s["weight"], 100);
        assert_eq!(s["lastAnalysis"]["verdict"], "pass", "{s}");
        // The canary was measured beside the stable version.
        let rate = &s["lastAnalysis"]["checks"][1];
        assert_eq!(rate["name"], "success rate", "{s}");
        assert!(
            rate["detail"]
                .as_str()
                .unwrap()
                .ends_with("(stable 100.00%)"),
            "{s}"
        );
        // The controller says so on /metrics.
        let (_, metrics) = run.get("/metrics").unwrap();
        assert!(
            metrics.contains(&format!(
                "meshplan_rollout_phase{{service=\"{key}\",phase=\"Succeeded\"}} 1"
            )),
            "{metrics}"
        );
        assert!(metrics.contains(&format!(
            "meshplan_rollout_analyses_total{{service=\"{key}\",verdict=\"pass\"}}"
        )));
        run.stop();
    })
    .await;
}

#[tokio::test]
async fn an_error_spike_at_step_2_rolls_back_within_the_failure_limit() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("pay");
        traffic(&ns, &svc, 0.0, None, 40.0);
        // Step 2 holds long enough for the spike to be judged there.
        let steps = "    steps: [{ weight: 20 }, { weight: 50, pause: 1h }, { weight: 100 }]\n";
        let dir = repo(
            &ns,
            &svc,
            &env.prometheus_url,
            &format!("{steps}{HEALTHY_ANALYSIS}"),
        );
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        wait_weight(&client, &ns, &svc, 50, Duration::from_secs(60), &run).await;
        traffic(&ns, &svc, 0.5, None, 40.0);
        let spiked = Instant::now();
        let s = wait_phase(&key, &inv, "failed", Duration::from_secs(40), &run).await;
        // failureLimit 2 × 2 s, plus Prometheus' window catching up.
        let took = spiked.elapsed();
        assert!(took < Duration::from_secs(30), "rolled back after {took:?}");
        assert!(
            s["reason"]
                .as_str()
                .unwrap()
                .contains("2 failed checks in a row"),
            "{s}"
        );
        assert!(
            s["reason"].as_str().unwrap().contains("success rate"),
            "{s}"
        );
        wait_weight(&client, &ns, &svc, 0, Duration::from_secs(10), &run).await;
        assert!(run.log().contains("RollingBack"), "{}", run.log());
        run.stop();
    })
    .await;
}

#[tokio::test]
async fn a_latency_regression_fails_the_latency_check() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("slow");
        // A fifth of the canary's requests take 2 s: p99 far over 500 ms.
        traffic(&ns, &svc, 0.0, Some(2000.0), 40.0);
        let steps = "    steps: [{ weight: 20 }, { weight: 100 }]\n";
        let dir = repo(
            &ns,
            &svc,
            &env.prometheus_url,
            &format!("{steps}{HEALTHY_ANALYSIS}"),
        );
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let s = wait_phase(
            &format!("{ns}/{svc}"),
            &inv,
            "failed",
            Duration::from_secs(60),
            &run,
        )
        .await;
        let reason = s["reason"].as_str().unwrap();
        assert!(
            reason.contains("p99 latency") && !reason.contains("success rate"),
            "{s}"
        );
        wait_weight(&client, &ns, &svc, 0, Duration::from_secs(10), &run).await;
        run.stop();
    })
    .await;
}

#[tokio::test]
async fn low_traffic_stays_inconclusive_and_never_advances() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("quiet");
        traffic(&ns, &svc, 0.0, None, 0.5);
        let steps = "    steps: [{ weight: 20 }, { weight: 100 }]\n";
        let dir = repo(
            &ns,
            &svc,
            &env.prometheus_url,
            &format!("{steps}{HEALTHY_ANALYSIS}"),
        );
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        wait_for(
            "three inconclusive analyses",
            Duration::from_secs(40),
            || {
                let s = status(&key, &inv);
                async move {
                    let s = s?;
                    (s["lastAnalysis"]["verdict"] == "inconclusive"
                        && s["inconclusive"].as_u64()? >= 3)
                        .then_some(())
                }
            },
        )
        .await;
        let s = status(&key, &inv).unwrap();
        assert_eq!(s["phase"], "progressing", "{s}");
        assert_eq!(s["weight"], 20, "{s}");
        let volume = &s["lastAnalysis"]["checks"][0];
        assert_eq!(volume["name"], "request volume", "{s}");
        assert!(
            volume["detail"].as_str().unwrap().contains("(minimum 10)"),
            "{s}"
        );
        assert_eq!(weight(&client, &ns, &svc).await, Some(20));
        run.stop();
    })
    .await;
}

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

/// A TCP relay in front of Prometheus, to take it away and bring it back
/// on the same address.
struct Relay {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Relay {
    async fn start(port: u16, to: String) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    Ok((mut inbound, _)) = listener.accept() => {
                        let to = to.clone();
                        tokio::spawn(async move {
                            if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            }
                        });
                    }
                }
            }
        });
        Relay {
            port,
            stop: Some(tx),
        }
    }

    fn stop(mut self) -> u16 {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.port
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_prometheus_gone_nothing_advances_and_it_goes_on_when_back() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("blind");
        traffic(&ns, &svc, 0.0, None, 40.0);
        let prom = env.prometheus_url.trim_start_matches("http://").to_owned();
        let relay = Relay::start(free_port(), prom.clone()).await;
        let url = format!("http://127.0.0.1:{}", relay.port);
        let steps = "    steps: [{ weight: 20 }, { weight: 40 }, { weight: 100 }]\n";
        let dir = repo(&ns, &svc, &url, &format!("{steps}{HEALTHY_ANALYSIS}"));
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let key = format!("{ns}/{svc}");
        let run = start(dir.path(), &inv);
        wait_weight(&client, &ns, &svc, 40, Duration::from_secs(60), &run).await;

        let port = relay.stop();
        wait_for("an inconclusive analysis", Duration::from_secs(20), || {
            let s = status(&key, &inv);
            async move { (s?["lastAnalysis"]["verdict"] == "inconclusive").then_some(()) }
        })
        .await;
        for _ in 0..8 {
            assert_eq!(weight(&client, &ns, &svc).await, Some(40), "{}", run.log());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let s = status(&key, &inv).unwrap();
        assert_eq!(s["phase"], "progressing", "{s}");
        assert!(
            s["lastAnalysis"]["checks"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("Prometheus at"),
            "{s}"
        );

        let _relay = Relay::start(port, prom).await;
        wait_phase(&key, &inv, "succeeded", Duration::from_secs(60), &run).await;
        assert_eq!(weight(&client, &ns, &svc).await, Some(100));
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

        // The pre-rollout hook holds the start: all traffic on stable.
        wait_for("the pre-rollout hook to be asked twice", Duration::from_secs(30), || {
            let n = hooks.got("/pre").len();
            async move { (n >= 2).then_some(()) }
        })
        .await;
        let s = status(&key, &inv).unwrap();
        assert_eq!(s["phase"], "idle", "{s}");
        assert!(s["next"].as_str().unwrap().contains("answered 503"), "{s}");
        assert_eq!(weight(&client, &ns, &svc).await, Some(0));
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

/// The canary backend's weight on Linkerd's HTTPRoute.
async fn linkerd_weight(client: &kube::Client, ns: &str, svc: &str) -> Option<i64> {
    let gvk = GroupVersionKind::gvk("policy.linkerd.io", "v1beta3", "HTTPRoute");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "httproutes"),
    );
    let r = api.get_opt(svc).await.ok()??;
    let rules = r.data["spec"]["rules"].as_array()?;
    rules.last()?["backendRefs"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == format!("{svc}-v2").as_str())
        .map(|b| b["weight"].as_i64().unwrap_or(0))
}

#[tokio::test]
async fn on_linkerd_the_analysis_reads_linkerd_metrics_and_the_route_moves() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("ld");
        traffic(&ns, &svc, 0.0, None, 40.0);
        let steps = "    steps: [{ weight: 50 }, { weight: 100 }]\n";
        let dir = repo_for(
            "linkerd",
            &ns,
            &svc,
            &env.prometheus_url,
            &format!("{steps}{HEALTHY_ANALYSIS}"),
        );
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        let seen = weights_until_promoted(
            &client,
            &ns,
            &svc,
            Mesh::Linkerd,
            Duration::from_secs(60),
            &run,
        )
        .await;
        assert_eq!(seen, [50, 100], "{}", run.log());
        let s = wait_phase(&key, &inv, "succeeded", Duration::from_secs(10), &run).await;
        // The checks ran (on Linkerd's response_total and response_latency_ms:
        // the flavor follows the targets).
        let checks = s["lastAnalysis"]["checks"].as_array().unwrap();
        assert!(
            checks
                .iter()
                .any(|c| c["name"] == "p99 latency" && c["outcome"] == "pass"),
            "{s}"
        );
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

#[tokio::test]
async fn blue_green_switches_everything_at_once_after_its_checks() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("bg");
        traffic(&ns, &svc, 0.0, None, 40.0);
        let rollout = format!("    strategy: blueGreen\n    steps: [{{ weight: 100, pause: 4s }}]\n{HEALTHY_ANALYSIS}");
        let dir = repo(&ns, &svc, &env.prometheus_url, &rollout);
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        let seen = weights_until_promoted(&client, &ns, &svc, Mesh::Istio, Duration::from_secs(60), &run).await;
        assert_eq!(seen, [0, 100], "no weight in between: {}", run.log());
        let s = wait_phase(&key, &inv, "succeeded", Duration::from_secs(10), &run).await;
        assert!(
            s["history"].as_array().unwrap().iter().any(|t| t["reason"] == "last step passed: promoting"),
            "{s}"
        );
        run.stop();
    })
    .await;
}

#[tokio::test]
async fn the_slo_gate_holds_promotion_while_the_canary_burns_its_budget() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("slo");
        // 5 % errors: the success-rate check (min 90) passes, but a 99.9 %
        // availability SLO burns at 50×, over the 14.4× page threshold.
        traffic(&ns, &svc, 0.05, None, 40.0);
        let rollout = "    steps: [{ weight: 20 }, { weight: 100 }]\n    analysis:\n      interval: 2s\n      inconclusiveLimit: 1000\n      minRequestVolume: 10\n      successRate: { min: 90 }\n      sloGate: true\n  slos:\n    - name: availability\n      objective: 99.9\n      sli: { availability: {} }\n";
        let dir = repo(&ns, &svc, &env.prometheus_url, rollout);
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        wait_for("the SLO gate to hold", Duration::from_secs(40), || {
            let s = status(&key, &inv);
            async move {
                let s = s?;
                let held = s["lastAnalysis"]["checks"].as_array()?.iter().any(|c| {
                    c["name"] == "SLO gate availability" && c["outcome"] == "inconclusive"
                });
                (held && s["inconclusive"].as_u64()? >= 2).then_some(())
            }
        })
        .await;
        let s = status(&key, &inv).unwrap();
        assert_eq!((s["phase"].clone(), s["weight"].clone()), ("progressing".into(), 20.into()), "{s}");
        let rate = &s["lastAnalysis"]["checks"][1];
        assert_eq!((rate["name"].as_str(), rate["outcome"].as_str()), (Some("success rate"), Some("pass")), "{s}");

        // The canary stops burning: the gate opens.
        traffic(&ns, &svc, 0.0, None, 40.0);
        wait_phase(&key, &inv, "succeeded", Duration::from_secs(60), &run).await;
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
