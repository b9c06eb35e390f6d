//! Linkerd's timeout and retry annotations (2.16+), read as the policy
//! controller reads them (linkerd2 `policy-controller/k8s/index/src/
//! outbound/index.rs` `parse_timeouts`, `parse_duration`;
//! `index/http.rs` `parse_http_retry`; `index/grpc.rs`
//! `parse_grpc_retry`), per the Timeouts and Retries references:
//!
//! - `timeout.linkerd.io/request|response|idle`, on a Service or a route
//!   with a Service parent; "If any timeout configuration annotations are
//!   present on a route resource, they override all timeout configuration
//!   annotations on the parent Service".
//! - `retry.linkerd.io/http` (`5xx`, `gateway-error`, `xxx`, `xxx-yyy`,
//!   comma-separated) on a Service or an HTTPRoute, "not valid on a
//!   GRPCRoute"; `retry.linkerd.io/grpc` (`cancelled`,
//!   `deadline-exceeded`, `internal`, `resource-exhausted`,
//!   `unavailable`) on a Service or a GRPCRoute, "not valid on an
//!   HTTPRoute"; `retry.linkerd.io/limit` ("If unspecified, the default is
//!   1"), `retry.linkerd.io/timeout`. Route retry annotations override the
//!   Service's.
//! - Durations are one integer and one unit (`ms`, `s`, `m`, `h`, `d`):
//!   `1m30s` and `0.5s` do not parse.

use std::collections::BTreeMap;

use crate::model::httproute::status_conditions;
use crate::model::{DurationError, Problem, Retries};

type Annotations = BTreeMap<String, String>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Timeouts {
    pub request: Option<u64>,
    pub response: Option<u64>,
    pub idle: Option<u64>,
}

impl Timeouts {
    pub fn is_unset(&self) -> bool {
        *self == Timeouts::default()
    }
}

/// A retry policy: `on` names the conditions (`status_conditions` for
/// HTTP, gRPC status names for gRPC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Retry {
    pub limit: u32,
    pub timeout: Option<u64>,
    pub on: Vec<String>,
}

impl Retry {
    /// The retries the proxy performs: none when no condition and no
    /// retry timeout can trigger one (without `retry.linkerd.io/http` the
    /// controller sends no status range, and the proxy's `StatusRanges`
    /// then contains no status).
    pub fn performed(&self) -> Option<Retries> {
        (!self.on.is_empty() || self.timeout.is_some()).then(|| Retries {
            attempts: self.limit,
            per_try_timeout_ms: self.timeout,
            on: self.on.clone(),
        })
    }
}

/// What a Service's annotations configure. An annotation that does not
/// parse is ignored (the controller logs it and uses the default).
#[derive(Clone, Debug, Default)]
pub(super) struct ServicePolicy {
    pub timeouts: Timeouts,
    pub http_retry: Option<Retry>,
    pub grpc_retry: Option<Retry>,
}

impl ServicePolicy {
    pub fn of(a: &Annotations) -> ServicePolicy {
        ServicePolicy {
            timeouts: timeouts(a).unwrap_or_default(),
            http_retry: http_retry(a).unwrap_or_default(),
            grpc_retry: grpc_retry(a).unwrap_or_default(),
        }
    }
}

/// `parse_duration`: an integer and a unit; `0` alone is zero.
pub(super) fn duration(s: &str) -> Result<u64, DurationError> {
    let s = s.trim();
    let end = s
        .rfind(|c: char| c.is_ascii_digit())
        .ok_or_else(|| DurationError::NoValue(s.to_owned()))?;
    let (magnitude, unit) = s.split_at(end + 1);
    let magnitude: u64 = magnitude
        .parse()
        .map_err(|_| DurationError::Magnitude(s.to_owned()))?;
    let ms = match unit {
        "" if magnitude == 0 => 0,
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError::Unit(s.to_owned())),
    };
    magnitude
        .checked_mul(ms)
        .ok_or_else(|| DurationError::Overflow(s.to_owned()))
}

pub(super) fn timeouts(a: &Annotations) -> Result<Timeouts, DurationError> {
    let get = |k: &str| a.get(k).map(|v| duration(v)).transpose();
    Ok(Timeouts {
        request: get("timeout.linkerd.io/request")?,
        response: get("timeout.linkerd.io/response")?,
        idle: get("timeout.linkerd.io/idle")?,
    })
}

/// `retry.linkerd.io/http`: the list is split on `,` only (no spaces).
pub(super) fn http_retry(a: &Annotations) -> Result<Option<Retry>, Problem> {
    let code = |s: &str| s.parse::<u32>().ok().filter(|c| (100..600).contains(c));
    let conditions = a
        .get("retry.linkerd.io/http")
        .map(|v| {
            let mut codes = Vec::new();
            for cond in v.split(',') {
                let range = if cond.eq_ignore_ascii_case("5xx") {
                    500..=599
                } else if cond.eq_ignore_ascii_case("gateway-error") {
                    502..=504
                } else if let Some(c) = code(cond) {
                    c..=c
                } else {
                    match cond.split_once('-').map(|(s, e)| (code(s), code(e))) {
                        Some((Some(s), Some(e))) if s <= e => s..=e,
                        _ => {
                            let bad = format!("invalid retry condition: {v}");
                            return Err(Problem::invalid(bad));
                        }
                    }
                };
                codes.extend(range);
            }
            Ok(status_conditions(codes))
        })
        .transpose()?;
    retry(a, conditions)
}

