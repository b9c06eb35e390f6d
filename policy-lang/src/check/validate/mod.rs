//! Semantic validation of well-typed documents: names, duplicates,
//! references, ranges and contradictions. Each finding points at the node by
//! its path in the document.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;

use crate::diagnostic::{Code, Diagnostic};
use crate::intent::service::StringMatch;
use crate::intent::ServiceIntent;
use crate::parse::{Loaded, Repository};
use crate::resolve::ServiceIndex;
use crate::yaml::{did_you_mean, Path};

mod access;
mod config;
mod doc;
mod ports;
mod resilience;
mod rollout;
mod routes;
mod slo;
mod workloads;

use doc::{Doc, Field, Item};

/// Whether exactly one of `flags` is set (a choice of fields).
fn exactly_one(flags: &[bool]) -> bool {
    flags.iter().filter(|b| **b).count() == 1
}

pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Runs every validation; returns the diagnostics.
pub fn validate(repo: &Repository) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let index = ServiceIndex::new(repo);
    // Duplicate services across files: the second is reported.
    // A hash map of borrowed names: 10,000 services are checked here.
    let mut seen: HashMap<(&str, &str), &Loaded<ServiceIntent>> =
        HashMap::with_capacity(repo.services.len());
    for s in &repo.services {
        let key = (repo.namespace_of(&s.value), s.value.metadata.name.as_str());
        if let Some(first) = seen.get(&key) {
            let loc = first.locate(&Path::parse("metadata.name"));
            out.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!("duplicate ServiceIntent `{}/{}`", key.0, key.1),
                )
                .at(s.locate(&Path::parse("metadata.name")))
                .related(loc, "first defined here"),
            );
        } else {
            seen.insert(key, s);
        }
        service(repo, &index, s, &mut out);
    }
    let mut policy_names: BTreeMap<&str, &Loaded<crate::intent::Policy>> = BTreeMap::new();
    for p in &repo.policies {
        let name = p.value.metadata.name.as_str();
        if let Some(first) = policy_names.get(name) {
            out.push(
                Diagnostic::error(Code::DuplicateName, format!("duplicate Policy `{name}`"))
                    .at(p.locate(&Path::parse("metadata.name")))
                    .related(
                        first.locate(&Path::parse("metadata.name")),
                        "first defined here",
                    ),
            );
        } else {
            policy_names.insert(name, p);
        }
        let mut d = Doc {
            doc: p,
            out: &mut out,
        };
        d.name("metadata.name", "policy name", name);
        d.unique("rule", "spec.rules", "name", &p.value.spec.rules, |r| {
            r.name.as_str()
        });
        for (i, r) in p.value.spec.rules.iter().enumerate() {
            d.name(format_args!("spec.rules[{i}].name"), "rule name", &r.name);
            if r.message.is_some() && r.message_expression.is_some() {
                d.error_key(
                    Code::Conflict,
                    format_args!("spec.rules[{i}].messageExpression"),
                    "set `message` or `messageExpression`, not both",
                );
            }
        }
    }
    if let Some(c) = &repo.config {
        config::config(repo, c, &mut out);
    }
    workloads::workloads(repo, &mut out);
    out
}

