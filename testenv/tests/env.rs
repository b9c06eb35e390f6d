//! Proves the test environment: each real service answers as the reconciler
//! and the rollout engine will need it to. These tests need the running
//! environment (`scripts/test.sh` starts it) and fail without it.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{watcher, WatchStreamExt};
use meshplan_testenv::{wait_for, with_temp_ns, TestEnv, Workload};
use serde_json::json;

fn virtual_service(ns: &str, weight: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": ns},
        "spec": {
            "hosts": ["reviews"],
            "http": [{"route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": weight},
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}
            ]}]
        }
    })
}

fn vs_api(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    );
    Api::namespaced_with(client, ns, &ar)
}

#[tokio::test]
async fn a_config_map_can_be_created_read_and_watched() {
    let env = TestEnv::get();
    let client = env.client().await;
    let c = client.clone();
    with_temp_ns(&client, |ns| async move {
        let api: Api<ConfigMap> = Api::namespaced(c, &ns);
        let mut events = watcher(api.clone(), watcher::Config::default())
            .applied_objects()
            .boxed();
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("state".into());
        cm.data = Some([("step".to_string(), "1".to_string())].into());
        api.create(&PostParams::default(), &cm).await.unwrap();
        assert_eq!(api.get("state").await.unwrap().data.unwrap()["step"], "1");
        api.patch(
            "state",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"step": "2"}})),
        )
        .await
        .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(cm) = events.try_next().await.unwrap() {
                if cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get("step"))
                    .map(String::as_str)
                    == Some("2")
                {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(seen, Ok(true), "the watch did not deliver the update");
    })
    .await;
}

#[tokio::test]
async fn server_side_apply_accepts_a_valid_virtual_service_and_the_schema_rejects_an_invalid_one() {
    let env = TestEnv::get();
    let client = env.client().await;
    let c = client.clone();
    with_temp_ns(&client, |ns| async move {
        let api = vs_api(c, &ns);
        let pp = PatchParams::apply("meshplan-test").force();
        let ok = api
            .patch(
                "reviews",
                &pp,
                &Patch::Apply(virtual_service(&ns, json!(90))),
            )
            .await
            .expect("a valid VirtualService is accepted");
        assert_eq!(ok.data["spec"]["http"][0]["route"][0]["weight"], 90);
        let err = api
            .patch(
                "reviews",
                &pp,
                &Patch::Apply(virtual_service(&ns, json!("ten"))),
            )
            .await
            .expect_err("weight \"ten\" must be rejected by the CRD's schema");
        match err {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 422, "{s:?}");
                assert!(s.message.contains("weight"), "{}", s.message);
            }
            other => panic!("expected an API error, got {other}"),
        }
        // Server-side dry-run works too, and changes nothing.
        let dry = PatchParams::apply("meshplan-test").force().dry_run();
        api.patch(
            "reviews",
            &dry,
            &Patch::Apply(virtual_service(&ns, json!(50))),
        )
        .await
        .unwrap();
        let live = api.get("reviews").await.unwrap();
        assert_eq!(live.data["spec"]["http"][0]["route"][0]["weight"], 90);
    })
    .await;
}

#[tokio::test]
async fn empty_strings_in_custom_resources_survive() {
    // Gateway API needs `group: ""` to name a Service; an apiserver built
    // with mismatched JSON libraries turns every "" into null.
    let env = TestEnv::get();
    let client = env.client().await;
    let c = client.clone();
    with_temp_ns(&client, |ns| async move {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        );
        let api: Api<DynamicObject> = Api::namespaced_with(c, &ns, &ar);
        let route = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}]}
        });
        let live = api
            .patch(
                "web",
                &PatchParams::apply("meshplan-test").force(),
                &Patch::Apply(route),
            )
            .await
            .expect("an HTTPRoute with a Service parent is accepted");
        assert_eq!(live.data["spec"]["parentRefs"][0]["group"], "");
    })
    .await;
}