/// `retry.linkerd.io/grpc`.
pub(super) fn grpc_retry(a: &Annotations) -> Result<Option<Retry>, Problem> {
    const NAMES: [&str; 5] = [
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ];
    let conditions = a
        .get("retry.linkerd.io/grpc")
        .map(|v| {
            let mut on = v
                .split(',')
                .map(|c| {
                    NAMES
                        .iter()
                        .find(|n| c.eq_ignore_ascii_case(n))
                        .map(|n| (*n).to_owned())
                        .ok_or_else(|| {
                            Problem::invalid(format!("unknown grpc retry condition: {c}"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            on.sort();
            on.dedup();
            Ok::<_, Problem>(on)
        })
        .transpose()?;
    retry(a, conditions)
}

/// The limit (`0` is as if unset) and timeout shared by both kinds; no
/// retry annotation at all is no retry policy.
fn retry(a: &Annotations, on: Option<Vec<String>>) -> Result<Option<Retry>, Problem> {
    let limit = a
        .get("retry.linkerd.io/limit")
        .map(|s| {
            s.parse::<u16>()
                .map_err(|_| Problem::invalid(format!("invalid retry limit `{s}`")))
        })
        .transpose()?
        .filter(|l| *l != 0);
    let timeout = a
        .get("retry.linkerd.io/timeout")
        .map(|s| duration(s))
        .transpose()?
        .filter(|t| *t != 0);
    if limit.is_none() && timeout.is_none() && on.is_none() {
        return Ok(None);
    }
    Ok(Some(Retry {
        limit: limit.map_or(1, u32::from),
        timeout,
        on: on.unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(kv: &[(&str, &str)]) -> Annotations {
        kv.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn durations_are_one_number_and_one_unit() {
        assert_eq!(duration("500ms"), Ok(500));
        assert_eq!(duration("2s"), Ok(2000));
        assert_eq!(duration("1d"), Ok(86_400_000));
        assert_eq!(duration("0"), Ok(0));
        assert!(duration("1m30s").is_err());
        assert!(duration("0.5s").is_err());
        assert!(duration("5").is_err());
    }

    #[test]
    fn http_retries_read_codes_ranges_and_names() {
        let r = http_retry(&ann(&[("retry.linkerd.io/http", "gateway-error,409")])).unwrap();
        assert_eq!(
            r,
            Some(Retry {
                limit: 1,
                timeout: None,
                on: vec!["409".into(), "gateway-error".into()]
            })
        );
        let r = http_retry(&ann(&[
            ("retry.linkerd.io/http", "500-599"),
            ("retry.linkerd.io/limit", "3"),
        ]));
        assert_eq!(
            r.unwrap().map(|r| (r.limit, r.on)),
            Some((3, vec!["5xx".into()]))
        );
        // No trimming: a space makes the list invalid.
        assert!(http_retry(&ann(&[("retry.linkerd.io/http", "5xx, 409")])).is_err());
        assert!(http_retry(&ann(&[("retry.linkerd.io/http", "reset")])).is_err());
        assert_eq!(http_retry(&ann(&[])), Ok(None));
    }

    #[test]
    fn a_limit_alone_retries_nothing() {
        // A zero limit is as if unset: no retry policy at all.
        assert_eq!(
            http_retry(&ann(&[("retry.linkerd.io/limit", "0")])),
            Ok(None)
        );
        let r = http_retry(&ann(&[("retry.linkerd.io/limit", "3")]))
            .unwrap()
            .unwrap();
        assert_eq!((r.limit, r.performed()), (3, None));
        let r = http_retry(&ann(&[("retry.linkerd.io/timeout", "300ms")]))
            .unwrap()
            .unwrap();
        assert_eq!(r.performed().map(|r| r.per_try_timeout_ms), Some(Some(300)));
    }

    #[test]
    fn grpc_retries_name_statuses() {
        let r = grpc_retry(&ann(&[("retry.linkerd.io/grpc", "unavailable,Cancelled")])).unwrap();
        assert_eq!(
            r.map(|r| r.on),
            Some(vec!["cancelled".into(), "unavailable".into()])
        );
        assert!(grpc_retry(&ann(&[("retry.linkerd.io/grpc", "5xx")])).is_err());
    }

    #[test]
    fn unparsable_service_annotations_are_ignored() {
        let p = ServicePolicy::of(&ann(&[
            ("timeout.linkerd.io/request", "1m30s"),
            ("retry.linkerd.io/http", "5xx"),
        ]));
        assert!(p.timeouts.is_unset());
        assert_eq!(p.http_retry.map(|r| r.on), Some(vec!["5xx".into()]));
    }
}
