//! `meshplan apply` and `meshplan diff --cluster` against the real
//! kube-apiserver, run with the least-privilege ServiceAccount of
//! deploy/rbac.yaml (so a missing RBAC rule fails here). Needs the test
//! environment.

mod common;

use common::meshplan_sa;

use std::path::Path;
use std::process::Output;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use meshplan_testenv::{unique_name, with_temp_ns, TestEnv};
use serde_json::json;

/// A repository of intents in one namespace, written to a temporary
/// directory; the builder's calls chain.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new(ns: &str) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meshplan.yaml"), common::config_yaml(ns)).unwrap();
        Repo { dir }
    }

    /// See [`common::service_yaml`].
    fn service(self, name: &str, canary: u32, caller: &str) -> Repo {
        let text = common::service_yaml(name, canary, caller);
        std::fs::write(self.dir.path().join(format!("{name}.yaml")), text).unwrap();
        self
    }

    fn without(self, name: &str) -> Repo {
        std::fs::remove_file(self.dir.path().join(format!("{name}.yaml"))).unwrap();
        self
    }

    fn write_raw(self, file: &str, text: &str) -> Repo {
        std::fs::write(self.dir.path().join(file), text).unwrap();
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn inventory() -> String {
    format!("meshplan-system/{}", unique_name("inv"))
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn virtual_services(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &resource(
            "networking.istio.io",
            "v1",
            "VirtualService",
            "virtualservices",
        ),
    )
}

fn destination_rules(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &resource(
            "networking.istio.io",
            "v1",
            "DestinationRule",
            "destinationrules",
        ),
    )
}

async fn names(api: &Api<DynamicObject>) -> Vec<String> {
    let mut v: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    v.sort();
    v
}

async fn inventory_revision(client: &kube::Client, inv: &str) -> Option<String> {
    let (ns, name) = inv.split_once('/').unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.get(name).await.ok()?.data?.get("revision").cloned()
}

#[tokio::test]
async fn applies_then_a_second_apply_and_a_diff_find_nothing_to_do() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let repo = Repo::new(&ns)
            .service("api", 10, "web")
            .service("db", 0, "api");
        let repo_path = repo.path().to_str().unwrap();
        let inv = inventory();

        let first = meshplan_sa(&["apply", repo_path, "--revision", "r1"], &inv);
        assert_eq!(first.status.code(), Some(0), "{}", text(&first));
        let out = String::from_utf8_lossy(&first.stdout);
        assert!(
            out.contains(&format!("create VirtualService {ns}/api")),
            "{}",
            text(&first)
        );
        assert_eq!(names(&virtual_services(&client, &ns)).await, ["api", "db"]);
        assert_eq!(
            inventory_revision(&client, &inv).await.as_deref(),
            Some("r1")
        );

        let second = meshplan_sa(&["apply", repo_path, "--revision", "r1"], &inv);
        assert_eq!(second.status.code(), Some(0), "{}", text(&second));
        assert!(
            String::from_utf8_lossy(&second.stderr).contains("applied 0 object(s)"),
            "{}",
            text(&second)
        );
        let diff = meshplan_sa(&["diff", repo_path, "--cluster", "--exit-code"], &inv);
        assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
        assert!(
            String::from_utf8_lossy(&diff.stdout).contains("0 to create, 0 to update, 0 to prune")
        );
    })
    .await;
}

#[tokio::test]
async fn an_edit_in_the_cluster_is_reported_as_drift_and_apply_restores_it() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let repo = Repo::new(&ns).service("api", 10, "web");
        let repo_path = repo.path().to_str().unwrap();
        let inv = inventory();
        let out = meshplan_sa(&["apply", repo_path], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));

        // Someone moves the canary to 50 % by hand (kubectl edit's way: an
        // update, under another field manager).
        let vs = virtual_services(&client, &ns);
        let mut live = vs.get("api").await.unwrap();
        live.data["spec"]["http"][0]["route"][0]["weight"] = json!(50);
        live.data["spec"]["http"][0]["route"][1]["weight"] = json!(50);
        let pp = PostParams {
            field_manager: Some("kubectl-edit".into()),
            ..PostParams::default()
        };
        vs.replace("api", &pp, &live).await.unwrap();

        let diff = meshplan_sa(&["diff", repo_path, "--cluster", "--exit-code"], &inv);
        let stdout = String::from_utf8_lossy(&diff.stdout);
        assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
        assert!(
            stdout.contains(&format!("~ update VirtualService {ns}/api")),
            "{stdout}"
        );
        assert!(
            stdout.contains("[drift: edited in the cluster]"),
            "{stdout}"
        );
        assert!(
            stdout.contains("-      weight: 50\n+      weight: 90"),
            "{stdout}"
        );
        assert!(stdout.contains("1 to update (1 drifted)"), "{stdout}");

        let apply = meshplan_sa(&["apply", repo_path], &inv);
        assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
        let healed = vs.get("api").await.unwrap();
        assert_eq!(healed.data["spec"]["http"][0]["route"][0]["weight"], 90);
        let diff = meshplan_sa(&["diff", repo_path, "--cluster", "--exit-code"], &inv);
        assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
    })
    .await;
}

