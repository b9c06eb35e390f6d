//! Mesh-agnostic checks on the intent graph — what `istioctl analyze` and
//! Kiali find in a cluster, found before merge, without one. All warnings:
//! each is a likely mistake, not an impossibility.
//!
//! | code | finding |
//! |---|---|
//! | MP2006 | a route that can never match: an earlier route matches every request it would |
//! | MP2008 | STRICT mTLS and a caller namespace with no service in the repository (maybe outside the mesh) |
//! | MP2009 | an allow rule that grants nothing an earlier rule does not already grant |
//! | MP2010 | rollout analysis with no metrics source (`metrics.url` in meshplan.yaml), or an SLO on the mesh's standard metrics with no istio, linkerd, consul or cilium target |
//!
//! MP2011 (a latency threshold no bucket bound of the targets' histograms
//! matches) needs each mesh's metric vocabulary: the compiler's `metrics`
//! module reports it, and the compiler's `check_dir` runs both.

use std::collections::BTreeSet;

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::intent::access::{AllowRule, Caller};
use crate::intent::service::MtlsMode;
use crate::intent::{ServiceIntent, Target};
use crate::parse::{Loaded, Repository};
use crate::yaml::Path;

mod routes;

pub fn analyze(repo: &Repository) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let targets: Vec<Target> = repo
        .config
        .as_ref()
        .map(|c| c.value.targets.clone())
        .unwrap_or_default();
    let mut namespaces: BTreeSet<&str> = repo
        .services
        .iter()
        .map(|s| repo.namespace_of(&s.value))
        .collect();
    if let Some(c) = &repo.config {
        namespaces.extend(c.value.meshed_namespaces.iter().map(String::as_str));
    }
    let default_mtls = repo
        .config
        .as_ref()
        .and_then(|c| c.value.defaults.as_ref())
        .and_then(|d| d.mtls)
        .unwrap_or(MtlsMode::Strict);
    // Without a config (a single file checked), nothing is known of the
    // targets' metrics: no MP2014.
    let flavor_known = repo
        .config
        .as_ref()
        .is_none_or(|c| c.value.metrics_flavor().is_some());
    let has_metrics_url = repo
        .config
        .as_ref()
        .and_then(|c| c.value.metrics.as_ref())
        .is_some_and(|m| !m.url.is_empty());
    for s in &repo.services {
        routes::shadowed(s, &mut out);
        let mtls = s.value.spec.mtls.unwrap_or(default_mtls);
        if let Some(access) = &s.value.spec.access {
            for (i, rule) in access.allow.iter().enumerate() {
                if mtls == MtlsMode::Strict {
                    for (j, c) in rule.from.iter().enumerate() {
                        if let Some(ns) = c.namespace.as_deref().filter(|ns| *ns != "*") {
                            if !namespaces.contains(ns) {
                                warn(&mut out, s, Code::MtlsOutsideMesh, &format!("spec.access.allow[{i}].from[{j}].namespace"),
                                    format!("namespace `{ns}` has no service in this repository, and this service requires STRICT mTLS: if `{ns}`'s workloads are not in the mesh (an ingress controller, a batch job), their plain-text calls are refused"),
                                    "if it is in the mesh, list it in meshplan.yaml's `meshedNamespaces`; otherwise mesh it, or set `mtls: permissive` on this service while it migrates");
                            }
                        }
                    }
                }
                if let Some(k) = access.allow[..i]
                    .iter()
                    .position(|earlier| covers(earlier, rule))
                {
                    let line = s
                        .locate(&Path::parse(&format!("spec.access.allow[{k}]")))
                        .span
                        .start
                        .line;
                    warn(&mut out, s, Code::RedundantAllow, &format!("spec.access.allow[{i}]"),
                        format!("this allow rule grants nothing that the rule at line {line} does not already grant"),
                        "remove it, or narrow the earlier rule if this one was meant to be the only grant");
                }
            }
        }
        if targets.contains(&Target::Cilium) {
            cilium_widening(s, &mut out);
        }
        if let Some(r) = &s.value.spec.rollout {
            if r.analysis.is_some() && !flavor_known {
                out.push(
                    Diagnostic::error(
                        Code::NoMetricsFlavor,
                        format!(
                            "the rollout is analysed from the mesh's request metrics, but meshplan does not know those of the targets ({}): it would query metrics that do not exist",
                            targets.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .at(s.locate(&Path::parse("spec.rollout.analysis")))
                    .hint("set `metrics.flavor` in meshplan.yaml to the mesh whose metrics your Prometheus has (istio, linkerd, consul or hubble)"),
                );
            }
            if r.analysis.is_some() && !has_metrics_url {
                warn(&mut out, s, Code::NoMetricSource, "spec.rollout.analysis",
                    "the rollout is analysed from metrics, but meshplan.yaml sets no `metrics.url`: every analysis will be inconclusive and the rollout will never advance".into(),
                    "set `metrics: { provider: prometheus, url: http://prometheus.monitoring:9090 }` in meshplan.yaml");
            }
        }
        let standard_metrics = targets.iter().any(|t| {
            matches!(
                t,
                Target::Istio | Target::Linkerd | Target::Consul | Target::Cilium
            )
        });
        for (i, slo) in s.value.spec.slos.iter().enumerate() {
            if !targets.is_empty() && !standard_metrics && slo.sli.custom.is_none() {
                warn(&mut out, s, Code::NoMetricSource, &format!("spec.slos[{i}].sli"),
                    format!("SLO `{}` is measured from a mesh's standard request metrics, but no target (istio, linkerd, consul, cilium) produces them: it will not be rendered", slo.name),
                    "add an istio, linkerd, consul or cilium target, or give the SLO a `custom` SLI with your own PromQL");
            }
        }
    }
    out
}

fn warn(
    out: &mut Vec<Diagnostic>,
    s: &Loaded<ServiceIntent>,
    code: Code,
    path: &str,
    message: String,
    hint: &str,
) {
    out.push(
        Diagnostic::new(code.as_str(), Severity::Warning, message)
            .at(s.locate(&Path::parse(path)))
            .hint(hint),
    );
}

/// Whether allow rule `a` grants at least everything `b` does.
fn covers(a: &AllowRule, b: &AllowRule) -> bool {
    let callers = b
        .from
        .iter()
        .all(|c| a.from.iter().any(|x| caller_covers(x, c)));
    let subset = |x: &[String], y: &[String]| {
        x.is_empty() || (!y.is_empty() && y.iter().all(|v| x.contains(v)))
    };
    let ports =
        a.ports.is_empty() || (!b.ports.is_empty() && b.ports.iter().all(|p| a.ports.contains(p)));
    callers && ports && subset(&a.methods, &b.methods) && subset(&a.paths, &b.paths)
}

/// Cilium merges the rules of one port: when an L4-only rule and an L7 rule
/// admit the same caller on the same port, the L4 rule's allow-all wins for
/// that caller, and the methods and paths restrict nothing (MP2012).
fn cilium_widening(s: &Loaded<ServiceIntent>, out: &mut Vec<Diagnostic>) {
    let Some(access) = &s.value.spec.access else {
        return;
    };
    let l7 = |r: &AllowRule| !r.methods.is_empty() || !r.paths.is_empty();
    let share_port = |a: &AllowRule, b: &AllowRule| {
        a.ports.is_empty() || b.ports.is_empty() || a.ports.iter().any(|p| b.ports.contains(p))
    };
    for (i, rule) in access.allow.iter().enumerate().filter(|(_, r)| l7(r)) {
        let Some((j, caller)) = access.allow.iter().enumerate().find_map(|(j, other)| {
            if l7(other) || !share_port(rule, other) {
                return None;
            }
            rule.from
                .iter()
                .find(|c| other.from.iter().any(|o| callers_overlap(o, c)))
                .map(|c| (j, c))
        }) else {
            continue;
        };
        let who = caller
            .service
            .as_deref()
            .or(caller.service_account.as_deref())
            .or(caller.namespace.as_deref())
            .unwrap_or("anyone");
        let line = s
            .locate(&Path::parse(&format!("spec.access.allow[{j}]")))
            .span
            .start
            .line;
        warn(out, s, Code::CiliumL7Widening, &format!("spec.access.allow[{i}]"),
            format!("`{who}` is admitted on the same port by this rule's methods/paths and by the L4-only rule at line {line}: Cilium merges the rules per port, so for `{who}` these methods and paths restrict nothing"),
            "narrow the L4-only rule's callers or ports so they do not include the callers this rule restricts, or drop the restriction");
    }
}

/// Whether some workload is a caller both `a` and `b` name.
fn callers_overlap(a: &Caller, b: &Caller) -> bool {
    let ns_of = |c: &Caller| {
        c.service_account
            .as_deref()
            .or(c.service.as_deref())
            .and_then(|v| v.split_once('/'))
            .map(|(ns, _)| ns.to_owned())
    };
    caller_covers(a, b)
        || caller_covers(b, a)
        || a.namespace.is_some() && a.namespace == ns_of(b)
        || b.namespace.is_some() && b.namespace == ns_of(a)
}

fn caller_covers(a: &Caller, b: &Caller) -> bool {
    if a.namespace.as_deref() == Some("*") || a.anyone == Some(true) {
        return true;
    }
    a == b
}

#[cfg(test)]
mod tests {
    use crate::check::check_sources;
    use crate::parse::Sources;

    fn warnings(config: &str, intent: &str) -> Vec<String> {
        let sources = Sources {
            files: vec![
                ("meshplan.yaml".into(), config.into()),
                ("svc.yaml".into(), intent.into()),
            ],
        };
        let (_, report) = check_sources(&sources);
        report
            .diagnostics
            .iter()
            .filter(|d| d.code.starts_with("MP20") && d.code.as_str() >= "MP2006")
            .map(|d| format!("{} {}", d.code, d.message))
            .collect()
    }

    const ISTIO: &str = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\ndefaultNamespace: shop\n";
    const GATEWAY: &str = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio, gateway-api]\ndefaultNamespace: shop\n";

    fn svc(spec: &str) -> String {
        format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: web }}\nspec:\n  ports: [{{ name: http, port: 80, protocol: http }}]\n  versions:\n    - {{ name: v1, labels: {{ app: web, version: v1 }} }}\n    - {{ name: v2, labels: {{ app: web, version: v2 }} }}\n{spec}")
    }

    const BROAD_FIRST: &str = "  routes:\n    - name: api\n      match: [{ path: { prefix: /api } }]\n      destination: { version: v1 }\n    - name: api-v2\n      match: [{ path: { prefix: /api/v2 } }]\n      destination: { version: v2 }\n";

    #[test]
    fn a_route_behind_a_broader_one_is_shadowed() {
        let w = warnings(ISTIO, &svc(BROAD_FIRST));
        assert_eq!(w, ["MP2006 route `api-v2` can never match: route `api` (line 10) comes first and matches every request it would"]);
    }

    #[test]
    fn with_gateway_api_the_broader_route_shadows_too() {
        // Before: MP2007 said Gateway API would pick the later route; the
        // compiler now keeps first match there too.
        let w = warnings(GATEWAY, &svc(BROAD_FIRST));
        assert_eq!(w, ["MP2006 route `api-v2` can never match: route `api` (line 10) comes first and matches every request it would"]);
    }

    #[test]
    fn specific_routes_first_are_fine() {
        let spec = "  routes:\n    - name: api-v2\n      match: [{ path: { prefix: /api/v2 } }]\n      destination: { version: v2 }\n    - name: api\n      match: [{ path: { prefix: /api } }]\n      destination: { version: v1 }\n";
        assert!(warnings(GATEWAY, &svc(spec)).is_empty());
    }

    #[test]
    fn a_caller_namespace_outside_the_repository_under_strict_mtls_is_flagged() {
        let spec = "  access:\n    allow:\n      - from: [{ namespace: ingress }]\n";
        let w = warnings(ISTIO, &svc(spec));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("MP2008 namespace `ingress` has no service in this repository"),
            "{w:?}"
        );
        let permissive =
            "  mtls: permissive\n  access:\n    allow:\n      - from: [{ namespace: ingress }]\n";
        assert!(warnings(ISTIO, &svc(permissive)).is_empty());
        let declared = format!("{ISTIO}meshedNamespaces: [ingress]\n");
        assert!(warnings(&declared, &svc(spec)).is_empty());
    }

    #[test]
    fn a_rule_inside_an_earlier_one_is_redundant() {
        let spec = "  mtls: permissive\n  access:\n    allow:\n      - from: [{ namespace: ops }]\n      - from: [{ namespace: ops }]\n        methods: [GET]\n";
        let w = warnings(ISTIO, &svc(spec));
        assert_eq!(w, ["MP2009 this allow rule grants nothing that the rule at line 12 does not already grant"]);
    }

    const CILIUM: &str = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [cilium, gateway-api]\ndefaultNamespace: shop\n";

    #[test]
    fn an_l7_rule_merged_away_by_cilium_is_flagged_only_for_cilium() {
        // `ops/deployer` runs in `ops`, which the L4-only rule admits on
        // every port.
        let spec = "  mtls: permissive\n  access:\n    allow:\n      - from: [{ serviceAccount: ops/deployer }]\n        methods: [GET]\n      - from: [{ namespace: ops }]\n";
        let w = warnings(CILIUM, &svc(spec));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("MP2012 `ops/deployer` is admitted on the same port"),
            "{w:?}"
        );
        assert!(w[0].contains("L4-only rule at line 14"), "{w:?}");
        assert!(warnings(ISTIO, &svc(spec)).is_empty());
    }

    #[test]
    fn disjoint_callers_or_ports_are_not_widened() {
        let spec = "  mtls: permissive\n  access:\n    allow:\n      - from: [{ serviceAccount: ops/deployer }]\n        methods: [GET]\n      - from: [{ namespace: batch }]\n";
        assert!(warnings(CILIUM, &svc(spec)).is_empty());
    }

    #[test]
    fn analysis_without_a_metrics_url_never_advances() {
        let spec = "  rollout:\n    stable: v1\n    canary: v2\n    steps: [{ weight: 50 }, { weight: 100 }]\n    analysis:\n      successRate: { min: 99 }\n";
        let w = warnings(ISTIO, &svc(spec));
        assert!(
            w.iter()
                .any(|w| w.starts_with("MP2010 the rollout is analysed from metrics")),
            "{w:?}"
        );
        let with_url = format!("{ISTIO}metrics: {{ url: http://prometheus:9090 }}\n");
        assert!(warnings(&with_url, &svc(spec))
            .iter()
            .all(|w| !w.starts_with("MP2010")));
    }

    /// Targets whose metric names meshplan does not know: an error, not a
    /// silent Istio query; `metrics.flavor` says whose names to use.
    #[test]
    fn analysis_on_targets_of_unknown_metrics_needs_a_flavor() {
        let spec = "  rollout:\n    stable: v1\n    canary: v2\n    steps: [{ weight: 50 }, { weight: 100 }]\n    analysis:\n      successRate: { min: 99 }\n";
        for target in ["gateway-api", "smi", "networkpolicy, gateway-api"] {
            let config = format!(
                "{}metrics: {{ url: http://prometheus:9090 }}\n",
                ISTIO.replace("[istio]", &format!("[{target}]"))
            );
            let w = warnings(&config, &svc(spec));
            assert!(
                w.iter()
                    .any(|w| w.starts_with("MP2014 the rollout is analysed")),
                "{target}: {w:?}"
            );
            let flavored = config.replace("url: http", "flavor: linkerd, url: http");
            let w = warnings(&flavored, &svc(spec));
            assert!(
                w.iter().all(|w| !w.starts_with("MP2014")),
                "{target}: {w:?}"
            );
        }
        for target in [
            "istio",
            "linkerd",
            "gateway-api, linkerd",
            "consul",
            "cilium",
        ] {
            let config = format!(
                "{}metrics: {{ url: http://prometheus:9090 }}\n",
                ISTIO.replace("[istio]", &format!("[{target}]"))
            );
            let w = warnings(&config, &svc(spec));
            assert!(
                w.iter().all(|w| !w.starts_with("MP2014")),
                "{target}: {w:?}"
            );
        }
    }

    #[test]
    fn an_slo_without_a_mesh_producing_its_metrics_is_flagged() {
        let spec =
            "  slos:\n    - name: up\n      objective: 99\n      sli: { availability: {} }\n";
        let gw = ISTIO.replace("[istio]", "[gateway-api]");
        let w = warnings(&gw, &svc(spec));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("MP2010 SLO `up` is measured from a mesh's standard request metrics"),
            "{w:?}"
        );
        assert!(warnings(ISTIO, &svc(spec)).is_empty());
    }
}
