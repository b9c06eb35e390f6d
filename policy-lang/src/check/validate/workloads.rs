//! Which pods each intent reaches, across the repository: selectors that
//! may select another service's (or another version's) pods (MP2013), pod
//! labels that Kubernetes would refuse (MP2003), and the names of the
//! Services meshplan emits colliding with each other or with a service's
//! own Service (MP2001).
//!
//! A pod is known only by the labels its intent declares for it (the
//! service's selector and its version's labels, `intent::workloads`); the
//! real pod may carry more. So a selector provably misses a pod only when a
//! label both name has different values: `{version: v1}` may select
//! another service's `{app: ratings, version: v1}` pods, `{app: reviews}`
//! cannot. Every selector meshplan emits (AuthorizationPolicy,
//! PeerAuthentication, Linkerd Server, NetworkPolicy, Cilium, the
//! per-version backend Services) is one of the selectors checked here.

use std::collections::HashMap;

use crate::diagnostic::{Code, Diagnostic};
use crate::intent::config::Target;
use crate::intent::labels::Labels;
use crate::intent::workloads::{host, may_select, pod_labels, selector};
use crate::intent::ServiceIntent;
use crate::parse::{Loaded, Repository};
use crate::yaml::Path;

/// One declared pod: the labels its intent says it carries.
struct Pod<'r> {
    service: usize,
    /// `None` for a service that declares no versions.
    version: Option<&'r str>,
    labels: Labels,
}

/// One intent's workloads.
struct Workload<'r> {
    intent: &'r Loaded<ServiceIntent>,
    namespace: &'r str,
    selector: Labels,
}

/// Runs the repository-wide workload checks.
pub(super) fn workloads(repo: &Repository, out: &mut Vec<Diagnostic>) {
    let mut by_namespace: std::collections::BTreeMap<&str, Vec<Workload<'_>>> =
        std::collections::BTreeMap::new();
    // A second intent of one name is reported as a duplicate; its pods
    // are the first's.
    let mut seen = std::collections::HashSet::new();
    for s in &repo.services {
        if !seen.insert((repo.namespace_of(&s.value), s.value.metadata.name.as_str())) {
            continue;
        }
        let w = Workload {
            intent: s,
            namespace: repo.namespace_of(&s.value),
            selector: selector(&s.value),
        };
        labels_valid(&w, out);
        by_namespace.entry(w.namespace).or_default().push(w);
    }
    let backends = emits_backend_services(repo);
    for services in by_namespace.values() {
        let pods = pods(services, out);
        overlaps(services, &pods, out);
        service_names(services, backends, out);
    }
}

/// Whether a target of the repository emits per-version backend Services
/// (`<service>-<version>`).
fn emits_backend_services(repo: &Repository) -> bool {
    repo.config.as_ref().is_some_and(|c| {
        c.value.targets.iter().any(|t| match t {
            Target::Linkerd | Target::GatewayApi | Target::Smi => true,
            Target::Istio | Target::Consul | Target::Cilium | Target::NetworkPolicy => false,
        })
    })
}

/// Every declared pod of `services`; reports a version whose labels
/// contradict the service's explicit selector.
fn pods<'r>(services: &[Workload<'r>], out: &mut Vec<Diagnostic>) -> Vec<Pod<'r>> {
    let mut pods = Vec::new();
    for (i, w) in services.iter().enumerate() {
        let spec = &w.intent.value.spec;
        if spec.versions.is_empty() {
            pods.push(Pod {
                service: i,
                version: None,
                labels: w.selector.clone(),
            });
        }
        for (j, v) in spec.versions.iter().enumerate() {
            if let Some((k, val)) = v
                .labels
                .iter()
                .find(|(k, val)| w.selector.get(k).is_some_and(|s| s != *val))
            {
                out.push(
                    Diagnostic::error(
                        Code::Conflict,
                        format!(
                            "version `{}` labels its pods `{k}: {val}`, but the service's selector says `{k}: {}`: the version's pods would not be the service's",
                            v.name,
                            w.selector.get(k).map(String::as_str).unwrap_or_default()
                        ),
                    )
                    .at(w.intent.locate(&Path::parse(&format!("spec.versions[{j}].labels.{k}")))),
                );
            }
            pods.push(Pod {
                service: i,
                version: Some(&v.name),
                labels: pod_labels(&w.selector, &v.labels),
            });
        }
    }
    pods
}

