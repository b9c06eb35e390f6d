//! Progressive delivery end to end, driven by analysis: `meshplan run`
//! (as the least-privilege ServiceAccount) moves a canary's weights on the
//! real kube-apiserver from the verdicts of a real Prometheus scraping the
//! controlled metrics generator. 1–2 s analysis intervals; every wait polls
//! for a condition. Needs the test environment. Gates, commands, webhooks
//! and restarts: `rollout_gates_live.rs`.

mod common;

use std::time::{Duration, Instant};

use common::rollouts::*;
use common::running::free_port;
use meshplan_testenv::{unique_name, wait_for, with_temp_ns, TestEnv};

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
        // Step 2 holds long enough for the spike to be judged there. The
        // canary is sticky: its cookie comes and goes with the rollout.
        let steps = "    steps: [{ weight: 20 }, { weight: 50, pause: 1h }, { weight: 100 }]\n    sessionAffinity: { cookieName: pay-canary, maxAge: 1h }\n";
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
        let vs = virtual_service(&client, &ns, &svc).await.unwrap();
        assert_eq!(sticky(&vs), (true, true), "at a step: {vs}");
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
        let vs = virtual_service(&client, &ns, &svc).await.unwrap();
        assert_eq!(sticky(&vs), (false, false), "rolled back: {vs}");
        assert!(run.log().contains("RollingBack"), "{}", run.log());
        run.stop();
    })
    .await;
}

/// Whether a VirtualService holds the sticky canary's two halves: a route
/// sending the `pay-canary=v2` cookie to v2, and the cookie on v2's
/// answers of the default route.
fn sticky(vs: &serde_json::Value) -> (bool, bool) {
    let routes = vs["spec"]["http"].as_array().cloned().unwrap_or_default();
    let route = routes.iter().any(|r| {
        r["match"][0]["headers"]["cookie"]["regex"]
            .as_str()
            .is_some_and(|re| re.contains("pay-canary=v2"))
            && r["route"][0]["destination"]["subset"] == "v2"
    });
    let cookie = routes.last().is_some_and(|d| {
        d["route"].as_array().into_iter().flatten().any(|dest| {
            dest["destination"]["subset"] == "v2"
                && dest["headers"]["response"]["add"]["Set-Cookie"]
                    == "pay-canary=v2; Max-Age=3600; Path=/"
        })
    });
    (route, cookie)
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

/// A TCP relay in front of Prometheus, to take it away and bring it back
/// on the same address. Stopping it also closes the connections it
/// carries, as a Prometheus that goes away does: clients keep connections
/// open between queries.
struct Relay {
    port: u16,
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

impl Relay {
    async fn start(port: u16, to: String) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut stopped = rx.clone();
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    Ok((mut inbound, _)) = listener.accept() => {
                        let to = to.clone();
                        let mut stopped = rx.clone();
                        tokio::spawn(async move {
                            if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                                tokio::select! {
                                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                                    _ = stopped.changed() => {}
                                }
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
            let _ = s.send(true);
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

#[tokio::test]
async fn on_linkerd_the_analysis_reads_linkerd_metrics_and_the_route_moves() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("ld");
        traffic(&ns, &svc, 0.0, None, 40.0);
        // Sticky: the route at 50 % carries a backendRef filter (the
        // cookie), which the API server must accept for the weight to show.
        let steps = "    steps: [{ weight: 50 }, { weight: 100 }]\n    sessionAffinity: {}\n";
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
async fn blue_green_switches_everything_at_once_after_its_checks() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("bg");
        traffic(&ns, &svc, 0.0, None, 40.0);
        let rollout = format!("    strategy: blueGreen\n    preview:\n      match: [{{ headers: {{ x-preview: {{ exact: \"true\" }} }} }}]\n    steps: [{{ weight: 100, pause: 4s }}]\n{HEALTHY_ANALYSIS}");
        let dir = repo(&ns, &svc, &env.prometheus_url, &rollout);
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        // While the green version is dark, the preview header reaches it.
        let preview = |vs: &serde_json::Value| {
            vs["spec"]["http"].as_array().is_some_and(|routes| {
                routes.iter().any(|r| {
                    r["match"][0]["headers"]["x-preview"]["exact"] == "true"
                        && r["route"][0]["destination"]["subset"] == "v2"
                        && r["route"][0]["weight"].as_i64().unwrap_or(100) == 100
                })
            })
        };
        wait_for("the preview route", Duration::from_secs(30), || {
            let c = client.clone();
            let (ns, svc) = (ns.clone(), svc.clone());
            async move { virtual_service(&c, &ns, &svc).await.filter(|vs| preview(vs)).map(|_| ()) }
        })
        .await;
        let seen = weights_until_promoted(&client, &ns, &svc, Mesh::Istio, Duration::from_secs(60), &run).await;
        assert_eq!(seen, [0, 100], "no weight in between: {}", run.log());
        let vs = virtual_service(&client, &ns, &svc).await.unwrap();
        assert!(!preview(&vs), "promoted: no preview route left: {vs}");
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
        // Windows of seconds rather than the alert's 1h and 5m, so that the
        // gate opens seconds after the burning stops.
        traffic(&ns, &svc, 0.05, None, 40.0);
        let rollout = "    steps: [{ weight: 20 }, { weight: 100 }]\n    analysis:\n      interval: 2s\n      inconclusiveLimit: 1000\n      minRequestVolume: 10\n      successRate: { min: 90 }\n      sloGate: { windows: { long: 20s, short: 4s } }\n  slos:\n    - name: availability\n      objective: 99.9\n      sli: { availability: {} }\n";
        let dir = repo(&ns, &svc, &env.prometheus_url, rollout);
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        wait_for("the SLO gate to hold", Duration::from_secs(40), || {
            let s = status(&key, &inv);
            async move {
                let s = s?;
                let checks = s["lastAnalysis"]["checks"].as_array()?;
                let held = checks.iter().any(|c| {
                    c["name"] == "SLO gate availability" && c["outcome"] == "inconclusive"
                });
                // Held by the gate alone: the success rate itself passes.
                // (An analysis racing Prometheus's first scrape of the
                // canary may find no data yet: waited out, not asserted.)
                let rate_passes = checks
                    .iter()
                    .any(|c| c["name"] == "success rate" && c["outcome"] == "pass");
                (held && rate_passes && s["inconclusive"].as_u64()? >= 2).then_some(())
            }
        })
        .await;
        let s = status(&key, &inv).unwrap();
        assert_eq!((s["phase"].clone(), s["weight"].clone()), ("progressing".into(), 20.into()), "{s}");

        // The canary stops burning: the gate opens.
        traffic(&ns, &svc, 0.0, None, 40.0);
        wait_phase(&key, &inv, "succeeded", Duration::from_secs(60), &run).await;
        run.stop();
    })
    .await;
}

/// `onBurn: fail`: a canary burning its SLO's budget (by the SLO's own SLI,
/// its 429s counted as the SLO counts them) fails its analyses and is
/// rolled back, although the success-rate check alone would pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_burns_its_budget_fails_when_the_gate_says_so() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("burn");
        // 5 % errors: a 99.9 % SLO burns at 50×, over 14.4× on both windows.
        traffic(&ns, &svc, 0.05, None, 40.0);
        let rollout = "    steps: [{ weight: 20 }, { weight: 100 }]\n    analysis:\n      interval: 2s\n      failureLimit: 2\n      inconclusiveLimit: 1000\n      minRequestVolume: 10\n      successRate: { min: 90 }\n      sloGate: { onBurn: fail, windows: { long: 20s, short: 4s } }\n  slos:\n    - name: availability\n      objective: 99.9\n      sli: { availability: {} }\n";
        let dir = repo(&ns, &svc, &env.prometheus_url, rollout);
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        let key = format!("{ns}/{svc}");
        let s = wait_phase(&key, &inv, "failed", Duration::from_secs(60), &run).await;
        let checks = s["lastAnalysis"]["checks"].as_array().cloned().unwrap_or_default();
        assert!(
            checks.iter().any(|c| c["name"] == "SLO gate availability" && c["outcome"] == "fail"),
            "{s}"
        );
        assert!(
            checks.iter().any(|c| c["name"] == "success rate" && c["outcome"] == "pass"),
            "{s}"
        );
        wait_weight(&client, &ns, &svc, 0, Duration::from_secs(20), &run).await;
        run.stop();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_stops_the_reconciler_while_prometheus_hangs() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let svc = unique_name("hang");
        traffic(&ns, &svc, 0.0, None, 40.0);
        // Listens and never answers: each query waits out its timeout (10 s).
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let steps = "    steps: [{ weight: 20 }, { weight: 100 }]\n";
        let dir = repo(&ns, &svc, &url, &format!("{steps}{HEALTHY_ANALYSIS}"));
        let inv = format!("meshplan-system/{}", unique_name("ro"));
        let run = start(dir.path(), &inv);
        wait_weight(&client, &ns, &svc, 20, Duration::from_secs(60), &run).await;
        // The first analysis is due 2 s into the step; then it hangs.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let asked = Instant::now();
        let code = run.stop();
        let took = asked.elapsed();
        assert_eq!(code, Some(0), "not stopped within 10 s of SIGTERM");
        assert!(took < Duration::from_secs(3), "stopping took {took:?}");
        drop(silent);
    })
    .await;
}

