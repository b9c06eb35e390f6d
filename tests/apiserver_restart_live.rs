//! The API server is killed in the middle of `meshplan apply` and comes
//! back: the apply retries, converges, and leaves exactly the desired
//! objects. The only test of its binary (cargo runs test binaries one at a
//! time, so no other test sees the API server go down). Needs the test
//! environment.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use meshplan_testenv::{unique_name, wait_for, with_temp_ns, TestEnv};

fn api(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    plural: &str,
    group: &str,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

#[tokio::test]
async fn an_apply_survives_the_api_server_dying_midway_and_converges() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meshplan.yaml"), common::config_yaml(&ns)).unwrap();
        let services = 120;
        for i in 0..services {
            let name = format!("svc-{i}");
            std::fs::write(
                dir.path().join(format!("{name}.yaml")),
                common::service_yaml(&name, 10, "web"),
            )
            .unwrap();
        }
        let inv = format!("meshplan-system/{}", unique_name("restart"));
        let args = [
            "apply",
            dir.path().to_str().unwrap(),
            "--kubeconfig",
            env.sa_kubeconfig.to_str().unwrap(),
            "--inventory",
            &inv,
            // One call at a time: the apply is still running when the
            // server goes down.
            "--concurrency",
            "1",
            "--timeout",
            "2m",
        ];
        let child = Command::new(env!("CARGO_BIN_EXE_meshplan"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Once the first phase is under way, kill the server for 2 s.
        let policies = api(
            &client,
            &ns,
            "AuthorizationPolicy",
            "authorizationpolicies",
            "security.istio.io",
        );
        wait_for("the apply to start", Duration::from_secs(30), || async {
            let n = policies
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .len();
            (n >= 10).then_some(())
        })
        .await;
        let restart = Command::new(
            env!("CARGO_MANIFEST_DIR").to_owned() + "/scripts/env/restart-apiserver.sh",
        )
        .args(["2", env.dir.to_str().unwrap()])
        .status()
        .unwrap();
        assert!(restart.success());
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains("call(s) retried"),
            "the outage went unnoticed: {stderr}"
        );

        // Converged: every desired object once, nothing else; a diff is clean.
        let client = env.client().await;
        for (kind, plural, group) in [
            ("VirtualService", "virtualservices", "networking.istio.io"),
            ("DestinationRule", "destinationrules", "networking.istio.io"),
        ] {
            let n = api(&client, &ns, kind, plural, group)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len();
            assert_eq!(n, services, "{kind}");
        }
        let diff = common::meshplan(&[
            "diff",
            dir.path().to_str().unwrap(),
            "--cluster",
            "--exit-code",
            "--kubeconfig",
            env.sa_kubeconfig.to_str().unwrap(),
            "--inventory",
            &inv,
        ]);
        assert_eq!(
            diff.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&diff.stdout)
        );
    })
    .await;
}
