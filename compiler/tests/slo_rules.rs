//! SLO rules proven in Prometheus's own rule engine: the PrometheusRules
//! meshplan renders, fed to `promtool test rules` with synthetic series.
//!
//! For every SLI kind (availability, with gRPC and extra error codes;
//! latency; custom), the metric flavours (Istio, Linkerd; Consul and
//! Hubble for availability and latency) and the windows
//! 7d, 28d and 30d: a fast burn pages when the workbook's table says it
//! should (10 % errors on 99.9 % over 30 d: after 8.64 minutes of a steady
//! hour), a slow one never does, and one service's errors never page
//! another. Needs `promtool` (Debian's `prometheus`, installed by
//! `scripts/env/install.sh`; `$MESHPLAN_PROMTOOL` overrides the path): the
//! test fails without it, never skips.

use std::path::PathBuf;
use std::process::Command;

use meshplan_compiler::check_sources;
use meshplan_compiler::{compile, Options};
use meshplan_policy_lang::intent::config::UnsupportedSetting;
use meshplan_policy_lang::intent::Target;
use meshplan_policy_lang::parse::Sources;
use serde_json::{json, Value};

fn promtool() -> String {
    let tool = std::env::var("MESHPLAN_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    match Command::new(&tool).arg("--version").output() {
        Ok(o) if o.status.success() => tool,
        _ => panic!(
            "`{tool}` is not installed: SLO rules are tested in Prometheus's own rule engine. Install Debian's `prometheus` package (scripts/env/install.sh does)"
        ),
    }
}

