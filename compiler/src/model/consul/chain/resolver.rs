//! ServiceResolver: which instances serve a target
//! (<https://developer.hashicorp.com/consul/docs/connect/config-entries/service-resolver>).
//!
//! - `Redirect` first: "Specifies redirect instructions for local service
//!   traffic so that services deployed to a different network location
//!   resolve the upstream request instead"; naming another service resets
//!   the subset.
//! - `DefaultSubset` when the target names none; a subset the resolver
//!   does not define is an error ("service does not have a subset named").
//! - `Subsets[].Filter` narrows the instances ([`super::super::filter`]).
//! - `Failover` (keyed by subset, or `*`): when the target has no healthy
//!   instance, its targets are tried in order; a failover target's own
//!   redirect and default subset apply, not its failover.
//! - A resolver without subsets, redirect or failover is the default one:
//!   every instance of the service.

use serde_json::Value;

use super::super::entries::Entry;
use super::super::filter::Filter;
use super::super::{text, Mesh, Sid};
use crate::model::{ModelError, Problem};

/// A service, subset and whether it lies outside this cluster.
#[derive(Clone, Debug, PartialEq)]
pub(in super::super) struct Target {
    pub(in super::super) sid: Sid,
    pub(in super::super) subset: String,
    /// In another datacenter, peer, partition or sameness group.
    pub(in super::super) remote: bool,
    /// The `Set-Cookie` header the split that chose this target adds to
    /// its answers (`Splits[].ResponseHeaders`: "HTTP headers
    /// modification for responses returned by this split").
    pub(in super::super) set_cookie: Option<String>,
}

impl Target {
    pub(in super::super) fn new(sid: Sid) -> Target {
        Target {
            sid,
            subset: String::new(),
            remote: false,
            set_cookie: None,
        }
    }

    /// The target as `opts` (a redirect or failover target) rewrite it.
    fn rewritten(&self, opts: &Value) -> Target {
        let mut t = self.clone();
        let service = text(Some(opts), "service");
        if !service.is_empty() && service != t.sid.1 {
            t.sid.1 = service.to_owned();
            t.subset.clear();
        }
        let subset = text(Some(opts), "serviceSubset");
        if !subset.is_empty() {
            t.subset = subset.to_owned();
        }
        let ns = text(Some(opts), "namespace");
        if !ns.is_empty() {
            t.sid.0 = ns.to_owned();
        }
        let partition = text(Some(opts), "partition");
        t.remote |= ["datacenter", "peer", "samenessGroup"]
            .iter()
            .any(|k| !text(Some(opts), k).is_empty())
            || !(partition.is_empty() || partition == "default");
        t
    }
}

#[derive(Debug)]
pub(in super::super) enum Resolved {
    /// The pods (by id) serving the target here.
    Local(Vec<String>),
    /// Served outside this cluster.
    Remote,
}

/// The instances serving `target` (`failing_over`: a failover target,
/// whose own failover does not apply).
pub(in super::super) fn resolve(
    mesh: &Mesh,
    target: Target,
    failing_over: bool,
) -> Result<Resolved, ModelError> {
    let (t, resolver) = settle(mesh, target)?;
    if t.remote {
        return Ok(Resolved::Remote);
    }
    let pods = instances(mesh, &t, resolver)?;
    if !pods.is_empty() || failing_over {
        return Ok(Resolved::Local(pods));
    }
    let Some(resolver) = resolver else {
        return Ok(Resolved::Local(pods));
    };
    let failover = resolver.spec.get("failover").and_then(Value::as_object);
    let Some(f) = failover.and_then(|f| f.get(&t.subset).or_else(|| f.get("*"))) else {
        return Ok(Resolved::Local(pods));
    };
    for next in failover_targets(&t, f) {
        match resolve(mesh, next, true)? {
            Resolved::Local(p) if p.is_empty() => continue,
            found => return Ok(found),
        }
    }
    Ok(Resolved::Local(pods))
}