#[tokio::test]
async fn a_new_revision_explains_what_it_changes() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let repo = Repo::new(&ns).service("api", 10, "web");
        let inv = inventory();
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap()], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));

        let repo = repo.service("api", 10, "ops");
        let diff = meshplan_sa(
            &["diff", repo.path().to_str().unwrap(), "--cluster", "--format", "json"],
            &inv,
        );
        assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
        let plan: serde_json::Value = serde_json::from_slice(&diff.stdout).unwrap();
        assert_eq!(plan["counts"]["update"], 1, "{plan:#}");
        assert_eq!(
            plan["summary"],
            json!([{"service": format!("{ns}/api"), "lines": ["access: gains namespace ops", "access: loses namespace web"]}]),
        );
        let md = meshplan_sa(
            &["diff", repo.path().to_str().unwrap(), "--cluster", "--format", "markdown"],
            &inv,
        );
        let md = String::from_utf8_lossy(&md.stdout);
        assert!(md.contains("#### What changes"), "{md}");
        assert!(md.contains("| update | AuthorizationPolicy |"), "{md}");
    })
    .await;
}

#[tokio::test]
async fn removing_an_intent_prunes_its_objects_and_nothing_else() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let repo = Repo::new(&ns)
            .service("api", 0, "web")
            .service("old", 0, "web");
        let inv = inventory();
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap()], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));

        // Beside meshplan's: a hand-made VirtualService, and one wearing
        // meshplan's label without being in its inventory.
        let vs = virtual_services(&client, &ns);
        for (name, labels) in [
            ("hand-made", json!({})),
            (
                "labelled",
                json!({"app.kubernetes.io/managed-by": "meshplan"}),
            ),
        ] {
            let obj = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": name, "labels": labels}, "spec": {"hosts": [name]}});
            vs.patch(
                name,
                &PatchParams::apply("someone-else"),
                &Patch::Apply(&obj),
            )
            .await
            .unwrap();
        }

        let repo = repo.without("old");
        // Without --prune the object stays, and says so.
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap()], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("not pruned (no --prune) VirtualService {ns}/old")),
            "{}",
            text(&out)
        );
        assert_eq!(names(&vs).await, ["api", "hand-made", "labelled", "old"]);

        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap(), "--prune"], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(names(&vs).await, ["api", "hand-made", "labelled"]);
        let drs: Api<DynamicObject> = destination_rules(&client, &ns);
        assert_eq!(names(&drs).await, ["api"]);
        // Pruned from the inventory too: a second prune has nothing to do.
        let out = meshplan_sa(
            &[
                "diff",
                repo.path().to_str().unwrap(),
                "--cluster",
                "--exit-code",
            ],
            &inv,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("VirtualService {ns}/labelled")),
            "the unlisted object is noted: {}",
            text(&out)
        );
    })
    .await;
}

#[tokio::test]
async fn an_existing_object_meshplan_does_not_own_is_refused_and_left_alone() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let vs = virtual_services(&client, &ns);
        let theirs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "api"}, "spec": {"hosts": ["theirs"]}});
        vs.patch(
            "api",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
        let repo = Repo::new(&ns).service("api", 0, "web");
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap()], &inventory());
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let all = text(&out);
        assert!(
            all.contains(&format!("refuse VirtualService {ns}/api")),
            "{all}"
        );
        assert!(all.contains("not managed by meshplan"), "{all}");
        let live = vs.get("api").await.unwrap();
        assert_eq!(live.data["spec"]["hosts"], json!(["theirs"]));
        // The rest of the service was applied.
        let drs: Api<DynamicObject> = destination_rules(&client, &ns);
        assert_eq!(names(&drs).await, ["api"]);
    })
    .await;
}