/// Reports each selector that may select a pod of another service, and
/// each version whose labels may select another version's pods.
fn overlaps(services: &[Workload<'_>], pods: &[Pod<'_>], out: &mut Vec<Diagnostic>) {
    // Pods by label, and the pods lacking a key: a selector's candidates
    // are found through its most selective key, not by trying every pod.
    let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    let mut with_key: HashMap<&str, usize> = HashMap::new();
    for (p, pod) in pods.iter().enumerate() {
        for (k, v) in pod.labels.iter() {
            by_label.entry((k, v)).or_default().push(p);
            *with_key.entry(k).or_default() += 1;
        }
    }
    let candidates = |sel: &Labels| -> Vec<usize> {
        let best = sel.iter().min_by_key(|(k, v)| {
            let matching = by_label.get(&(k.as_str(), v.as_str())).map_or(0, Vec::len);
            matching + pods.len() - with_key.get(k.as_str()).copied().unwrap_or(0)
        });
        match best {
            // Pods lacking the key are few in practice (every pod has `app`).
            Some((k, v)) => {
                let mut c = by_label
                    .get(&(k.as_str(), v.as_str()))
                    .cloned()
                    .unwrap_or_default();
                if with_key.get(k.as_str()).copied().unwrap_or(0) < pods.len() {
                    c.extend((0..pods.len()).filter(|p| !pods[*p].labels.contains_key(k)));
                    c.sort_unstable();
                }
                c
            }
            None => (0..pods.len()).collect(),
        }
    };
    for (i, w) in services.iter().enumerate() {
        let mut reported = std::collections::BTreeSet::new();
        for p in candidates(&w.selector) {
            let pod = &pods[p];
            if pod.service == i
                || !may_select(&w.selector, &pod.labels)
                || !reported.insert(pod.service)
            {
                continue;
            }
            out.push(overlap(w, &services[pod.service], pod));
        }
        versions_overlap(w, out);
    }
}

fn overlap(w: &Workload<'_>, other: &Workload<'_>, pod: &Pod<'_>) -> Diagnostic {
    let spec = &w.intent.value.spec;
    let path = if spec.selector.is_some() {
        "spec.selector"
    } else if spec.versions.is_empty() {
        "metadata.name"
    } else {
        "spec.versions"
    };
    let whose = match pod.version {
        Some(v) => format!("version `{v}` of `{}`", other.intent.value.metadata.name),
        None => format!("`{}`", other.intent.value.metadata.name),
    };
    let how = if spec.selector.is_some() {
        "the selector"
    } else {
        "the selector derived from the versions' shared labels"
    };
    Diagnostic::error(
        Code::SelectorOverlap,
        format!(
            "{how} {} of `{}/{}` may also select the pods of {whose} (declared with {}): its authorization, mTLS and routing would reach them",
            show(&w.selector),
            w.namespace,
            w.intent.value.metadata.name,
            show(&pod.labels),
        ),
    )
    .at(w.intent.locate(&Path::parse(path)))
    .related(
        other.intent.locate(&Path::parse("metadata.name")),
        "the other service",
    )
    .hint(format!(
        "set `spec.selector` to labels only this service's pods carry (say `app: {}`), and give every version's labels a key that tells the services apart",
        host(&w.intent.value)
    ))
}

/// A version's labels selecting another version's pods: the per-version
/// Services and subsets would mix them.
fn versions_overlap(w: &Workload<'_>, out: &mut Vec<Diagnostic>) {
    let versions = &w.intent.value.spec.versions;
    for (i, v) in versions.iter().enumerate() {
        let own = pod_labels(&w.selector, &v.labels);
        let Some(other) = versions.iter().enumerate().find(|(j, o)| {
            *j != i && o.labels != v.labels && may_select(&own, &pod_labels(&w.selector, &o.labels))
        }) else {
            continue;
        };
        out.push(
            Diagnostic::error(
                Code::SelectorOverlap,
                format!(
                    "version `{}` ({}) may also select the pods of version `{}` ({})",
                    v.name,
                    show(&own),
                    other.1.name,
                    show(&pod_labels(&w.selector, &other.1.labels))
                ),
            )
            .at(w.intent.locate(&Path::parse(&format!("spec.versions[{i}].labels"))))
            .hint("give each version a label the others set to a different value (`version: v1`, `version: v2`)"),
        );
    }
}