/// The target after redirects and the default subset, with its resolver.
fn settle<'m>(mesh: &'m Mesh, mut t: Target) -> Result<(Target, Option<&'m Entry>), ModelError> {
    let mut seen: Vec<Target> = Vec::new();
    loop {
        let resolver = mesh.entries.resolvers.get(&t.sid);
        if seen.contains(&t) {
            let e = resolver.map_or_else(|| "ServiceResolver".to_owned(), |e| e.name.clone());
            return Err(Problem::invalid("detected circular resolver redirect").of(e));
        }
        seen.push(t.clone());
        if t.remote {
            return Ok((t, None));
        }
        let Some(e) = resolver else {
            if !t.subset.is_empty() {
                let missing = format!(
                    "service {:?} does not have a subset named {:?}",
                    t.sid.1, t.subset
                );
                let object = format!("ServiceResolver {}/{}", t.sid.0, t.sid.1);
                return Err(Problem::invalid(missing).of(object));
            }
            return Ok((t, None));
        };
        if let Some(red) = e.spec.get("redirect").filter(|r| !r.is_null()) {
            let next = t.rewritten(red);
            if next != t {
                t = next;
                continue;
            }
        }
        let default_subset = text(Some(&e.spec), "defaultSubset");
        if t.subset.is_empty() && !default_subset.is_empty() {
            t.subset = default_subset.to_owned();
            continue;
        }
        if !t.subset.is_empty() && subset(e, &t.subset).is_none() {
            return Err(e.invalid(format!(
                "service {:?} does not have a subset named {:?}",
                t.sid.1, t.subset
            )));
        }
        return Ok((t, Some(e)));
    }
}

fn subset<'e>(e: &'e Entry, name: &str) -> Option<&'e Value> {
    e.spec.get("subsets").and_then(|s| s.get(name))
}

/// The pods of the target's instances its subset's filter keeps.
fn instances(mesh: &Mesh, t: &Target, resolver: Option<&Entry>) -> Result<Vec<String>, ModelError> {
    let filter = match resolver.and_then(|e| subset(e, &t.subset).map(|s| (e, s))) {
        Some((e, s)) => match text(Some(s), "filter") {
            "" => None,
            f => Some(
                Filter::parse(f)
                    .map_err(|p| e.err(Problem::from(p).at(format!("subset {:?}", t.subset))))?,
            ),
        },
        None => None,
    };
    let mut out = Vec::new();
    for i in mesh.instances(&t.sid) {
        let keep = match &filter {
            None => true,
            Some(f) => f.matches(&i).map_err(|p| {
                let object = resolver.map(|e| e.name.clone()).unwrap_or_default();
                Problem::from(p)
                    .at(format!("subset {:?}", t.subset))
                    .of(object)
            })?,
        };
        if keep && !out.contains(&i.pod.id) {
            out.push(i.pod.id.clone());
        }
    }
    Ok(out)
}

/// A failover section's targets, in order (`Datacenters`, else
/// `Targets`, else the section's own `Service`/`ServiceSubset`/…);
/// "don't failover to yourself".
fn failover_targets(t: &Target, f: &Value) -> Vec<Target> {
    let mut out = Vec::new();
    let dcs = f
        .get("datacenters")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty());
    let targets = f
        .get("targets")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty());
    if let Some(dcs) = dcs {
        for dc in dcs.iter().filter_map(Value::as_str) {
            let mut opts = f.clone();
            if let Some(o) = opts.as_object_mut() {
                o.insert("datacenter".into(), Value::String(dc.to_owned()));
            }
            out.push(t.rewritten(&opts));
        }
    } else if let Some(targets) = targets {
        out.extend(targets.iter().map(|x| t.rewritten(x)));
    } else {
        out.push(t.rewritten(f));
    }
    out.retain(|x| x != t);
    out
}

/// Validates every resolver: `DefaultSubset` must be a subset, subset
/// filters must parse (service-resolver `Validate`).
pub(in super::super) fn validate(e: &Entry) -> Result<(), ModelError> {
    let subsets = e.spec.get("subsets").and_then(Value::as_object);
    let ds = text(Some(&e.spec), "defaultSubset");
    if !ds.is_empty() && subsets.is_none_or(|s| !s.contains_key(ds)) {
        return Err(e.invalid(format!("DefaultSubset {ds:?} is not a valid subset")));
    }
    for (name, s) in subsets.into_iter().flatten() {
        if name.is_empty() {
            return Err(e.invalid("Subset defined with empty name"));
        }
        let f = text(Some(s), "filter");
        if !f.is_empty() {
            Filter::parse(f).map_err(|p| {
                let at = format!("Filter for subset {name:?} is not a valid expression");
                e.err(Problem::from(p).at(at))
            })?;
        }
    }
    Ok(())
}