#[tokio::test]
async fn a_repository_with_errors_applies_nothing_and_keeps_the_last_revision() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let repo = Repo::new(&ns).service("api", 10, "web");
        let inv = inventory();
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap(), "--revision", "good"], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));

        // A new service and a broken one in the same commit.
        let repo = repo.service("new", 0, "web").write_raw(
            "api.yaml",
            "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: api\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n  routes:\n    - name: x\n      destination:\n        weights: [{ version: nope, weight: 150 }]\n",
        );
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap(), "--prune", "--revision", "bad"], &inv);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("apply refused: the repository does not pass check"), "{}", text(&out));
        assert_eq!(names(&virtual_services(&client, &ns)).await, ["api"]);
        let live = virtual_services(&client, &ns).get("api").await.unwrap();
        assert_eq!(live.data["spec"]["http"][0]["route"][1]["weight"], 10);
        assert_eq!(inventory_revision(&client, &inv).await.as_deref(), Some("good"));
    })
    .await;
}

#[tokio::test]
async fn a_server_dry_run_validates_and_changes_nothing() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let repo = Repo::new(&ns).service("api", 10, "web");
        let inv = inventory();
        let out = meshplan_sa(
            &["apply", repo.path().to_str().unwrap(), "--dry-run=server"],
            &inv,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("dry run (server): applied"),
            "{}",
            text(&out)
        );
        assert!(names(&virtual_services(&client, &ns)).await.is_empty());
        assert_eq!(inventory_revision(&client, &inv).await, None);
    })
    .await;
}

#[tokio::test]
async fn the_service_account_is_refused_outside_its_grants_with_a_clear_error() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let repo = Repo::new(&ns).service("api", 0, "web");
        // The role grants ConfigMaps in meshplan-system only.
        let out = meshplan_sa(
            &["apply", repo.path().to_str().unwrap()],
            "kube-system/meshplan",
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Forbidden (403)"), "{err}");
        assert!(err.contains("configmaps"), "{err}");
        // Nothing was applied.
        assert!(names(&virtual_services(&client, &ns)).await.is_empty());
    })
    .await;
}

/// The bundled examples-repo, for every mesh, with the least-privilege
/// role: applies, and a second run is a no-op. (The only test using the
/// examples-repo's fixed namespaces.)
#[tokio::test]
async fn examples_repo_applies_for_every_mesh_and_resyncs_as_a_no_op() {
    let env = TestEnv::get();
    let client = env.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["bookinfo", "payments", "platform"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        namespaces
            .patch(
                ns,
                &PatchParams::apply("meshplan-tests"),
                &Patch::Apply(&obj),
            )
            .await
            .unwrap();
    }
    common::install_smi_crd(&client).await;
    for mesh in common::all_meshes() {
        let inv = inventory();
        let args = [
            "apply",
            "examples-repo",
            "--mesh",
            mesh,
            "--unsupported",
            "warning",
        ];
        let out = meshplan_sa(&args, &inv);
        assert_eq!(out.status.code(), Some(0), "{mesh}: {}", text(&out));
        let again = meshplan_sa(&args, &inv);
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("applied 0 object(s)"),
            "{mesh}: a resync changed something: {}",
            text(&again)
        );
    }
    // The gateway-api backends are real Services.
    let services: Api<Service> = Api::namespaced(client.clone(), "bookinfo");
    assert!(services.get("reviews-v2").await.is_ok());
}

#[tokio::test]
async fn dropping_a_target_prunes_its_objects_and_keeps_the_others() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let config = |targets: &str| {
            format!("apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [{targets}]\ndefaultNamespace: {ns}\nmeshedNamespaces: [web]\n")
        };
        let repo = Repo::new(&ns)
            .service("api", 10, "web")
            // Callers in its own namespace: they get egress to it.
            .service("db", 0, &ns)
            .write_raw("meshplan.yaml", &config("istio, networkpolicy"));
        let repo_path = repo.path().to_str().unwrap();
        let inv = inventory();
        let policies = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &ns,
            &resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
        );

        // Defence in depth: Istio and NetworkPolicy together.
        let out = meshplan_sa(&["apply", repo_path, "--prune"], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(
            names(&policies).await,
            ["api", "db", "meshplan-default-deny", "meshplan-egress"]
        );
        assert_eq!(names(&virtual_services(&client, &ns)).await, ["api", "db"]);

        // NetworkPolicy dropped: its objects go, Istio's stay.
        let repo = repo.write_raw("meshplan.yaml", &config("istio"));
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap(), "--prune"], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("prune NetworkPolicy {ns}/api")),
            "{}",
            text(&out)
        );
        assert!(names(&policies).await.is_empty());
        assert_eq!(names(&virtual_services(&client, &ns)).await, ["api", "db"]);
    })
    .await;
}