#[tokio::test]
async fn the_service_account_has_exactly_its_role() {
    let env = TestEnv::get();
    let admin = env.client().await;
    let sa = env.sa_client().await;
    with_temp_ns(&admin, |ns| async move {
        // Granted: the kinds meshplan emits.
        let pp = PatchParams::apply("meshplan").force();
        vs_api(sa.clone(), &ns)
            .patch(
                "reviews",
                &pp,
                &Patch::Apply(virtual_service(&ns, json!(90))),
            )
            .await
            .expect("the meshplan role may apply VirtualServices");
        // Not granted: anything else, Secrets above all.
        let secrets: Api<Secret> = Api::namespaced(sa, &ns);
        match secrets.list(&ListParams::default()).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
            other => panic!("listing Secrets must be forbidden, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn prometheus_sees_the_generators_series_change() {
    let env = TestEnv::get();
    let prom = env.prometheus();
    let metrics = env.metrics();
    let svc = meshplan_testenv::unique_name("svc");
    let error_ratio = |mesh: &str| {
        match mesh {
        "istio" => format!(
            "sum(rate(istio_requests_total{{destination_service_name=\"{svc}\",response_code=~\"5..\"}}[4s])) / sum(rate(istio_requests_total{{destination_service_name=\"{svc}\"}}[4s]))"
        ),
        _ => format!(
            "sum(rate(response_total{{app=\"{svc}\",classification=\"failure\"}}[4s])) / sum(rate(response_total{{app=\"{svc}\"}}[4s]))"
        ),
    }
    };
    // Nothing yet: an empty result, not an error.
    assert!(prom.query(&error_ratio("istio")).unwrap().is_empty());

    for (rate, mesh) in [(0.1, "istio"), (0.5, "linkerd")] {
        metrics
            .set(&[Workload::new(&svc, "shop", "v2")
                .rps(200.0)
                .error_rate(rate)
                .latency_ms(40.0)])
            .unwrap();
        let q = error_ratio(mesh);
        wait_for(
            &format!("{mesh} error ratio {rate}"),
            Duration::from_secs(30),
            || {
                let samples = prom.query(&q).unwrap();
                let ok = samples
                    .first()
                    .is_some_and(|s| (s.value - rate).abs() < 0.02);
                async move { ok.then_some(()) }
            },
        )
        .await;
    }
    // Latency percentiles come from the histograms.
    let p99 = format!(
        "histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{destination_service_name=\"{svc}\"}}[4s])))"
    );
    let v = prom.query(&p99).unwrap();
    assert!(
        v.first().is_some_and(|s| s.value > 25.0 && s.value <= 50.0),
        "{v:?}"
    );
}

/// How a clone authenticates.
enum Auth<'a> {
    None,
    UserPass(&'a str, &'a str),
    Key {
        private: &'a Path,
        public: &'a Path,
        known_hosts: &'a Path,
    },
}

/// Clones with git2, verifying SSH host keys against `known_hosts` (the
/// way the reconciler's Git source must: no key, no connection).
fn clone(url: &str, auth: Auth<'_>, into: &Path) -> Result<git2::Repository, git2::Error> {
    let mut cb = git2::RemoteCallbacks::new();
    let mut tries = 0;
    let known_hosts = match &auth {
        Auth::Key { known_hosts, .. } => Some(std::fs::read_to_string(known_hosts).unwrap()),
        _ => None,
    };
    cb.credentials(move |_url, user, _allowed| {
        tries += 1;
        if tries > 1 {
            return Err(git2::Error::from_str(
                "authentication failed: credentials rejected",
            ));
        }
        match &auth {
            Auth::None => Err(git2::Error::from_str("no credentials configured")),
            Auth::UserPass(u, p) => git2::Cred::userpass_plaintext(u, p),
            Auth::Key {
                private, public, ..
            } => git2::Cred::ssh_key(user.unwrap_or("git"), Some(public), private, None),
        }
    });
    cb.certificate_check(move |cert, host| {
        let Some(hk) = cert.as_hostkey() else {
            return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
        };
        let key = hk
            .hostkey()
            .ok_or_else(|| git2::Error::from_str("no host key offered"))?;
        let offered = base64::engine::general_purpose::STANDARD.encode(key);
        let known = known_hosts.as_deref().unwrap_or("");
        let trusted = known.lines().any(|l| {
            let mut parts = l.split_whitespace();
            let hosts = parts.next().unwrap_or("");
            let _kind = parts.next();
            let k = parts.next().unwrap_or("");
            hosts.split(',').any(|h| h.contains(host)) && k == offered
        });
        if trusted {
            Ok(git2::CertificateCheckStatus::CertificateOk)
        } else {
            Err(git2::Error::from_str(&format!(
                "host key of {host} is not in known_hosts"
            )))
        }
    });
    let mut fo = git2::FetchOptions::new();
    fo.remote_callbacks(cb);
    git2::build::RepoBuilder::new()
        .fetch_options(fo)
        .clone(url, into)
}

fn refused(r: Result<git2::Repository, git2::Error>) -> git2::Error {
    match r {
        Ok(_) => panic!("the clone must be refused"),
        Err(e) => e,
    }
}

fn head_of(repo: &git2::Repository) -> String {
    repo.head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id()
        .to_string()
}

#[test]
fn every_git_server_serves_clones_with_its_auth() {
    let env = TestEnv::get();
    let git = &env.git;
    let repo = git.create_repo("clone").unwrap();
    let id = repo
        .commit(&[("meshplan.yaml", Some("targets: [istio]\n"))], "first")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let r = clone(
        &git.daemon_url_of(&repo),
        Auth::None,
        &tmp.path().join("daemon"),
    )
    .unwrap();
    assert_eq!(head_of(&r), id);

    let r = clone(
        &git.http_url_of(&repo),
        Auth::UserPass(&git.http_user, &git.http_password),
        &tmp.path().join("http-password"),
    )
    .unwrap();
    assert_eq!(head_of(&r), id);

    let r = clone(
        &git.http_url_of(&repo),
        Auth::UserPass("x-access-token", &git.http_token),
        &tmp.path().join("http-token"),
    )
    .unwrap();
    assert_eq!(head_of(&r), id);

    let r = clone(
        &git.ssh_url_of(&repo),
        Auth::Key {
            private: &git.ssh_key,
            public: &git.ssh_public_key,
            known_hosts: &git.known_hosts,
        },
        &tmp.path().join("ssh"),
    )
    .unwrap();
    assert_eq!(head_of(&r), id);
    assert!(r.workdir().unwrap().join("meshplan.yaml").exists());
}

#[test]
fn wrong_credentials_and_unknown_host_keys_fail_cleanly() {
    let env = TestEnv::get();
    let git = &env.git;
    let repo = git.create_repo("refuse").unwrap();
    repo.commit(&[("a.yaml", Some("a: 1\n"))], "first").unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let e = refused(clone(
        &git.http_url_of(&repo),
        Auth::None,
        &tmp.path().join("a"),
    ));
    assert!(e.message().contains("no credentials"), "{e}");
    let e = refused(clone(
        &git.http_url_of(&repo),
        Auth::UserPass(&git.http_user, "wrong-password"),
        &tmp.path().join("b"),
    ));
    assert!(e.message().contains("credentials rejected"), "{e}");

    let wrong_public = git.ssh_wrong_key.with_extension("pub");
    let e = refused(clone(
        &git.ssh_url_of(&repo),
        Auth::Key {
            private: &git.ssh_wrong_key,
            public: &wrong_public,
            known_hosts: &git.known_hosts,
        },
        &tmp.path().join("c"),
    ));
    // sshd refuses the key; libgit2 asks for other credentials, and there
    // are none.
    assert!(e.message().contains("credentials rejected"), "{e}");

    let e = refused(clone(
        &git.ssh_url_of(&repo),
        Auth::Key {
            private: &git.ssh_key,
            public: &git.ssh_public_key,
            known_hosts: &git.wrong_known_hosts,
        },
        &tmp.path().join("d"),
    ));
    // libgit2 reports the callback's refusal in its own words.
    assert_eq!(e.class(), git2::ErrorClass::Ssh, "{e}");
    assert!(e.message().contains("hostkey"), "{e}");
    // Nothing was checked out by the refused clones.
    for d in ["a", "b", "c", "d"] {
        assert!(!tmp.path().join(d).join("a.yaml").exists(), "{d}");
    }
}

#[test]
fn a_force_push_replaces_history() {
    let env = TestEnv::get();
    let git = &env.git;
    let repo = git.create_repo("force").unwrap();
    let first = repo.commit(&[("a.yaml", Some("a: 1\n"))], "first").unwrap();
    let rewritten = repo
        .force_push_new_history(&[("b.yaml", Some("b: 2\n"))], "rewritten")
        .unwrap();
    assert_ne!(first, rewritten);
    let tmp = tempfile::tempdir().unwrap();
    let r = clone(&git.daemon_url_of(&repo), Auth::None, tmp.path()).unwrap();
    assert_eq!(head_of(&r), rewritten);
    assert!(r.find_commit(git2::Oid::from_str(&first).unwrap()).is_err());
}
