//! `meshplan run` against the real environment: a Git server, the
//! kube-apiserver (with the least-privilege ServiceAccount) and the
//! controller's own HTTP endpoints. Each test starts the binary as a
//! child process and stops it with SIGTERM.

mod common;

use common::running::Running;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use meshplan_testenv::{unique_name, wait_for, with_temp_ns, TestEnv, TestRepo};
use serde_json::{json, Value};

fn inventory() -> String {
    format!("meshplan-system/{}", unique_name("run"))
}

fn virtual_services(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    )
}

/// The canary weight of a service's `/api/` route, once it exists.
async fn canary_weight(client: &kube::Client, ns: &str, name: &str) -> Option<i64> {
    let vs = virtual_services(client, ns).get_opt(name).await.ok()??;
    vs.data["spec"]["http"][0]["route"][1]["weight"].as_i64()
}

/// A repository folder for namespace `ns` with `services` (name, canary %).
fn folder(ns: &str, services: &[(&str, u32)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meshplan.yaml"), common::config_yaml(ns)).unwrap();
    for (name, canary) in services {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            common::service_yaml(name, *canary, "web"),
        )
        .unwrap();
    }
    dir
}

/// Waits until `ns/name`'s canary weight is `weight`.
async fn until_weight(
    client: &kube::Client,
    ns: &str,
    name: &str,
    weight: i64,
    what: &str,
    secs: u64,
) {
    wait_for(what, Duration::from_secs(secs), || async {
        (canary_weight(client, ns, name).await == Some(weight)).then_some(())
    })
    .await;
}

fn status(inventory: &str) -> Option<Value> {
    let env = TestEnv::get();
    let out = common::meshplan(&[
        "status",
        "--kubeconfig",
        env.sa_kubeconfig.to_str().unwrap(),
        "--inventory",
        inventory,
        "--format",
        "json",
    ]);
    serde_json::from_slice(&out.stdout).ok()
}

fn git_repo(ns: &str, canary: u32) -> (TestRepo, String) {
    let repo = TestEnv::get().git.create_repo("run").unwrap();
    let c = repo
        .commit(
            &[
                ("meshplan.yaml", Some(&common::config_yaml(ns))),
                (
                    "api.yaml",
                    Some(&common::service_yaml("api", canary, "web")),
                ),
            ],
            "first",
        )
        .unwrap();
    (repo, c)
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test]
async fn follows_git_commits_within_one_poll_and_serves_its_endpoints() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let (repo, first) = git_repo(&ns, 10);
        let inv = inventory();
        let url = env.git.daemon_url_of(&repo);
        // The checkout where meshplan places it by default (the temp dir),
        // to see it removed when meshplan stops.
        let tmp = tempfile::tempdir().unwrap();
        let run =
            Running::start_with_tmp(&["--git", &url, "--interval", "1s"], &inv, Some(tmp.path()));
        until_weight(&client, &ns, "api", 10, "the first commit applied", 40).await;
        let checkouts = || std::fs::read_dir(tmp.path()).unwrap().count();
        assert_eq!(checkouts(), 1, "meshplan-checkout-* in the temp dir");
        repo.commit(
            &[("api.yaml", Some(&common::service_yaml("api", 40, "web")))],
            "move",
        )
        .unwrap();
        wait_for(
            "the second commit applied within a poll",
            SECS(20),
            || async { (canary_weight(&client, &ns, "api").await == Some(40)).then_some(()) },
        )
        .await;

        assert_eq!(run.get("/healthz").map(|r| r.0), Some(200));
        assert_eq!(run.get("/readyz").map(|r| r.0), Some(200));
        let (_, metrics) = run.get("/metrics").unwrap();
        assert!(
            metrics.contains("meshplan_reconcile_duration_seconds_count"),
            "{metrics}"
        );
        assert!(metrics.contains("meshplan_leader 1"), "{metrics}");
        assert!(
            run.metric("meshplan_managed_objects").unwrap() >= 3.0,
            "{metrics}"
        );
        let s = status(&inv).expect("a status");
        assert_eq!(s["result"], "synced", "{s:#}");
        assert_ne!(s["lastAppliedRevision"].as_str(), Some(first.as_str()));
        assert_eq!(run.stop(), Some(0), "SIGTERM ends cleanly");
        assert_eq!(
            checkouts(),
            0,
            "the checkout is removed when meshplan stops"
        );
    })
    .await;
}