/// The Services of a namespace: each intent's own (its `spec.service`)
/// and the per-version backend Services meshplan emits
/// (`<service>-<version>`), when a target emits them. Two of them with one
/// name would take over each other's pods.
fn service_names(services: &[Workload<'_>], backends: bool, out: &mut Vec<Diagnostic>) {
    let mut names: HashMap<String, (usize, Option<&str>)> = HashMap::new();
    let own = services
        .iter()
        .enumerate()
        .map(|(i, w)| (i, None, host(&w.intent.value).to_owned()));
    let backends = services.iter().enumerate().flat_map(|(i, w)| {
        let h = host(&w.intent.value);
        w.intent
            .value
            .spec
            .versions
            .iter()
            .filter(move |_| backends)
            .map(move |v| (i, Some(v.name.as_str()), format!("{h}-{}", v.name)))
    });
    for (i, version, name) in own.chain(backends) {
        let w = &services[i];
        if let Some(v) = version {
            if name.len() > 63 {
                out.push(
                    Diagnostic::error(
                        Code::InvalidName,
                        format!(
                            "the Service of version `{v}`, `{name}`, is longer than 63 characters"
                        ),
                    )
                    .at(w.intent.locate(&Path::parse("spec.versions"))),
                );
            }
        }
        match names.get(&name) {
            Some((first, first_version)) if *first != i => {
                out.push(collision(
                    services,
                    &name,
                    (i, version),
                    (*first, *first_version),
                ));
            }
            Some(_) => {}
            None => {
                names.insert(name, (i, version));
            }
        }
    }
}

fn collision(
    services: &[Workload<'_>],
    name: &str,
    (i, version): (usize, Option<&str>),
    (first, first_version): (usize, Option<&str>),
) -> Diagnostic {
    let what = |s: usize, v: Option<&str>| {
        let n = &services[s].intent.value.metadata.name;
        match v {
            Some(v) => format!("the per-version Service of `{n}` version `{v}`"),
            None => format!("the Service of `{n}`"),
        }
    };
    let w = &services[i];
    let path = match version {
        Some(_) => "spec.versions",
        None if w.intent.value.spec.service.is_some() => "spec.service",
        None => "metadata.name",
    };
    Diagnostic::error(
        Code::DuplicateName,
        format!(
            "Service `{}/{name}` is {} and also {}",
            w.namespace,
            what(i, version),
            what(first, first_version)
        ),
    )
    .at(w.intent.locate(&Path::parse(path)))
    .related(
        services[first].intent.locate(&Path::parse("metadata.name")),
        "the other service",
    )
    .hint(match (version, first_version) {
        (None, None) => "one Kubernetes Service has one intent: merge the two, or name another Service in `spec.service`",
        _ => "rename a service or a version: meshplan names each version's Service `<service>-<version>`",
    })
}

/// Pod labels Kubernetes accepts: keys are an optional DNS subdomain
/// prefix and a name of at most 63 characters; values at most 63, both
/// alphanumeric at the ends with `-`, `_`, `.` inside.
fn labels_valid(w: &Workload<'_>, out: &mut Vec<Diagnostic>) {
    let spec = &w.intent.value.spec;
    let sets = spec
        .selector
        .iter()
        .map(|l| ("spec.selector".to_owned(), l))
        .chain(
            spec.versions
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("spec.versions[{i}].labels"), &v.labels)),
        );
    for (path, labels) in sets {
        for (k, v) in labels.iter() {
            let problem = if !label_key(k) {
                Some(format!("label key `{}` is not valid", k.escape_debug()))
            } else if !label_value(v) {
                Some(format!(
                    "label value `{}` of `{k}` is not valid",
                    v.escape_debug()
                ))
            } else {
                None
            };
            if let Some(message) = problem {
                out.push(
                    Diagnostic::error(Code::InvalidName, message)
                        .at(w.intent.locate(&Path::parse(&format!("{path}.{k}"))))
                        .hint("Kubernetes labels: at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit (values may be empty); a key may have a DNS prefix, `example.com/name`"),
                );
            }
        }
    }
}

fn label_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

fn label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix
        .is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(super::is_dns_label));
    prefix_ok && !name.is_empty() && label_value(name)
}

fn show(labels: &Labels) -> String {
    let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", body.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_syntax_is_kubernetes_syntax() {
        assert!(label_key("app"));
        assert!(label_key("app.kubernetes.io/name"));
        assert!(!label_key("has space"));
        assert!(!label_key("/name"));
        assert!(!label_key("Example.com/name"));
        assert!(label_value(""));
        assert!(label_value("v1.2_3"));
        assert!(!label_value("a\nb"));
        assert!(!label_value("-a"));
    }
}
