//! Resilience lowered: the rate limit's ports resolved, failover targets'
//! namespaces defaulted.

use meshplan_policy_lang::intent::service::{FailoverTarget, RateLimit as RateLimitSpec};
use meshplan_policy_lang::intent::PortRef;

use super::LowerError;
use crate::ir::{Failover, Port, RateLimit};

/// The rate limit, on the ports it names (none: every L7 port).
pub(super) fn rate_limit(
    rl: &RateLimitSpec,
    ports: &[Port],
    find_port: &dyn Fn(&PortRef) -> Result<Port, LowerError>,
) -> Result<RateLimit, LowerError> {
    let limited = if rl.ports.is_empty() {
        ports
            .iter()
            .filter(|p| p.protocol.is_l7())
            .cloned()
            .collect()
    } else {
        rl.ports
            .iter()
            .map(|n| find_port(&PortRef::Name(n.clone())))
            .collect::<Result<_, _>>()?
    };
    Ok(RateLimit {
        requests: rl.requests,
        per: rl.per,
        burst: rl.burst.unwrap_or(rl.requests),
        ports: limited,
    })
}

/// Failover targets, a service named without a namespace in `namespace`.
pub(super) fn failover(targets: &[FailoverTarget], namespace: &str) -> Vec<Failover> {
    targets
        .iter()
        .map(|f| Failover {
            service: f.service.as_ref().map(|r| match r.split_once('/') {
                Some((ns, n)) => (ns.to_owned(), n.to_owned()),
                None => (namespace.to_owned(), r.clone()),
            }),
            peer: f.peer.clone(),
            datacenter: f.datacenter.clone(),
        })
        .collect()
}