#[tokio::test]
async fn a_verified_webhook_triggers_an_immediate_fetch_and_a_forged_one_does_not() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let (repo, _) = git_repo(&ns, 10);
        let secret_dir = tempfile::tempdir().unwrap();
        let secret_file = secret_dir.path().join("secret");
        std::fs::write(&secret_file, "hook-secret\n").unwrap();
        let url = env.git.daemon_url_of(&repo);
        // An hour between polls: only the webhook can explain a prompt apply.
        let run = Running::start(
            &[
                "--git",
                &url,
                "--interval",
                "1h",
                "--webhook-secret-file",
                secret_file.to_str().unwrap(),
            ],
            &inventory(),
        );
        until_weight(&client, &ns, "api", 10, "the first commit applied", 40).await;
        repo.commit(
            &[("api.yaml", Some(&common::service_yaml("api", 60, "web")))],
            "move",
        )
        .unwrap();

        let body = br#"{"ref":"refs/heads/main"}"#;
        let post = |sig: String, delivery: &str| {
            ureq::post(&run.url("/hooks/git"))
                .header("X-Hub-Signature-256", &sig)
                .header("X-GitHub-Delivery", delivery)
                .config()
                .http_status_as_error(false)
                .build()
                .send(&body[..])
                .unwrap()
                .status()
                .as_u16()
        };
        let forged = meshplan_reconciler::controller::webhook::sign(b"wrong", &[body]);
        assert_eq!(post(format!("sha256={forged}"), "d-1"), 401);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            canary_weight(&client, &ns, "api").await,
            Some(10),
            "a forged hook fetched"
        );

        let good = meshplan_reconciler::controller::webhook::sign(b"hook-secret", &[body]);
        let sent = std::time::Instant::now();
        assert_eq!(post(format!("sha256={good}"), "d-2"), 202);
        wait_for(
            "the pushed commit applied after the webhook",
            SECS(20),
            || async { (canary_weight(&client, &ns, "api").await == Some(60)).then_some(()) },
        )
        .await;
        eprintln!("webhook to applied: {:?}", sent.elapsed());
        assert_eq!(
            post(format!("sha256={good}"), "d-2"),
            409,
            "a replay is refused"
        );
    })
    .await;
}

#[tokio::test]
async fn a_local_folder_is_watched() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let dir = folder(&ns, &[("api", 10)]);
        let _run = Running::start(
            &[dir.path().to_str().unwrap(), "--interval", "1h"],
            &inventory(),
        );
        until_weight(&client, &ns, "api", 10, "the folder applied", 40).await;
        std::fs::write(
            dir.path().join("api.yaml"),
            common::service_yaml("api", 25, "web"),
        )
        .unwrap();
        until_weight(&client, &ns, "api", 25, "the edit applied", 20).await;
    })
    .await;
}

async fn edit_weight(client: &kube::Client, ns: &str, weight: i64) {
    let vs = virtual_services(client, ns);
    let mut live = vs.get("api").await.unwrap();
    live.data["spec"]["http"][0]["route"][0]["weight"] = json!(100 - weight);
    live.data["spec"]["http"][0]["route"][1]["weight"] = json!(weight);
    let pp = PostParams {
        field_manager: Some("kubectl-edit".into()),
        ..PostParams::default()
    };
    vs.replace("api", &pp, &live).await.unwrap();
}

#[tokio::test]
async fn an_out_of_band_edit_is_healed() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let dir = folder(&ns, &[("api", 10)]);
        let run = Running::start(
            &[dir.path().to_str().unwrap(), "--interval", "1h"],
            &inventory(),
        );
        until_weight(&client, &ns, "api", 10, "applied", 40).await;
        edit_weight(&client, &ns, 50).await;
        let edited = std::time::Instant::now();
        until_weight(&client, &ns, "api", 10, "the edit undone", 20).await;
        eprintln!("edit to healed: {:?}", edited.elapsed());
        assert_eq!(
            run.metric("meshplan_drift_healed_total"),
            Some(1.0),
            "{}",
            run.log()
        );
    })
    .await;
}

#[tokio::test]
async fn a_report_only_kind_keeps_the_edit_and_reports_it() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let dir = folder(&ns, &[("api", 10)]);
        let inv = inventory();
        let run = Running::start(
            &[
                dir.path().to_str().unwrap(),
                "--interval",
                "1h",
                "--self-heal-kind",
                "VirtualService=false",
            ],
            &inv,
        );
        until_weight(&client, &ns, "api", 10, "applied", 40).await;
        edit_weight(&client, &ns, 50).await;
        let s = wait_for("the drift reported", SECS(20), || async {
            let s = status(&inv)?;
            (!s["drift"].as_array()?.is_empty()).then_some(s)
        })
        .await;
        assert_eq!(
            s["drift"],
            json!([format!("VirtualService {ns}/api (networking.istio.io)")])
        );
        assert_eq!(
            canary_weight(&client, &ns, "api").await,
            Some(50),
            "report-only healed"
        );
        assert_eq!(run.metric("meshplan_drift_objects"), Some(1.0));
    })
    .await;
}