#[tokio::test]
async fn apply_and_diff_keep_a_running_rollout_at_its_step() {
    use meshplan_reconciler::rollout::{store, At, Phase, State};
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let rollout = "stable: v1\ncanary: v2\nsteps: [{ weight: 30 }, { gate: manual }, { weight: 100 }]\n";
        let indented: String = rollout.lines().map(|l| format!("    {l}\n")).collect();
        let repo = Repo::new(&ns).write_raw(
            "api.yaml",
            &format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: api\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: api, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: api, version: v2 }} }}\n  rollout:\n{indented}"),
        );
        let repo_path = repo.path().to_str().unwrap();
        let inv = inventory();
        // meshplan run has the rollout at its first step (30 %).
        let r: meshplan_policy_lang::intent::rollout::Rollout =
            serde_saphyr::from_str(rollout).unwrap();
        let fp = meshplan_reconciler::controller::rollouts::fingerprint(&r);
        let mut state = State::new("v2", &fp, 0);
        state.phase = Phase::Progressing;
        state.at = At::Step(0);
        let cluster = meshplan_reconciler::Cluster::from_client(client.clone());
        store::save(&cluster, "meshplan-system", &ns, "api", &state, None)
            .await
            .unwrap();

        let out = meshplan_sa(&["apply", repo_path], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let vs = virtual_services(&client, &ns).get("api").await.unwrap();
        let route = vs.data["spec"]["http"][0]["route"].clone();
        let v2 = route
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["destination"]["subset"] == "v2")
            .unwrap();
        assert_eq!(v2["weight"], 30, "a manual apply moved the canary: {route}");
        let diff = meshplan_sa(&["diff", repo_path, "--cluster", "--exit-code"], &inv);
        assert_eq!(diff.status.code(), Some(0), "a running rollout is no change: {}", text(&diff));
    })
    .await;
}

