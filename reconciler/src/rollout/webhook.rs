//! Rollout webhooks: an HTTP POST with a JSON body; a 2xx answer proceeds,
//! anything else — another status, no answer within the hook's `timeout`
//! (default 10 s), a refused connection — is "not yet", asked again on the
//! next tick.
//!
//! | type | called | gates |
//! |---|---|---|
//! | `preRollout` | before the first stage | the start: traffic stays on stable until every one says yes |
//! | `stepConfirmation` | when a stage's conditions hold | the move to the next stage |
//! | `postRollout` | after promotion | `Promoting → Succeeded` |
//! | `rollback` | after a rollback | `RollingBack → Failed` |
//! | `notification` | on every transition | nothing (its answer is ignored) |

use std::time::Duration;

use meshplan_policy_lang::intent::rollout::{Rollout, Webhook, WebhookType};
use serde_json::{json, Value};

use super::{At, State};
use crate::outgoing::{shown_url, Http};

/// What a hook is told.
pub fn body(hook: &Webhook, service: &str, state: &State, reason: &str) -> Value {
    let (namespace, name) = service.split_once('/').unwrap_or(("", service));
    let step = match state.at {
        At::Step(i) => Some(i),
        _ => None,
    };
    json!({
        "name": hook.name,
        "type": type_name(hook.kind),
        "service": name,
        "namespace": namespace,
        "stable": state.stable,
        "canary": state.canary,
        "phase": state.phase.name(),
        "step": step,
        "weight": state.weight,
        "reason": reason,
        "metadata": hook.metadata,
    })
}

pub fn type_name(t: WebhookType) -> &'static str {
    match t {
        WebhookType::PreRollout => "preRollout",
        WebhookType::StepConfirmation => "stepConfirmation",
        WebhookType::PostRollout => "postRollout",
        WebhookType::Rollback => "rollback",
        WebhookType::Notification => "notification",
    }
}

/// Posts `body` to `hook`; `Ok(())` on a 2xx answer, else why not (never
/// with a secret: URLs are shown without their user info and query).
pub fn call(http: &Http, hook: &Webhook, body: &Value) -> Result<(), String> {
    let timeout = hook.timeout.map_or(Duration::from_secs(10), |d| {
        Duration::from_millis(d.as_millis())
    });
    let shown = shown_url(&hook.url);
    let resp = http
        .post(&hook.url)
        .map_err(|e| format!("webhook `{}` ({shown}): {e}", hook.name))?
        .config()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .header("content-type", "application/json")
        .send(body.to_string())
        .map_err(|e| format!("webhook `{}` ({shown}): {e}", hook.name))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "webhook `{}` ({shown}) answered {status}",
            hook.name
        ))
    }
}

/// Calls every hook of `kind` (blocking); the first "not yet", if any.
pub fn gate(
    http: &Http,
    rollout: &Rollout,
    kind: WebhookType,
    service: &str,
    state: &State,
    reason: &str,
) -> Result<(), String> {
    for hook in rollout.webhooks.iter().filter(|h| h.kind == kind) {
        call(http, hook, &body(hook, service, state, reason))?;
    }
    Ok(())
}

pub fn has(rollout: &Rollout, kind: WebhookType) -> bool {
    rollout.webhooks.iter().any(|h| h.kind == kind)
}