/// The `spec` of every PrometheusRule `mesh` renders for `intents` (YAML of
/// ServiceIntents in namespace `shop`), as one rules file.
fn rules(mesh: Target, intents: &str) -> Value {
    let (repo, report) = check_sources(&Sources {
        files: vec![
            (
                "meshplan.yaml".into(),
                "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\ndefaultNamespace: shop\n".into(),
            ),
            ("svc.yaml".into(), intents.into()),
        ],
    });
    assert!(report.passes(false), "{:?}", report.diagnostics);
    let compiled = compile(
        &repo,
        &report,
        &Options {
            targets: Some(vec![mesh]),
            unsupported: Some(UnsupportedSetting::Warning),
            ..Options::default()
        },
    )
    .unwrap();
    let groups: Vec<Value> = compiled
        .objects
        .iter()
        .filter(|o| o.kind == "PrometheusRule")
        .flat_map(|o| {
            o.body.value()["spec"]["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert!(!groups.is_empty(), "no PrometheusRule rendered");
    json!({ "groups": groups })
}

/// The annotations of alert `name` of `service`'s SLO `slo` in `rules`.
fn annotations(rules: &Value, service: &str, slo: &str, name: &str) -> Value {
    let group = format!("meshplan-shop-{service}-{slo}");
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"] == group.as_str())
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .find(|r| r["alert"] == name)
        .map(|r| r["annotations"].clone())
        .unwrap_or_else(|| panic!("no alert {name} for SLO {slo}"))
}

/// One expectation: at `at` (minutes), alert `name` fires for these
/// services (each `(service, slo)`), and for no other.
struct Expect<'a> {
    at: u32,
    name: &'a str,
    firing: &'a [(&'a str, &'a str)],
}

/// Runs `promtool test rules` on `rules` with `series` (`(series,
/// values)` at 1-minute steps) and the expectations; panics with
/// promtool's output on failure.
fn prove(what: &str, rules: &Value, series: &[(String, String)], expect: &[Expect<'_>]) {
    let dir = tempdir(what);
    std::fs::write(
        dir.join("rules.yaml"),
        serde_json::to_string_pretty(rules).unwrap(),
    )
    .unwrap();
    let tests: Vec<Value> = expect
        .iter()
        .map(|e| {
            let alerts: Vec<Value> = e
                .firing
                .iter()
                .map(|(service, slo)| {
                    let severity = if e.name == "SLOBurnRatePage" { "page" } else { "ticket" };
                    json!({
                        "exp_labels": {"namespace": "shop", "service": service, "slo": slo, "severity": severity},
                        "exp_annotations": annotations(rules, service, slo, e.name),
                    })
                })
                .collect();
            json!({"eval_time": format!("{}m", e.at), "alertname": e.name, "exp_alerts": alerts})
        })
        .collect();
    let input: Vec<Value> = series
        .iter()
        .map(|(s, v)| json!({"series": s, "values": v}))
        .collect();
    let test = json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input, "alert_rule_test": tests}],
    });
    std::fs::write(
        dir.join("test.yaml"),
        serde_json::to_string_pretty(&test).unwrap(),
    )
    .unwrap();
    let out = Command::new(promtool())
        .args(["test", "rules", "test.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meshplan-slo-{}-{}",
        std::process::id(),
        what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A counter at `per_min` a minute for `before` minutes, then `after` a
/// minute for `during` minutes (promtool's expanding notation).
fn counter(before: u32, per_min: u32, during: u32, after: u32) -> String {
    let start = before * per_min;
    format!("0+{per_min}x{before} {}+{after}x{during}", start + after)
}

fn intent(name: &str, ports: &str, slo: &str) -> String {
    format!(
        "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: {name} }}\nspec:\n  ports: {ports}\n  versions:\n    - {{ name: v1, labels: {{ app: {name}, version: v1 }} }}\n  slos:\n{slo}"
    )
}

const HTTP: &str = "[{ name: http, port: 80, protocol: http }]";

fn availability(objective: &str, window: &str) -> String {
    format!("    - name: availability\n      objective: {objective}\n      window: {window}\n      sli: {{ availability: {{}} }}\n      alerting: {{ page: {{}}, ticket: {{}} }}\n")
}

/// Istio's request counter of `svc` with response code `code`.
fn istio(svc: &str, code: &str) -> String {
    format!("istio_requests_total{{reporter=\"destination\",destination_service_name=\"{svc}\",destination_service_namespace=\"shop\",destination_version=\"v1\",response_code=\"{code}\"}}")
}

/// Linkerd's inbound response counter of version v1 of `app`, as
/// linkerd-viz's scrape labels it: the proxy's Deployment, then the pod's
/// labels.
fn linkerd(app: &str, class: &str, code: &str) -> String {
    format!("response_total{{direction=\"inbound\",namespace=\"shop\",deployment=\"{app}-v1\",app=\"{app}\",version=\"v1\",classification=\"{class}\",status_code=\"{code}\"}}")
}

/// Minutes of steady traffic before a burn: more than the 6 h window, so
/// that every page window holds only steady traffic before it.
const WARM: u32 = 400;

/// Steady traffic of 1,000 good requests a minute, then `bad_per_mille` of
/// each 1,000 failing for `during` minutes, as Istio counts them.
fn istio_burn(svc: &str, bad_per_mille: u32, during: u32) -> Vec<(String, String)> {
    vec![
        (
            istio(svc, "200"),
            counter(WARM, 1000, during, 1000 - bad_per_mille),
        ),
        (istio(svc, "500"), counter(WARM, 0, during, bad_per_mille)),
    ]
}

#[test]
fn a_fast_burn_pages_when_the_workbook_says_and_a_slow_one_never() {
    // 10 % errors on 99.9 % over 30 d: the 1 h window crosses 14.4 × 0.1 %
    // after 8.64 minutes of it (0.1 × t / 60 > 0.0144).
    let r = rules(
        Target::Istio,
        &intent("cart", HTTP, &availability("99.9", "30d")),
    );
    let quiet = |at| Expect {
        at,
        name: "SLOBurnRatePage",
        firing: &[],
    };
    prove(
        "istio 30d fast burn",
        &r,
        &istio_burn("cart", 100, 30),
        &[
            quiet(WARM + 8),
            Expect {
                at: WARM + 10,
                name: "SLOBurnRatePage",
                firing: &[("cart", "availability")],
            },
        ],
    );
    // 0.05 % never pages, nor opens a ticket (1 × 0.1 % over 3 d and 6 h).
    prove(
        "istio 30d slow burn",
        &r,
        &[
            (istio("cart", "200"), counter(WARM, 2000, 1500, 1999)),
            (istio("cart", "500"), counter(WARM, 0, 1500, 1)),
        ],
        &[
            quiet(WARM + 30),
            quiet(WARM + 600),
            quiet(WARM + 1440),
            Expect {
                at: WARM + 1440,
                name: "SLOBurnRateTicket",
                firing: &[],
            },
        ],
    );
}

/// Consul's Envoy and Cilium's Hubble: the same fast burn pages on their own
/// series, and a neighbour's errors do not.
#[test]
fn consul_and_hubble_burns_page_on_their_own_series() {
    let both = format!(
        "{}---\n{}",
        intent("cart", HTTP, &availability("99.9", "30d")),
        intent("cart-admin", HTTP, &availability("99.9", "30d"))
    );
    let consul = |app: &str, code: &str| {
        format!("envoy_cluster_upstream_rq{{envoy_cluster_name=\"local_app\",local_cluster=\"{app}\",namespace=\"shop\",app=\"{app}\",version=\"v1\",envoy_response_code=\"{code}\"}}")
    };
    let hubble = |app: &str, code: &str| {
        format!("hubble_http_requests_total{{reporter=\"server\",destination_namespace=\"shop\",destination_workload=\"{app}-v1\",method=\"GET\",status=\"{code}\"}}")
    };
    for (mesh, series) in [
        (Target::Consul, &consul as &dyn Fn(&str, &str) -> String),
        (Target::Cilium, &hubble),
    ] {
        prove(
            &format!("{mesh:?} fast burn"),
            &rules(mesh, &both),
            &[
                (series("cart", "200"), counter(WARM, 1000, 30, 900)),
                (series("cart", "503"), counter(WARM, 0, 30, 100)),
                (series("cart-admin", "200"), counter(WARM, 1000, 30, 1000)),
            ],
            &[
                Expect {
                    at: WARM + 8,
                    name: "SLOBurnRatePage",
                    firing: &[],
                },
                Expect {
                    at: WARM + 10,
                    name: "SLOBurnRatePage",
                    firing: &[("cart", "availability")],
                },
            ],
        );
    }
}

#[test]
fn burn_rate_factors_scale_with_the_slo_window() {
    // 1 % errors (a 10× burn of 99.9 %): on a 7 d SLO the page factor is
    // 2 % × 168 h / 1 h = 3.36, crossed after 20.2 minutes; on 30 d it is
    // 14.4, never crossed in the hour (the 6 h window takes 3.6 h).
    for (window, at_quiet, at_firing) in
        [("7d", WARM + 18, Some(WARM + 23)), ("30d", WARM + 50, None)]
    {
        let r = rules(
            Target::Istio,
            &intent("cart", HTTP, &availability("99.9", window)),
        );
        let mut e = vec![Expect {
            at: at_quiet,
            name: "SLOBurnRatePage",
            firing: &[],
        }];
        if let Some(at) = at_firing {
            e.push(Expect {
                at,
                name: "SLOBurnRatePage",
                firing: &[("cart", "availability")],
            });
        }
        prove(
            &format!("istio {window} 10x"),
            &r,
            &istio_burn("cart", 10, 60),
            &e,
        );
    }
    // 28 d: 2 % errors cross 13.44 × 0.1 % in the hour after 40.3 minutes.
    let r = rules(
        Target::Istio,
        &intent("cart", HTTP, &availability("99.9", "28d")),
    );
    prove(
        "istio 28d",
        &r,
        &istio_burn("cart", 20, 60),
        &[
            Expect {
                at: WARM + 38,
                name: "SLOBurnRatePage",
                firing: &[],
            },
            Expect {
                at: WARM + 43,
                name: "SLOBurnRatePage",
                firing: &[("cart", "availability")],
            },
        ],
    );
}

#[test]
fn grpc_failures_count_on_grpc_ports() {
    let ports = "[{ name: grpc, port: 9090, protocol: grpc }]";
    let r = rules(
        Target::Istio,
        &intent("ledger", ports, &availability("99.9", "30d")),
    );
    // gRPC fails under HTTP 200: UNAVAILABLE (14) for 10 % of calls.
    let grpc = |status: &str| {
        format!("istio_requests_total{{reporter=\"destination\",destination_service_name=\"ledger\",destination_service_namespace=\"shop\",response_code=\"200\",grpc_response_status=\"{status}\"}}")
    };
    prove(
        "istio grpc",
        &r,
        &[
            (grpc("0"), counter(WARM, 1000, 30, 900)),
            (grpc("14"), counter(WARM, 0, 30, 100)),
            // NOT_FOUND is the caller's error, not the server's.
            (grpc("5"), counter(WARM, 0, 30, 500)),
        ],
        &[Expect {
            at: WARM + 10,
            name: "SLOBurnRatePage",
            firing: &[("ledger", "availability")],
        }],
    );
    let r = rules(
        Target::Linkerd,
        &intent("ledger", ports, &availability("99.9", "30d")),
    );
    let linkerd = |class: &str, code: &str| linkerd("ledger", class, code);
    prove(
        "linkerd grpc",
        &r,
        &[
            (linkerd("success", "200"), counter(WARM, 1000, 30, 900)),
            (linkerd("failure", "200"), counter(WARM, 0, 30, 100)),
        ],
        &[Expect {
            at: WARM + 10,
            name: "SLOBurnRatePage",
            firing: &[("ledger", "availability")],
        }],
    );
}

#[test]
fn one_services_errors_never_page_another() {
    // `cart` and `cart-admin`: their pods' `app` labels tell them apart
    // (a Deployment pattern `cart-.*` would count the admin's failures as
    // cart's).
    let both = format!(
        "{}---\n{}",
        intent("cart", HTTP, &availability("99.9", "30d")),
        intent("cart-admin", HTTP, &availability("99.9", "30d"))
    );
    let r = rules(Target::Linkerd, &both);
    let linkerd = |deployment: &str, class: &str| linkerd(deployment, class, "200");
    prove(
        "linkerd neighbours",
        &r,
        &[
            (linkerd("cart", "success"), counter(WARM, 1000, 30, 1000)),
            (linkerd("cart-admin", "success"), counter(WARM, 10, 30, 5)),
            (linkerd("cart-admin", "failure"), counter(WARM, 0, 30, 5)),
        ],
        &[Expect {
            at: WARM + 10,
            name: "SLOBurnRatePage",
            firing: &[("cart-admin", "availability")],
        }],
    );
}

#[test]
fn extra_error_codes_add_to_linkerds_failures() {
    let slo = "    - name: availability\n      objective: 99.9\n      sli: { availability: { errorCodes: [\"429\"] } }\n      alerting: { page: {} }\n";
    let ports = "[{ name: grpc, port: 9090, protocol: grpc }]";
    let r = rules(Target::Linkerd, &intent("ledger", ports, slo));
    let linkerd = |class: &str, code: &str| linkerd("ledger", class, code);
    // gRPC failures alone page (they were dropped when 429 was added)...
    prove(
        "linkerd grpc with 429",
        &r,
        &[
            (linkerd("success", "200"), counter(WARM, 1000, 30, 900)),
            (linkerd("failure", "200"), counter(WARM, 0, 30, 100)),
        ],
        &[Expect {
            at: WARM + 10,
            name: "SLOBurnRatePage",
            firing: &[("ledger", "availability")],
        }],
    );
    // ...and so do 429s, which Linkerd classifies as successes.
    prove(
        "linkerd 429",
        &r,
        &[
            (linkerd("success", "200"), counter(WARM, 1000, 30, 900)),
            (linkerd("success", "429"), counter(WARM, 0, 30, 100)),
        ],
        &[Expect {
            at: WARM + 10,
            name: "SLOBurnRatePage",
            firing: &[("ledger", "availability")],
        }],
    );
}

#[test]
fn latency_and_custom_slis_page_on_their_own_series() {
    let latency = "    - name: latency\n      objective: 99\n      sli: { latency: { threshold: 500ms } }\n      alerting: { page: {} }\n";
    for (mesh, metric, sel, le) in [
        (Target::Istio, "istio_request_duration_milliseconds_bucket", "reporter=\"destination\",destination_service_name=\"cart\",destination_service_namespace=\"shop\"", "500"),
        (Target::Linkerd, "response_latency_ms_bucket", "direction=\"inbound\",namespace=\"shop\",deployment=\"cart-v1\",app=\"cart\",version=\"v1\"", "500"),
        (Target::Consul, "envoy_cluster_upstream_rq_time_bucket", "envoy_cluster_name=\"local_app\",local_cluster=\"cart\",namespace=\"shop\",app=\"cart\",version=\"v1\"", "500"),
        // Hubble's histogram is in seconds.
        (Target::Cilium, "hubble_http_request_duration_seconds_bucket", "reporter=\"server\",destination_namespace=\"shop\",destination_workload=\"cart-v1\"", "0.5"),
    ] {
        let r = rules(mesh, &intent("cart", HTTP, latency));
        // 60 % slower than 500 ms: the hour crosses 14.4 × 1 % after 14.4
        // minutes (0.6 × t / 60 > 0.144).
        prove(
            &format!("{metric} latency"),
            &r,
            &[
                (format!("{metric}{{{sel},le=\"{le}\"}}"), counter(WARM, 1000, 30, 400)),
                (format!("{metric}{{{sel},le=\"+Inf\"}}"), counter(WARM, 1000, 30, 1000)),
            ],
            &[
                Expect { at: WARM + 12, name: "SLOBurnRatePage", firing: &[] },
                Expect { at: WARM + 17, name: "SLOBurnRatePage", firing: &[("cart", "latency")] },
            ],
        );
    }
    let custom = "    - name: checkout\n      objective: 99.5\n      window: 7d\n      sli:\n        custom:\n          goodQuery: sum(rate(checkouts_total{result=\"ok\"}[{{window}}]))\n          totalQuery: sum(rate(checkouts_total[{{window}}]))\n      alerting: { page: {} }\n";
    let r = rules(Target::Istio, &intent("cart", HTTP, custom));
    prove(
        "custom",
        &r,
        &[
            (
                "checkouts_total{result=\"ok\"}".into(),
                counter(WARM, 100, 30, 80),
            ),
            (
                "checkouts_total{result=\"failed\"}".into(),
                counter(WARM, 0, 30, 20),
            ),
        ],
        &[Expect {
            at: WARM + 10,
            name: "SLOBurnRatePage",
            firing: &[("cart", "checkout")],
        }],
    );
}
