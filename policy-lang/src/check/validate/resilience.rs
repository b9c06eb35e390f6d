//! Resilience settings: circuit breaking, load balancing, retries,
//! failover, and the rate limit.

use super::{exactly_one, Doc};
use crate::diagnostic::Code;
use crate::intent::service::RateLimit;
use crate::intent::service::Resilience;
use crate::intent::{Port, Protocol, ServiceIntent};
use crate::yaml::did_you_mean;

pub(super) fn resilience(d: &mut Doc<'_, ServiceIntent>, res: &Resilience, l7: bool) {
    if let Some(cb) = &res.circuit_breaker {
        if let Some(p) = cb.max_ejection_percent {
            d.percent(
                "spec.resilience.circuitBreaker.maxEjectionPercent",
                "maxEjectionPercent",
                f64::from(p),
            );
        }
        if cb.consecutive_errors == 0 {
            d.error(
                Code::OutOfRange,
                "spec.resilience.circuitBreaker.consecutiveErrors",
                "consecutiveErrors must be at least 1",
            );
        }
    }
    if let Some(lb) = &res.load_balancer {
        use crate::intent::service::LoadBalancerPolicy as P;
        match (&lb.policy, &lb.consistent_hash) {
            (P::ConsistentHash, None) => {
                d.error_key(
                    Code::MissingField,
                    "spec.resilience.loadBalancer.policy",
                    "policy `consistentHash` needs a `consistentHash` block saying what to hash on",
                );
            }
            (P::ConsistentHash, Some(h))
                if !exactly_one(&[
                    h.header.is_some(),
                    h.cookie.is_some(),
                    h.source_ip == Some(true),
                    h.query_param.is_some(),
                ]) =>
            {
                d.error(
                    Code::Conflict,
                    "spec.resilience.loadBalancer.consistentHash",
                    "set exactly one of `header`, `cookie`, `sourceIp`, `queryParam`",
                );
            }
            (P::ConsistentHash, Some(_)) => {}
            (_, Some(_)) => {
                d.error_key(
                    Code::Conflict,
                    "spec.resilience.loadBalancer.consistentHash",
                    "`consistentHash` is only used with policy `consistentHash`",
                );
            }
            _ => {}
        }
    }
    if let Some(r) = &res.retries {
        if r.attempts > 0 && r.retry_on.is_empty() && !l7 {
            d.error_key(
                Code::Conflict,
                "spec.resilience.retries",
                "retries need an http, http2 or grpc port",
            );
        }
    }
    for (i, f) in res.failover.iter().enumerate() {
        let path = super::Item("spec.resilience.failover", i);
        if f.service.is_none() && f.peer.is_none() && f.datacenter.is_none() {
            d.error(
                Code::MissingField,
                path,
                "a failover target needs at least one of `service`, `peer`, `datacenter`",
            );
        }
        if let Some(svc) = &f.service {
            let (ns, name) = svc.split_once('/').unwrap_or(("", svc));
            if !ns.is_empty() {
                d.name(format_args!("{path}.service"), "namespace", ns);
            }
            d.name(format_args!("{path}.service"), "service name", name);
        }
    }
}

pub(super) fn rate_limit(d: &mut Doc<'_, ServiceIntent>, rl: &RateLimit, ports: &[Port], l7: bool) {
    if rl.requests == 0 {
        d.error(
            Code::OutOfRange,
            "spec.rateLimit.requests",
            "a rate limit of 0 requests blocks every request",
        );
    }
    if rl.per.as_millis() == 0 {
        d.error(
            Code::OutOfRange,
            "spec.rateLimit.per",
            "the rate limit period must be longer than 0s",
        );
    }
    for (i, name) in rl.ports.iter().enumerate() {
        match ports.iter().find(|p| &p.name == name) {
            None => {
                let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
                let hint = did_you_mean(name, &names);
                d.error(
                    Code::UnknownReference,
                    format_args!("spec.rateLimit.ports[{i}]"),
                    format!("port `{name}` is not defined"),
                )
                .hint = hint;
            }
            Some(p) if p.protocol == Protocol::Tcp => {
                d.error(Code::Conflict, format_args!("spec.rateLimit.ports[{i}]"), format!("port `{name}` is tcp: a request rate limit needs an http, http2 or grpc port"));
            }
            Some(_) => {}
        }
    }
    if rl.ports.is_empty() && !l7 {
        d.error_key(Code::Conflict, "spec.rateLimit", "a request rate limit needs an http, http2 or grpc port: this service only has tcp ports");
    }
}