#[tokio::test]
async fn a_broken_commit_applies_nothing_and_the_status_says_why() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let (repo, good) = git_repo(&ns, 10);
        let inv = inventory();
        let url = env.git.daemon_url_of(&repo);
        let _run = Running::start(&["--git", &url, "--interval", "1s", "--prune"], &inv);
        until_weight(&client, &ns, "api", 10, "the good commit applied", 40).await;
        // A new service and a broken intent, in one commit.
        let bad = repo
            .commit(
                &[
                    ("db.yaml", Some(&common::service_yaml("db", 0, "api"))),
                    ("api.yaml", Some("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: api\nspec:\n  ports: [{ name: http, port: 80, protocol: htp }]\n")),
                ],
                "broken",
            )
            .unwrap();
        let s = wait_for("the failure recorded", SECS(20), || async {
            let s = status(&inv)?;
            (s["revision"] == bad.as_str()).then_some(s)
        })
        .await;
        assert_eq!(s["result"], "failed", "{s:#}");
        assert_eq!(s["lastAppliedRevision"], good.as_str(), "{s:#}");
        // It stays failed while the head is broken (resyncs of the last
        // good revision do not hide it).
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(status(&inv).unwrap()["result"], "failed");
        let diags = s["diagnostics"].to_string();
        assert!(diags.contains("api.yaml:6:"), "a file:line:col: {diags}");
        // Nothing of the broken commit reached the cluster; the rest of
        // the last good revision is still there.
        assert!(virtual_services(&client, &ns).get_opt("db").await.unwrap().is_none());
        assert_eq!(canary_weight(&client, &ns, "api").await, Some(10));
    })
    .await;
}

#[tokio::test]
async fn a_removed_intent_is_pruned() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let dir = folder(&ns, &[("api", 10)]);
        std::fs::write(
            dir.path().join("old.yaml"),
            common::service_yaml("old", 0, "web"),
        )
        .unwrap();
        let _run = Running::start(
            &[dir.path().to_str().unwrap(), "--interval", "1h", "--prune"],
            &inventory(),
        );
        let vs = virtual_services(&client, &ns);
        wait_for("both applied", SECS(40), || async {
            (vs.get_opt("old").await.ok()??.metadata.name.is_some()).then_some(())
        })
        .await;
        std::fs::remove_file(dir.path().join("old.yaml")).unwrap();
        wait_for("old pruned", SECS(20), || async {
            vs.get_opt("old").await.ok()?.is_none().then_some(())
        })
        .await;
        assert!(vs.get_opt("api").await.unwrap().is_some());
    })
    .await;
}

/// Unix seconds.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn of_two_replicas_one_leads_and_the_other_takes_over_when_it_stops() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let dir = folder(&ns, &[("api", 10)]);
        let inv = inventory();
        let lease = format!("meshplan-system/{}", unique_name("lease"));
        let path = dir.path().to_str().unwrap();
        let a = Running::start(
            &[
                path,
                "--interval",
                "1s",
                "--leader-election",
                "--lease",
                &lease,
                "--identity",
                "a",
            ],
            &inv,
        );
        let b = Running::start(
            &[
                path,
                "--interval",
                "1s",
                "--leader-election",
                "--lease",
                &lease,
                "--identity",
                "b",
            ],
            &inv,
        );
        let leaders = || (a.metric("meshplan_leader"), b.metric("meshplan_leader"));
        let (first, second) = wait_for("one leader", SECS(40), || async {
            match leaders() {
                (Some(1.0), Some(0.0)) => Some(("a", "b")),
                (Some(0.0), Some(1.0)) => Some(("b", "a")),
                _ => None,
            }
        })
        .await;
        until_weight(&client, &ns, "api", 10, "applied by the leader", 40).await;
        // The standby stays a standby over several lease periods.
        let until = now() + 5;
        while now() < until {
            let (la, lb) = leaders();
            assert_ne!((la, lb), (Some(1.0), Some(1.0)), "two leaders");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (leader, standby) = if first == "a" { (a, b) } else { (b, a) };
        assert_eq!(leader.stop(), Some(0));
        wait_for(&format!("{second} to take over"), SECS(20), || async {
            (standby.metric("meshplan_leader") == Some(1.0)).then_some(())
        })
        .await;
        // And it acts: an edit is healed by the new leader.
        edit_weight(&client, &ns, 70).await;
        until_weight(&client, &ns, "api", 10, "healed by the new leader", 20).await;
        let _ = Path::new(path);
    })
    .await;
}