fn service(
    repo: &Repository,
    index: &ServiceIndex<'_>,
    s: &Loaded<ServiceIntent>,
    out: &mut Vec<Diagnostic>,
) {
    let spec = &s.value.spec;
    let ns = repo.namespace_of(&s.value);
    let mut d = Doc { doc: s, out };
    d.name("metadata.name", "service name", &s.value.metadata.name);
    if let Some(n) = &s.value.metadata.namespace {
        d.name("metadata.namespace", "namespace", n);
    }
    if let Some(sa) = &spec.service_account {
        d.name("spec.serviceAccount", "service account", sa);
    }
    if let Some(host) = &spec.service {
        // It names objects and, with `render --out`, files.
        d.name("spec.service", "Service name", host);
    }
    ports::ports(&mut d, &spec.ports);

    // Versions.
    let versions: Vec<&str> = spec.versions.iter().map(|v| v.name.as_str()).collect();
    d.unique("version", "spec.versions", "name", &spec.versions, |v| {
        v.name.as_str()
    });
    for (i, v) in spec.versions.iter().enumerate() {
        d.name(
            format_args!("spec.versions[{i}].name"),
            "version name",
            &v.name,
        );
        if v.labels.is_empty() {
            d.error_key(
                Code::MissingField,
                format_args!("spec.versions[{i}].labels"),
                format!(
                    "version `{}` selects no pods: give it at least one label",
                    v.name
                ),
            );
        }
        for (j, w) in spec.versions.iter().enumerate().take(i) {
            if !v.labels.is_empty() && v.labels == w.labels {
                d.error(
                    Code::Conflict,
                    format_args!("spec.versions[{i}].labels"),
                    format!(
                        "versions `{}` and `{}` select the same pods",
                        w.name, v.name
                    ),
                )
                .hint = Some(format!("labels of spec.versions[{j}] are identical"));
            }
        }
    }
    let mut version_ref = |d: &mut Doc<'_, ServiceIntent>, path: &dyn Display, v: &str| {
        if !versions.contains(&v) {
            let msg = if versions.is_empty() {
                format!("version `{v}` is not defined: this service declares no versions")
            } else {
                format!(
                    "version `{v}` is not defined: versions are {}",
                    versions
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let hint = did_you_mean(v, &versions);
            d.error(Code::UnknownReference, path, msg).hint = hint;
        }
    };
    if let Some(v) = &spec.default_version {
        version_ref(&mut d, &"spec.defaultVersion", v);
    }

    // Routes.
    d.unique("route", "spec.routes", "name", &spec.routes, |r| {
        r.name.as_str()
    });
    let l7 = spec.ports.iter().any(|p| p.protocol.is_l7());
    let mut router = routes::Router {
        index,
        namespace: ns,
        name: &s.value.metadata.name,
        version_ref: &mut version_ref,
    };
    for (i, r) in spec.routes.iter().enumerate() {
        routes::route(&mut d, &mut router, Item("spec.routes", i), r, l7);
    }

    if let Some(res) = &spec.resilience {
        resilience::resilience(&mut d, res, l7);
    }
    if let Some(f) = &spec.faults {
        faults(&mut d, "spec.faults", f);
    }
    if let Some(m) = &spec.mirror {
        version_ref(&mut d, &"spec.mirror.version", &m.version);
        if let Some(p) = m.percentage {
            d.percent("spec.mirror.percentage", "mirror percentage", p);
        }
    }
    if let Some(rl) = &spec.rate_limit {
        resilience::rate_limit(&mut d, rl, &spec.ports, l7);
    }

    // Rollout.
    if let Some(ro) = &spec.rollout {
        rollout::rollout(&mut d, spec, ro, l7, &mut version_ref);
    }

    // Access.
    if let Some(acc) = &spec.access {
        access::access(&mut d, index, ns, spec, acc, l7);
    }

    // SLOs.
    slo::slos(&mut d, &spec.slos);
}

fn string_match(d: &mut Doc<'_, ServiceIntent>, path: &dyn Display, m: &StringMatch) {
    if !exactly_one(&[m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]) {
        d.error(
            Code::Conflict,
            path,
            "a match is exactly one of `exact`, `prefix`, `regex`",
        );
    }
    for (field, value) in [
        ("exact", &m.exact),
        ("prefix", &m.prefix),
        ("regex", &m.regex),
    ] {
        let Some(value) = value else { continue };
        // A request cannot carry these in a header, a path or a query:
        // the proxy rejects the object, or the match never holds.
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            d.error(
                Code::InvalidValue,
                format_args!("{path}.{field}"),
                format!(
                    "`{field}` holds the control character U+{:04X}: no request carries it",
                    u32::from(c)
                ),
            );
        }
    }
    if let Some(re) = &m.regex {
        // The meshes' engines (Envoy's RE2, Linkerd's and Consul's Rust
        // and Go engines) share this syntax: no backreferences or
        // look-around. The size limit keeps a hostile pattern cheap.
        if let Err(e) = regex::RegexBuilder::new(re).size_limit(1 << 20).build() {
            let why = e.to_string();
            let why = why.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(&why);
            d.error(
                Code::InvalidValue,
                format_args!("{path}.regex"),
                format!(
                    "`regex` is not a valid regular expression: {}",
                    why.trim_start_matches("error: ")
                ),
            );
        }
    }
}

/// An HTTP field name: a `token` of RFC 9110.
fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn http_method(d: &mut Doc<'_, ServiceIntent>, path: &dyn Display, m: &str) {
    if !METHODS.contains(&m) {
        let hint = did_you_mean(m, METHODS);
        d.error(
            Code::InvalidValue,
            path,
            format!(
                "`{m}` is not an HTTP method: expected one of {}",
                METHODS.join(", ")
            ),
        )
        .hint = hint;
    }
}

/// Percentages and the abort status of `faults` at `path`.
fn faults(d: &mut Doc<'_, ServiceIntent>, path: &str, f: &crate::intent::service::Faults) {
    if let Some(delay) = &f.delay {
        d.percent(
            format_args!("{path}.delay.percentage"),
            "delay percentage",
            delay.percentage,
        );
    }
    if let Some(abort) = &f.abort {
        d.percent(
            format_args!("{path}.abort.percentage"),
            "abort percentage",
            abort.percentage,
        );
        if !(200..=599).contains(&abort.http_status) {
            d.error(
                Code::OutOfRange,
                format_args!("{path}.abort.httpStatus"),
                format!(
                    "HTTP status {} is not between 200 and 599",
                    abort.http_status
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
