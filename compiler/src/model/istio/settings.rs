//! What an HTTP route adds to forwarding: timeout, retries, fault
//! injection, mirroring
//! (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRoute>).

use serde_json::Value;

use super::{Obj, World};
use crate::model::{Fault, ModelError, Retries, NO_POD};

/// `timeout`: "Timeout for HTTP requests, default is disabled"; Istio
/// gives Envoy `0s` (no timeout) when unset, and `0s` means the same.
pub(super) fn timeout(o: &Obj, route: &Value) -> Result<Option<u64>, ModelError> {
    Ok(o.duration(route, "timeout")?.filter(|ms| *ms > 0))
}

/// The retry policy Istio applies to a route that sets no `retries`:
/// `MeshConfig.defaultHttpRetryPolicy`, which, unset, is two retries on
/// `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
/// with 503 as the retriable status code
/// (<https://istio.io/latest/docs/concepts/traffic-management/#retries>:
/// "The default retry behavior for HTTP requests is to retry twice before
/// returning the error"; istio/istio `pilot/pkg/networking/core/route/retry/retry.go`
/// `defaultPolicy`).
pub(super) fn default_retries() -> Retries {
    let mut on: Vec<String> = [
        "connect-failure",
        "refused-stream",
        "unavailable",
        "cancelled",
        "503",
    ]
    .map(str::to_owned)
    .to_vec();
    on.sort();
    Retries {
        attempts: 2,
        per_try_timeout_ms: None,
        on,
    }
}

/// `retries` (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRetry>):
/// unset, the mesh default; `attempts: 0` disables retries ("If
/// in.Attempts == 0, returns nil", `retry.go` `ConvertPolicy`); `retryOn`
/// unset keeps the default conditions; a status code in `retryOn` is
/// retried through `retriable-status-codes`.
pub(super) fn retries(o: &Obj, route: &Value) -> Result<Option<Retries>, ModelError> {
    let Some(rt) = Obj::get(route, "retries") else {
        return Ok(Some(default_retries()));
    };
    // An absent `attempts` is proto3's 0: "explicitly disabling" retries.
    let attempts = match o.int(rt, "attempts")?.unwrap_or(0) {
        n if n <= 0 => return Ok(None),
        n => u32::try_from(n).map_err(|_| o.invalid("retries.attempts: too large"))?,
    };
    let on = match o.text(rt, "retryOn")?.filter(|s| !s.trim().is_empty()) {
        Some(s) => conditions(s),
        None => default_retries().on,
    };
    Ok(Some(Retries {
        attempts,
        per_try_timeout_ms: o.duration(rt, "perTryTimeout")?,
        on,
    }))
}

/// `retryOn` as the intent language names the conditions: Envoy's names
/// are kept (they are the intent language's), a status code is written
/// as the number, and `retriable-status-codes` disappears into the codes
/// it stands for (kept when no code is listed).
fn conditions(retry_on: &str) -> Vec<String> {
    let tokens: Vec<&str> = retry_on
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let is_code = |t: &str| t.parse::<u32>().is_ok_and(|c| (100..=599).contains(&c));
    let has_codes = tokens.iter().any(|t| is_code(t));
    let mut on: Vec<String> = tokens
        .iter()
        .filter(|t| !(has_codes && **t == "retriable-status-codes"))
        .map(|t| match t.parse::<u32>() {
            Ok(c) if is_code(t) => c.to_string(),
            _ => (*t).to_owned(),
        })
        .collect();
    on.sort();
    on.dedup();
    on
}

/// A fault's percentage: `percentage.value`, else the deprecated integer
/// `percent`; "If left unspecified, no request will be delayed" (and none
/// aborted) (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection-Delay>).
fn fault_percent(o: &Obj, v: &Value) -> Result<f64, ModelError> {
    match o.percent(v, "percentage")? {
        Some(p) => Ok(p),
        None => Ok(o.int(v, "percent")?.unwrap_or(0) as f64),
    }
}

/// `fault` (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection>):
/// a fixed delay and an HTTP abort, each on its percentage of requests.
pub(super) fn fault(o: &Obj, route: &Value) -> Result<Option<Fault>, ModelError> {
    let Some(f) = Obj::get(route, "fault") else {
        return Ok(None);
    };
    let mut fault = Fault::default();
    if let Some(d) = Obj::get(f, "delay") {
        if Obj::get(d, "exponentialDelay").is_some() {
            return Err(o.invalid("fault.delay.exponentialDelay: not supported by Istio"));
        }
        let ms = o
            .duration(d, "fixedDelay")?
            .ok_or_else(|| o.invalid("fault.delay.fixedDelay: required"))?;
        let p = fault_percent(o, d)?;
        fault.delay = (p > 0.0).then_some((p, ms));
    }
    if let Some(a) = Obj::get(f, "abort") {
        if Obj::get(a, "grpcStatus").is_some() || Obj::get(a, "http2Error").is_some() {
            return Err(o.unmodelled("fault.abort: only httpStatus aborts have an answer"));
        }
        let status = o
            .int(a, "httpStatus")?
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| o.invalid("fault.abort.httpStatus: required"))?;
        let p = fault_percent(o, a)?;
        fault.abort = (p > 0.0).then_some((p, status));
    }
    Ok((fault.delay.is_some() || fault.abort.is_some()).then_some(fault))
}

/// `mirror` with `mirrorPercentage` ("If this field is absent, all the
/// traffic (100%) will be mirrored"; an explicit 0 mirrors nothing), and
/// `mirrors` (each with its `percentage`, 100 when absent)
/// (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRoute>).
pub(super) fn mirror(
    w: &World,
    o: &Obj,
    route: &Value,
    client_ns: &str,
) -> Result<Option<(Vec<String>, f64)>, ModelError> {
    let mut found: Vec<(&Value, f64)> = Vec::new();
    if let Some(m) = Obj::get(route, "mirror") {
        let p = match o.percent(route, "mirrorPercentage")? {
            Some(p) => p,
            None => o.int(route, "mirrorPercent")?.map_or(100.0, |p| p as f64),
        };
        found.push((m, p));
    }
    for m in o.list(route, "mirrors")? {
        if let Some(d) = Obj::get(m, "destination") {
            found.push((d, o.percent(m, "percentage")?.unwrap_or(100.0)));
        }
    }
    found.retain(|(_, p)| *p > 0.0);
    let Some(&(_, percent)) = found.first() else {
        return Ok(None);
    };
    if found.iter().any(|(_, p)| *p != percent) {
        return Err(o.unmodelled("mirrors: copies at different percentages have no answer"));
    }
    let mut pods = Vec::new();
    for (d, _) in found {
        let targets = w.destination_pods(o, d, client_ns)?;
        if targets.is_empty() {
            pods.push(NO_POD.to_owned());
        }
        pods.extend(targets.into_iter().map(|p| p.id.clone()));
    }
    pods.sort();
    pods.dedup();
    Ok(Some((pods, percent)))
}