#[tokio::test]
async fn an_unsigned_head_is_refused_and_the_last_signed_revision_stays() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let git = &env.git;
        let repo = git.create_repo("signed-run").unwrap();
        let signed = repo
            .commit_signed(
                &[
                    ("meshplan.yaml", Some(&common::config_yaml(&ns))),
                    ("api.yaml", Some(&common::service_yaml("api", 10, "web"))),
                ],
                "signed",
                &git.ssh_key,
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let signers = dir.path().join("allowed_signers");
        std::fs::write(
            &signers,
            format!(
                "platform {}",
                std::fs::read_to_string(&git.ssh_public_key).unwrap()
            ),
        )
        .unwrap();
        let inv = inventory();
        let url = git.daemon_url_of(&repo);
        let _run = Running::start(
            &[
                "--git",
                &url,
                "--interval",
                "1s",
                "--verify-ssh-signers",
                signers.to_str().unwrap(),
            ],
            &inv,
        );
        until_weight(&client, &ns, "api", 10, "the signed commit applied", 40).await;
        let unsigned = repo
            .commit(
                &[("api.yaml", Some(&common::service_yaml("api", 90, "web")))],
                "unsigned",
            )
            .unwrap();
        let s = wait_for("the refusal recorded", SECS(20), || async {
            let s = status(&inv)?;
            (s["result"] == "failed").then_some(s)
        })
        .await;
        assert_eq!(
            s["message"],
            format!("refusing commit {unsigned}: it is not signed"),
            "{s:#}"
        );
        assert_eq!(s["lastAppliedRevision"], signed.as_str());
        assert_eq!(canary_weight(&client, &ns, "api").await, Some(10));
    })
    .await;
}

/// In a pod, `meshplan run` finds its cluster from the service account
/// (no kubeconfig): the token and CA mounted at
/// /var/run/secrets/kubernetes.io/serviceaccount and KUBERNETES_SERVICE_*.
/// Reproduced for one process: a private mount namespace (unshare, as root
/// in CI) bind-mounts the test ServiceAccount's token and the CA there, and
/// HOME has no kubeconfig.
#[tokio::test]
async fn in_cluster_it_reads_the_mounted_service_account() {
    let env = TestEnv::get();
    let client = env.client().await;
    let kc: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&env.sa_kubeconfig).unwrap()).unwrap();
    let token = kc["users"][0]["user"]["token"].as_str().unwrap().to_owned();
    let server = kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_owned();
    let ca = kc["clusters"][0]["cluster"]["certificate-authority"]
        .as_str()
        .unwrap()
        .to_owned();
    let (host, port) = server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .unwrap();
    with_temp_ns(&client.clone(), |ns| async move {
        let sa = tempfile::tempdir().unwrap();
        std::fs::write(sa.path().join("token"), &token).unwrap();
        std::fs::copy(&ca, sa.path().join("ca.crt")).unwrap();
        std::fs::write(sa.path().join("namespace"), "meshplan-system").unwrap();
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("meshplan.yaml"), common::config_yaml(&ns)).unwrap();
        std::fs::write(repo.path().join("api.yaml"), common::service_yaml("api", 10, "web")).unwrap();
        let inv = inventory();
        let port_listen = common::running::free_port();
        let script = format!(
            "set -e; d=/var/run/secrets/kubernetes.io/serviceaccount; mkdir -p $d; mount --bind '{}' $d; exec '{}' run '{}' --inventory '{inv}' --listen 127.0.0.1:{port_listen}",
            sa.path().display(),
            env!("CARGO_BIN_EXE_meshplan"),
            repo.path().display(),
        );
        let log = home.path().join("run.log");
        let mut child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("KUBERNETES_SERVICE_HOST", host)
            .env("KUBERNETES_SERVICE_PORT", port)
            .env("NO_COLOR", "1")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("unshare runs (util-linux)");
        let vs = virtual_services(&client, &ns);
        let found = wait_for_opt(Duration::from_secs(30), || async { vs.get_opt("api").await.ok().flatten() }).await;
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            found.is_some(),
            "meshplan run in a private mount namespace (needs root: CI runs as root) applied nothing:\n{text}"
        );
        assert!(!text.contains(&token), "the token was logged");
    })
    .await;
}

/// Polls `f` until it gives a value or `within` passes.
async fn wait_for_opt<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
