//! Generated repositories: a few services in two namespaces with random
//! versions, routes (paths, methods, headers, query parameters, weights,
//! timeouts, faults), resilience, mTLS modes and allow lists, each held to
//! the equivalence property on every target.

use proptest::prelude::*;

const PATHS: &[&str] = &["/", "/a", "/a/b", "/b/", "/api/v1"];
const EXACT_PATHS: &[&str] = &["/a", "/c", "/login"];
const ALLOW_PATHS: &[&str] = &["/a/*", "/login", "/c*", "/api/*"];

#[derive(Clone, Debug)]
struct Svc {
    namespace: usize,
    versions: usize,
    routes: Vec<RouteSpec>,
    timeout: Option<u32>,
    retries: Option<(u32, usize)>,
    mtls: usize,
    access: Option<Vec<RuleSpec>>,
}

#[derive(Clone, Debug)]
struct RouteSpec {
    items: Vec<ItemSpec>,
    /// A version, or a 30/70 split of the first two.
    split: bool,
    version: usize,
    timeout: Option<u32>,
    fault: bool,
    /// To another service (by index, never itself) instead of a version.
    to_other: Option<usize>,
}

#[derive(Clone, Debug)]
struct ItemSpec {
    path: Option<(bool, usize)>,
    method: Option<bool>,
    header: Option<bool>,
    query: bool,
}

#[derive(Clone, Debug)]
struct RuleSpec {
    from: usize,
    by_namespace: bool,
    methods: bool,
    paths: Vec<usize>,
}

fn item() -> impl Strategy<Value = ItemSpec> {
    (
        proptest::option::of((any::<bool>(), 0..PATHS.len())),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(path, method, header, query)| ItemSpec {
            path,
            method,
            header,
            query,
        })
}

fn route() -> impl Strategy<Value = RouteSpec> {
    (
        proptest::collection::vec(item(), 1..3),
        any::<bool>(),
        0..3usize,
        proptest::option::of(1..3u32),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.15, 0..3usize),
    )
        .prop_map(
            |(items, split, version, timeout, fault, to_other)| RouteSpec {
                items,
                split,
                version,
                timeout,
                fault,
                to_other,
            },
        )
}

fn rule() -> impl Strategy<Value = RuleSpec> {
    (
        0..3usize,
        proptest::bool::weighted(0.3),
        any::<bool>(),
        proptest::collection::vec(0..ALLOW_PATHS.len(), 0..3),
    )
        .prop_map(|(from, by_namespace, methods, paths)| RuleSpec {
            from,
            by_namespace,
            methods,
            paths,
        })
}

fn svc() -> impl Strategy<Value = Svc> {
    (
        0..2usize,
        1..4usize,
        proptest::collection::vec(route(), 0..4),
        proptest::option::of(3..6u32),
        proptest::option::of((1..4u32, 0..3usize)),
        0..3usize,
        proptest::option::of(proptest::collection::vec(rule(), 0..3)),
    )
        .prop_map(
            |(namespace, versions, routes, timeout, retries, mtls, access)| Svc {
                namespace,
                versions,
                routes,
                timeout,
                retries,
                mtls,
                access,
            },
        )
}

/// The YAML of a repository of `svcs`.
fn repository(svcs: &[Svc]) -> Vec<(String, String)> {
    let mut files = vec![(
        "meshplan.yaml".to_owned(),
        "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\nmeshedNamespaces: [a, b]\nunsupported: warning\ngatewayApi: { channel: experimental }\n".to_owned(),
    )];
    for (i, s) in svcs.iter().enumerate() {
        files.push((format!("s{i}.yaml"), intent(i, s, svcs)));
    }
    files
}

fn intent(i: usize, s: &Svc, svcs: &[Svc]) -> String {
    let ns = ["a", "b"][s.namespace];
    let mtls = ["strict", "permissive", "unmanaged"][s.mtls];
    let mut y = format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: s{i}, namespace: {ns} }}\nspec:\n  mtls: {mtls}\n  ports:\n    - {{ name: http, port: 80, protocol: http }}\n  versions:\n");
    for v in 0..s.versions {
        y += &format!("    - {{ name: v{v}, labels: {{ app: s{i}, version: v{v} }} }}\n");
    }
    if !s.routes.is_empty() {
        y += "  routes:\n";
    }
    for (r, route) in s.routes.iter().enumerate() {
        y += &routes_yaml(r, route, s.versions, other(i, route, svcs).as_deref());
    }
    if s.timeout.is_some() || s.retries.is_some() {
        y += "  resilience:\n";
        if let Some(t) = s.timeout {
            y += &format!("    timeout: {}s\n", t * 4);
        }
        if let Some((attempts, on)) = s.retries {
            let on = ["[5xx]", "[gateway-error]", "[5xx, gateway-error]"][on];
            y += &format!(
                "    retries: {{ attempts: {attempts}, perTryTimeout: 1s, retryOn: {on} }}\n"
            );
        }
    }
    if let Some(rules) = &s.access {
        y += &access_yaml(rules, svcs);
    }
    y
}

