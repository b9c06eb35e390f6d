//! A route's destination: one version, weighted versions, or another
//! service of the repository (resolved, and its port chosen).

use std::fmt::Display;

use super::Doc;
use crate::diagnostic::Code;
use crate::intent::service::Destination;
use crate::intent::{PortRef, ServiceIntent};
use crate::resolve::ServiceIndex;
use crate::yaml::did_you_mean;

/// Who is routing: the intent's namespace and name, and how its version
/// names are checked.
pub(super) struct Router<'a, V> {
    pub index: &'a ServiceIndex<'a>,
    pub namespace: &'a str,
    pub name: &'a str,
    pub version_ref: V,
}

pub(super) fn destination<V>(
    d: &mut Doc<'_, ServiceIntent>,
    router: &mut Router<'_, V>,
    base: &dyn Display,
    dest: &Destination,
) where
    V: FnMut(&mut Doc<'_, ServiceIntent>, &dyn Display, &str),
{
    if let Some(svc) = &dest.service {
        if dest.version.is_some() || !dest.weights.is_empty() {
            d.error_key(
                Code::Conflict,
                format_args!("{base}.service"),
                "set one of `version`, `weights` and `service`: a route sends to this service's versions or to another service, not both",
            );
            return;
        }
        other_service(d, router, base, svc, dest.port.as_ref());
        return;
    }
    if dest.port.is_some() {
        d.error_key(
            Code::Conflict,
            format_args!("{base}.port"),
            "`port` chooses a port of `service`: a route to this service's versions uses the port the request came to",
        );
    }
    match (&dest.version, dest.weights.is_empty()) {
        (Some(v), true) => (router.version_ref)(d, &format_args!("{base}.version"), v),
        (None, false) => {
            let mut sum = 0u32;
            for (i, w) in dest.weights.iter().enumerate() {
                (router.version_ref)(d, &format_args!("{base}.weights[{i}].version"), &w.version);
                if w.weight > 100 {
                    d.error(
                        Code::OutOfRange,
                        format_args!("{base}.weights[{i}].weight"),
                        format!("weight {} is over 100", w.weight),
                    );
                }
                sum = sum.saturating_add(w.weight);
            }
            if sum != 100 {
                d.error_key(
                    Code::OutOfRange,
                    format_args!("{base}.weights"),
                    format!("weights sum to {sum}: they must sum to 100"),
                );
            }
        }
        (Some(_), false) => {
            d.error_key(
                Code::Conflict,
                format_args!("{base}.weights"),
                "set `version` or `weights`, not both",
            );
        }
        (None, true) => {
            d.error(
                Code::MissingField,
                base,
                "a destination needs a `version`, `weights` or a `service`",
            );
        }
    }
}

/// `destination.service`: another intent of the repository, with one
/// http, http2 or grpc port to send to.
fn other_service<V>(
    d: &mut Doc<'_, ServiceIntent>,
    router: &Router<'_, V>,
    base: &dyn Display,
    reference: &str,
    port: Option<&PortRef>,
) {
    let (target, ns) = match router.index.resolve(router.namespace, reference) {
        Ok(hit) => hit,
        Err(msg) => {
            let names = router.index.names();
            let hint = did_you_mean(reference.rsplit('/').next().unwrap_or(reference), &names);
            d.error(Code::UnknownReference, format_args!("{base}.service"), msg)
                .hint = hint;
            return;
        }
    };
    let name = &target.metadata.name;
    if ns == router.namespace && name == router.name {
        d.error(
            Code::Conflict,
            format_args!("{base}.service"),
            "a route to this service itself: name one of its versions instead",
        );
        return;
    }
    let l7: Vec<_> = target
        .spec
        .ports
        .iter()
        .filter(|p| p.protocol.is_l7())
        .collect();
    let names = || {
        l7.iter()
            .map(|p| format!("`{}` ({})", p.name, p.port))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match port {
        Some(r) => match target.spec.ports.iter().find(|p| match r {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(n) => &p.name == n,
        }) {
            None => {
                let msg = match l7.is_empty() {
                    true => format!("service `{ns}/{name}` has no such port, and no http, http2 or grpc port to route to"),
                    false => format!("service `{ns}/{name}` has no such port: its http ports are {}", names()),
                };
                d.error(Code::UnknownReference, format_args!("{base}.port"), msg);
            }
            Some(p) if !p.protocol.is_l7() => {
                d.error(
                    Code::Conflict,
                    format_args!("{base}.port"),
                    format!(
                        "port `{}` of `{ns}/{name}` is tcp: a route forwards http requests",
                        p.name
                    ),
                );
            }
            Some(_) => {}
        },
        None if l7.is_empty() => {
            d.error(
                Code::Conflict,
                format_args!("{base}.service"),
                format!("service `{ns}/{name}` has no http, http2 or grpc port to route to"),
            );
        }
        None if l7.len() > 1 => {
            d.error_key(
                Code::MissingField,
                format_args!("{base}.service"),
                format!(
                    "service `{ns}/{name}` has several http ports ({}): say which with `port`",
                    names()
                ),
            );
        }
        None => {}
    }
}
