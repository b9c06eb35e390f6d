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
    }
    d.unique("cluster", "clusters", "name", &cfg.clusters, |c| {
        c.name.as_str()
    });
    let _ = repo;
}
