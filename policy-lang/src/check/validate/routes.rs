//! Routes: each route's name, action (a destination — one version,
//! weighted versions, or another service of the repository, resolved and
//! its port chosen — or a redirect), rewrite, faults, mirror and matches.

use std::fmt::Display;

use super::{faults, http_method, is_http_token, string_match, Doc, Field, Item};
use crate::diagnostic::Code;
use crate::intent::service::{Destination, Match, Route};
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

pub(super) fn route<V>(
    d: &mut Doc<'_, ServiceIntent>,
    router: &mut Router<'_, V>,
    base: Item<&str>,
    r: &Route,
    l7: bool,
) where
    V: FnMut(&mut Doc<'_, ServiceIntent>, &dyn Display, &str),
{
    d.name(format_args!("{base}.name"), "route name", &r.name);
    if !l7 {
        d.error_key(
            Code::Conflict,
            base,
            "routes need an http, http2 or grpc port: this service only has tcp ports",
        );
    }
    match (&r.destination, &r.redirect) {
        (Some(_), Some(_)) => {
            d.error_key(
                Code::Conflict,
                format_args!("{base}.redirect"),
                "a route has a `destination` or a `redirect`, not both",
            );
        }
        (None, None) => {
            d.error(
                Code::MissingField,
                base,
                "a route needs a `destination` or a `redirect`",
            );
        }
        _ => {}
    }
    if let Some(dest) = &r.destination {
        destination(d, router, &format_args!("{base}.destination"), dest);
    }
    if let Some(red) = &r.redirect {
        if let Some(code) = red.code {
            if ![301, 302, 303, 307, 308].contains(&code) {
                d.error(
                    Code::OutOfRange,
                    format_args!("{base}.redirect.code"),
                    format!("redirect code {code} is not one of 301, 302, 303, 307, 308"),
                );
            }
        }
    }
    if r.rewrite
        .as_ref()
        .is_some_and(|rw| rw.path_prefix.is_some())
    {
        // The rewrite replaces the matched prefix: a route matching
        // exact or regex paths has none.
        if let Some(j) = r
            .matches
            .iter()
            .position(|m| m.path.as_ref().is_some_and(|p| p.prefix.is_none()))
        {
            d.error(
                Code::Conflict,
                format_args!("{base}.match[{j}].path"),
                "`rewrite.pathPrefix` replaces the path prefix a request matched: this match item has an exact or regex path",
            )
            .hint = Some("match a path prefix, or split the route".into());
        }
    }
    if let Some(f) = &r.faults {
        faults(d, &format!("{base}.faults"), f);
    }
    if let Some(m) = &r.mirror {
        (router.version_ref)(d, &format_args!("{base}.mirror.version"), &m.version);
        if let Some(p) = m.percentage {
            d.percent(
                format_args!("{base}.mirror.percentage"),
                "mirror percentage",
                p,
            );
        }
    }
    for (j, m) in r.matches.iter().enumerate() {
        match_item(d, Item(Field(base, "match"), j), m);
    }
}

/// One item of a route's `match`.
fn match_item(d: &mut Doc<'_, ServiceIntent>, mp: Item<Field<Item<&str>>>, m: &Match) {
    for (k, sm) in &m.headers {
        let path = format!("{mp}.headers.{k}");
        if !is_http_token(k) {
            d.error_key(
                Code::InvalidValue,
                &path,
                format!(
                    "`{k}` is not an HTTP header name: letters, digits and !#$%&'*+-.^_`|~ only"
                ),
            );
        }
        string_match(d, &path, sm);
    }
    for (k, sm) in &m.cookies {
        string_match(d, &format_args!("{mp}.cookies.{k}"), sm);
    }
    for (k, sm) in &m.query_params {
        string_match(d, &format_args!("{mp}.queryParams.{k}"), sm);
    }
    if let Some(sm) = &m.path {
        string_match(d, &format_args!("{mp}.path"), sm);
    }
    if let Some(method) = &m.method {
        http_method(d, &format_args!("{mp}.method"), method);
    }
}

fn destination<V>(
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
            d.error(
                Code::UnknownReference,
                format_args!("{base}.service"),
                msg.to_string(),
            )
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
