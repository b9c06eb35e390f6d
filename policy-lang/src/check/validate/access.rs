//! The allow list: each rule's callers, ports, methods and paths.

use std::fmt::Display;

use super::{exactly_one, http_method, is_dns_label, Doc, Item};
use crate::diagnostic::Code;
use crate::intent::access::{Access, Caller};
use crate::intent::service::ServiceSpec;
use crate::intent::{PortRef, ServiceIntent};
use crate::resolve::ServiceIndex;
use crate::yaml::did_you_mean;

pub(super) fn access(
    d: &mut Doc<'_, ServiceIntent>,
    index: &ServiceIndex<'_>,
    ns: &str,
    spec: &ServiceSpec,
    acc: &Access,
    l7: bool,
) {
    for (i, rule) in acc.allow.iter().enumerate() {
        let base = Item("spec.access.allow", i);
        if rule.from.is_empty() {
            d.error_key(
                Code::MissingField,
                format_args!("{base}.from"),
                "an allow rule needs at least one caller in `from`",
            );
        }
        for (j, c) in rule.from.iter().enumerate() {
            caller(d, index, ns, &format_args!("{base}.from[{j}]"), c);
        }
        let mut l7_ports = true;
        for (j, p) in rule.ports.iter().enumerate() {
            let found = spec.ports.iter().find(|sp| match p {
                PortRef::Number(n) => sp.port == *n,
                PortRef::Name(n) => &sp.name == n,
            });
            match found {
                None => {
                    let names: Vec<&str> = spec.ports.iter().map(|p| p.name.as_str()).collect();
                    let shown = match p {
                        PortRef::Number(n) => n.to_string(),
                        PortRef::Name(n) => n.clone(),
                    };
                    let hint = did_you_mean(&shown, &names);
                    d.error(
                        Code::UnknownReference,
                        format_args!("{base}.ports[{j}]"),
                        format!("port `{shown}` is not a port of this service"),
                    )
                    .hint = hint;
                }
                Some(sp) if !sp.protocol.is_l7() => l7_ports = false,
                Some(_) => {}
            }
        }
        if rule.ports.is_empty() && !l7 {
            l7_ports = false;
        }
        if !l7_ports && (!rule.methods.is_empty() || !rule.paths.is_empty()) {
            d.error_key(Code::Conflict, format_args!("{base}.methods"), "methods and paths need http, http2 or grpc ports: a tcp port has no requests to match");
        }
        for (j, m) in rule.methods.iter().enumerate() {
            http_method(d, &format_args!("{base}.methods[{j}]"), m);
        }
        for (j, p) in rule.paths.iter().enumerate() {
            if !(p.starts_with('/') || p == "*") {
                d.error(
                    Code::InvalidValue,
                    format_args!("{base}.paths[{j}]"),
                    format!("path `{p}` must start with `/`"),
                );
            }
        }
    }
}

fn caller(
    d: &mut Doc<'_, ServiceIntent>,
    index: &ServiceIndex<'_>,
    ns: &str,
    path: &dyn Display,
    c: &Caller,
) {
    if !exactly_one(&[
        c.service.is_some(),
        c.namespace.is_some(),
        c.service_account.is_some(),
        c.anyone.is_some(),
    ]) {
        d.error(
            Code::Conflict,
            path,
            "a caller is exactly one of `service`, `namespace`, `serviceAccount`, `anyone`",
        );
        return;
    }
    if c.anyone == Some(false) {
        d.error(
            Code::InvalidValue,
            format_args!("{path}.anyone"),
            "`anyone: false` names no caller: set `anyone: true`, or name the callers",
        );
    }
    if let Some(s) = &c.service {
        if let Err(msg) = index.resolve(ns, s) {
            let names = index.names();
            let hint = did_you_mean(s.rsplit('/').next().unwrap_or(s), &names);
            d.error(
                Code::UnknownReference,
                format_args!("{path}.service"),
                msg.to_string(),
            )
            .hint = hint;
        }
    }
    if let Some(n) = &c.namespace {
        if n != "*" && !is_dns_label(n) {
            d.error(
                Code::InvalidName,
                format_args!("{path}.namespace"),
                format!("namespace `{n}` is not a valid name"),
            );
        }
    }
    if let Some(sa) = &c.service_account {
        match sa.split_once('/') {
            Some((a, b)) if is_dns_label(a) && is_dns_label(b) => {}
            _ => {
                d.error(
                    Code::InvalidValue,
                    format_args!("{path}.serviceAccount"),
                    format!("service account `{sa}` must be written `namespace/name`"),
                );
            }
        }
    }
}