/// Each mesh's own metrics (issue 28): on Consul (Envoy's
/// `envoy_cluster_upstream_rq` of `local_app`, the version by its pod
/// labels) and on Cilium (Hubble's `hubble_http_requests_total`, the
/// version by its workload), a healthy canary is promoted on its checks
/// and a failing one rolled back. (The generator serves every mesh's
/// names at once: that the queries are Consul's and Hubble's own is
/// pinned by the compiler's unit tests; this proves they find the data.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_and_hubble_rollouts_are_judged_on_their_own_metrics() {
    let env = TestEnv::get();
    let client = env.client().await;
    for (targets, flavor) in [("consul", "consul"), ("cilium, gateway-api", "hubble")] {
        with_temp_ns(&client.clone(), |ns| async move {
            let steps = "    steps: [{ weight: 50 }, { weight: 100 }]\n";
            for (error_rate, phase) in [(0.0, "succeeded"), (0.3, "failed")] {
                let svc = unique_name(flavor);
                traffic(&ns, &svc, error_rate, None, 40.0);
                let dir = repo_for(
                    targets,
                    &ns,
                    &svc,
                    &env.prometheus_url,
                    &format!("{steps}{HEALTHY_ANALYSIS}"),
                );
                let inv = format!("meshplan-system/{}", unique_name("ro"));
                let run = start(dir.path(), &inv);
                let key = format!("{ns}/{svc}");
                let s = wait_phase(&key, &inv, phase, Duration::from_secs(60), &run).await;
                let checks = s["lastAnalysis"]["checks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let rate = checks.iter().find(|c| c["name"] == "success rate");
                let outcome = if error_rate > 0.0 { "fail" } else { "pass" };
                assert!(
                    rate.is_some_and(|c| c["outcome"] == outcome),
                    "{flavor}: {s}"
                );
                assert!(
                    checks
                        .iter()
                        .any(|c| c["name"] == "p99 latency" && c["outcome"] == "pass"),
                    "{flavor}: {s}"
                );
                run.stop();
            }
        })
        .await;
    }
}
