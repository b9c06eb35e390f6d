//! meshplan.yaml: targets, namespaces, rules and clusters.

use std::collections::BTreeSet;

use super::Doc;
use crate::diagnostic::{Code, Diagnostic};
use crate::parse::{Loaded, Repository};

pub(super) fn config(
    repo: &Repository,
    c: &Loaded<crate::intent::Config>,
    out: &mut Vec<Diagnostic>,
) {
    let cfg = &c.value;
    let mut d = Doc { doc: c, out };
    if cfg.kind != "MeshplanConfig" {
        d.error(
            Code::UnknownKind,
            "kind",
            "meshplan.yaml must have `kind: MeshplanConfig`",
        );
    }
    if cfg.targets.is_empty() {
        d.error_key(
            Code::MissingField,
            "targets",
            "list at least one mesh target (istio, linkerd, gateway-api, consul, cilium)",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, t) in cfg.targets.iter().enumerate() {
        if !seen.insert(*t) {
            d.error(
                Code::DuplicateName,
                format_args!("targets[{i}]"),
                "this target is listed twice",
            );
        }
    }
    if let Some(ns) = &cfg.default_namespace {
        d.name("defaultNamespace", "namespace", ns);
    }
    if let Some(m) = &cfg.metrics {
        if !(m.url.starts_with("http://") || m.url.starts_with("https://")) {
            d.error(
                Code::InvalidValue,
                "metrics.url",
                format!(
                    "metrics URL `{}` must start with http:// or https://",
                    m.url
                ),
            );
        }
        if let Some(w) = &m.workload {
            let valid = w
                .label
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && w.label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                d.error(
                    Code::InvalidValue,
                    "metrics.workload.label",
                    format!(
                        "`{}` is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                        w.label
                    ),
                );
            }
            let bare = w.name.replace("{{service}}", "").replace("{{version}}", "");
            if let Some(c) = bare
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                d.error(
                    Code::InvalidValue,
                    "metrics.workload.name",
                    format!("`{c}` cannot be in a workload's name: letters, digits, `.`, `_`, `-` and the placeholders {{{{service}}}} and {{{{version}}}}"),
                );
            }
            if !w.name.contains("{{version}}") {
                d.error(
                    Code::InvalidValue,
                    "metrics.workload.name",
                    "the workload's name must contain `{{version}}`: without it every version's requests look alike, and a canary would be judged on the stable version's traffic",
                );
            }
        }
    }
    d.unique("cluster", "clusters", "name", &cfg.clusters, |c| {
        c.name.as_str()
    });
    for (i, cluster) in cfg.clusters.iter().enumerate() {
        d.name(format_args!("clusters[{i}].name"), "cluster", &cluster.name);
        for (j, ns) in cluster.namespaces.iter().enumerate() {
            d.name(
                format_args!("clusters[{i}].namespaces[{j}]"),
                "namespace",
                ns,
            );
        }
    }
    if let Some(rev) = cfg.istio.as_ref().and_then(|i| i.revision.as_deref()) {
        // Stamped as the value of the `istio.io/rev` label.
        d.name("istio.revision", "Istio revision", rev);
    }
    policy_folders(repo, &mut d);
}

/// Each folder `policies` names is inside the repository and holds Policy
/// documents that were read: a pull request that deletes the folder, or
/// lists it in `.meshplanignore`, must not silently drop every rule.
fn policy_folders(repo: &Repository, d: &mut Doc<'_, crate::intent::Config>) {
    for (i, folder) in d.doc.value.policies.iter().enumerate() {
        let path = format_args!("policies[{i}]");
        let folder = folder.trim_end_matches('/');
        let inside = !folder.is_empty()
            && !folder.starts_with('/')
            && folder
                .split('/')
                .all(|part| !matches!(part, "" | "." | ".."));
        if !inside {
            d.error(
                Code::InvalidValue,
                path,
                format!("`{folder}` is not a folder inside the repository: meshplan reads nothing outside it"),
            );
            continue;
        }
        let prefix = format!("{folder}/");
        let read = repo
            .policies
            .iter()
            .any(|p| p.file.name.starts_with(&prefix));
        if !read {
            d.error(
                Code::UnknownReference,
                path,
                format!("no Policy document was read from `{folder}`: it is missing, empty, or excluded by a .meshplanignore"),
            )
            .hint = Some("restore the folder, or remove it from `policies` (its rules would silently stop applying)".into());
        }
    }
}