/// The reference (`namespace/name`) of the service `route` sends to, if
/// another.
fn other(i: usize, route: &RouteSpec, svcs: &[Svc]) -> Option<String> {
    let k = route.to_other?;
    let j = (i + 1 + k % svcs.len().saturating_sub(1).max(1)) % svcs.len();
    (j != i).then(|| format!("{}/s{j}", ["a", "b"][svcs[j].namespace]))
}

fn routes_yaml(r: usize, route: &RouteSpec, versions: usize, other: Option<&str>) -> String {
    let mut y = format!("    - name: r{r}\n      match:\n");
    for it in &route.items {
        let mut conds = Vec::new();
        if let Some((prefix, p)) = it.path {
            conds.push(if prefix {
                format!("path: {{ prefix: \"{}\" }}", PATHS[p])
            } else {
                format!(
                    "path: {{ exact: \"{}\" }}",
                    EXACT_PATHS[p % EXACT_PATHS.len()]
                )
            });
        }
        if let Some(get) = it.method {
            conds.push(format!("method: {}", if get { "GET" } else { "POST" }));
        }
        if let Some(exact) = it.header {
            conds.push(if exact {
                "headers: { x-user: { exact: jason } }".into()
            } else {
                "headers: { x-user: { prefix: j } }".into()
            });
        }
        if it.query {
            conds.push("queryParams: { debug: { exact: \"1\" } }".into());
        }
        if conds.is_empty() {
            conds.push("method: GET".into());
        }
        y += &format!("        - {{ {} }}\n", conds.join(", "));
    }
    if let Some(o) = other {
        y += &format!("      destination: {{ service: {o} }}\n");
    } else if route.split && versions >= 2 {
        y += "      destination:\n        weights:\n          - { version: v0, weight: 30 }\n          - { version: v1, weight: 70 }\n";
    } else {
        y += &format!(
            "      destination: {{ version: v{} }}\n",
            route.version % versions
        );
    }
    if let Some(t) = route.timeout {
        y += &format!("      timeout: {t}s\n");
    }
    if route.fault {
        y += "      faults: { abort: { percentage: 10, httpStatus: 503 } }\n";
    }
    y
}

fn access_yaml(rules: &[RuleSpec], svcs: &[Svc]) -> String {
    let mut y = String::from("  access:\n    allow:\n");
    if rules.is_empty() {
        y += "      []\n";
    }
    for r in rules {
        let from = r.from % svcs.len();
        let ns = ["a", "b"][svcs[from].namespace];
        // Every fifth rule admits anyone (a public path, a probe).
        let caller = if r.from == 2 && r.paths.len() == 1 {
            "anyone: true".to_owned()
        } else if r.by_namespace {
            format!("namespace: {ns}")
        } else {
            format!("service: {ns}/s{from}")
        };
        y += &format!("      - from: [{{ {caller} }}]\n");
        if r.methods {
            y += "        methods: [GET]\n";
        }
        if !r.paths.is_empty() {
            let mut paths: Vec<&str> = r.paths.iter().map(|p| ALLOW_PATHS[*p]).collect();
            paths.sort();
            paths.dedup();
            y += &format!("        paths: [{}]\n", paths.join(", "));
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64).min(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_intents_mean_the_same_on_every_target(svcs in proptest::collection::vec(svc(), 1..4)) {
        let files = repository(&svcs);
        if let Some(d) = super::generated_divergences(files.clone()) {
            prop_assert!(
                d.is_empty(),
                "{} divergence(s), first: {}\nrepository:\n{}",
                d.len(),
                d.iter().take(10).cloned().collect::<Vec<_>>().join("\n"),
                files.iter().map(|(n, t)| format!("# {n}\n{t}")).collect::<String>()
            );
        }
    }
}