/// A kubeconfig for a new ServiceAccount granted only `rules` cluster-wide
/// (plus meshplan's own Role in meshplan-system, for the inventory).
async fn restricted_kubeconfig(
    client: &kube::Client,
    rules: serde_json::Value,
    dir: &Path,
) -> std::path::PathBuf {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let name = unique_name("restricted");
    let apply = |api_version: &str, kind: &str, body: serde_json::Value| {
        let client = client.clone();
        let (api_version, kind) = (api_version.to_owned(), kind.to_owned());
        async move {
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let plural = format!("{}s", kind.to_lowercase());
            let ar = resource(group, version, &kind, &plural);
            let ns = body["metadata"]["namespace"].as_str().map(str::to_owned);
            let api: Api<DynamicObject> = match ns {
                Some(ns) => Api::namespaced_with(client, &ns, &ar),
                None => Api::all_with(client, &ar),
            };
            let n = body["metadata"]["name"].as_str().unwrap().to_owned();
            api.patch(
                &n,
                &PatchParams::apply("meshplan-tests"),
                &Patch::Apply(&body),
            )
            .await
            .unwrap();
        }
    };
    apply(
        "v1",
        "ServiceAccount",
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": "meshplan-system"}}),
    )
    .await;
    apply(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules}),
    )
    .await;
    apply(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "meshplan-system"}]}),
    )
    .await;
    apply("rbac.authorization.k8s.io/v1", "RoleBinding", json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding", "metadata": {"name": name, "namespace": "meshplan-system"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "meshplan-leader-election"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "meshplan-system"}]})).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "meshplan-system");
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = sas
        .create_token_request(&name, &PostParams::default(), &tr)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let base = std::fs::read_to_string(&TestEnv::get().sa_kubeconfig).unwrap();
    let kc: String = base
        .lines()
        .map(|l| match l.trim_start().strip_prefix("token: ") {
            Some(_) => format!("{}token: {token}", &l[..l.len() - l.trim_start().len()]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("restricted.kubeconfig");
    std::fs::write(&path, kc).unwrap();
    path
}

#[tokio::test]
async fn a_kind_the_role_does_not_grant_is_refused_with_a_clear_error() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let tmp = tempfile::tempdir().unwrap();
        // Everything of Istio but DestinationRules.
        let kc = restricted_kubeconfig(
            &client,
            json!([
                {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices", "envoyfilters"],
                 "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": ["security.istio.io"], "resources": ["peerauthentications", "authorizationpolicies"],
                 "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            ]),
            tmp.path(),
        )
        .await;
        let repo = Repo::new(&ns).service("api", 0, "web");
        let out = common::meshplan(&[
            "apply",
            repo.path().to_str().unwrap(),
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--inventory",
            &inventory(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("listing networking.istio.io/v1 DestinationRule: Forbidden (403)"), "{err}");
        assert!(err.contains("destinationrules"), "{err}");
        // Refused before anything was applied.
        assert!(names(&virtual_services(&client, &ns)).await.is_empty());
    })
    .await;
}

/// Every `(kind, name, resourceVersion)` of the namespace's
/// VirtualServices and DestinationRules: unchanged, nothing wrote them.
async fn versions(client: &kube::Client, ns: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (kind, api) in [
        ("VirtualService", virtual_services(client, ns)),
        ("DestinationRule", destination_rules(client, ns)),
    ] {
        for o in api.list(&ListParams::default()).await.unwrap().items {
            let m = o.metadata;
            out.push((kind.into(), m.name.unwrap(), m.resource_version.unwrap()));
        }
    }
    out.sort();
    out
}

/// The inventory's ConfigMaps, name → data.
async fn inventory_maps(
    client: &kube::Client,
    inv: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    let at: meshplan_reconciler::InventoryName = inv.parse().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &at.namespace);
    let selector = meshplan_reconciler::inventory::parts::selector(&at);
    let mut maps: std::collections::BTreeMap<_, _> = cms
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| (c.metadata.name.unwrap(), c.data.unwrap_or_default()))
        .collect();
    if let Some(head) = cms.get_opt(&at.name).await.unwrap() {
        maps.insert(at.name.clone(), head.data.unwrap_or_default());
    }
    maps
}

/// A cluster managed with the one-ConfigMap inventory (layout 1, before
/// 2026-12) is taken over by layout 2 without a write to any managed
/// object, and what the old inventory listed is still pruned.
#[tokio::test]
async fn a_layout_1_inventory_is_taken_over_without_touching_managed_objects() {
    let env = TestEnv::get();
    let client = env.client().await;
    with_temp_ns(&client.clone(), |ns| async move {
        let repo = Repo::new(&ns)
            .service("api", 0, "web")
            .service("old", 0, "web");
        let inv = inventory();
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap()], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));

        // Rewritten as layout 1 by meshplan's field manager, as an older
        // meshplan left it: the head alone, its parts gone.
        let at: meshplan_reconciler::InventoryName = inv.parse().unwrap();
        let maps = inventory_maps(&client, &inv).await;
        assert_eq!(maps[&at.name]["layout"], "2");
        let read = meshplan_reconciler::Inventory::from_configmaps(&at, &maps).unwrap();
        assert!(read.objects.iter().any(|o| o.name == "old"), "{read:?}");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &at.namespace);
        for name in maps.keys().filter(|n| **n != at.name) {
            cms.delete(name, &Default::default()).await.unwrap();
        }
        let old = read.to_layout_1_configmap(&at);
        cms.patch(
            &at.name,
            &PatchParams::apply("meshplan").force(),
            &Patch::Apply(&old),
        )
        .await
        .unwrap();
        let maps = inventory_maps(&client, &inv).await;
        assert_eq!(maps.len(), 1);
        assert!(!maps[&at.name].contains_key("layout"));

        let before = versions(&client, &ns).await;
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap()], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(
            versions(&client, &ns).await,
            before,
            "a managed object was written"
        );
        // Nothing changed, so the inventory was not rewritten either; a
        // change rewrites it as layout 2.
        let repo = repo.without("old");
        let out = meshplan_sa(&["apply", repo.path().to_str().unwrap(), "--prune"], &inv);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(names(&virtual_services(&client, &ns)).await, ["api"]);
        let maps = inventory_maps(&client, &inv).await;
        assert_eq!(maps[&at.name]["layout"], "2");
        assert!(!maps[&at.name]["parts"].is_empty());
        let read = meshplan_reconciler::Inventory::from_configmaps(&at, &maps).unwrap();
        assert!(read.objects.iter().all(|o| o.name != "old"), "{read:?}");
        assert!(read.objects.iter().any(|o| o.name == "api"), "{read:?}");
    })
    .await;
}
