//! Rollout webhooks: an HTTP POST with a JSON body; a 2xx answer proceeds,
//! anything else — another status, no answer within the hook's `timeout`
//! (default 10 s), a refused connection — is "not yet", asked again on the
//! next tick. After `failureLimit` such answers in a row (when the hook
//! sets one), the rollout fails instead ([`NotYet::limit`]).
//!
//! One call is up to [`ATTEMPTS`] requests: no answer, 408, 429 and 5xx
//! are tried again after 0.5 s, then 1 s; any other answer is final (a
//! receiver says "not yet" with a 4xx such as 409 or 423). A body is
//! signed when the credentials file gives the hook's URL a signing key
//! (`X-Meshplan-Timestamp`, `X-Meshplan-Signature`: [`crate::outgoing::sign`]).
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
use crate::outgoing::{shown_url, Http, Undelivered};

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

/// Requests one call may make.
pub const ATTEMPTS: u32 = 3;

/// Why a gate did not open: the hook that said "not yet", its
/// `failureLimit`, and what it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotYet {
    pub hook: String,
    pub limit: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Posts `body` to `hook`, trying again while the failure may pass;
/// `Ok(())` on a 2xx answer, else why not (never with a secret: URLs are
/// shown without their user info and query).
pub fn call(http: &Http, hook: &Webhook, body: &Value) -> Result<(), Undelivered> {
    let text = body.to_string();
    let mut pause = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match once(http, hook, &text) {
            Ok(()) => return Ok(()),
            Err(e) if e.transient() && attempt < ATTEMPTS => {
                std::thread::sleep(pause);
                pause *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e.after(attempt)),
        }
    }
}

/// One request.
fn once(http: &Http, hook: &Webhook, body: &str) -> Result<(), Undelivered> {
    let timeout = hook.timeout.map_or(Duration::from_secs(10), |d| {
        Duration::from_millis(d.as_millis())
    });
    let to = format!("webhook `{}` ({})", hook.name, shown_url(&hook.url));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let resp = http
        .post_signed(&hook.url, body.as_bytes(), now)
        .map_err(|e| Undelivered::NotSent {
            to: to.clone(),
            reason: e.to_string(),
        })?
        .config()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| Undelivered::NoAnswer {
            to: to.clone(),
            reason: e.to_string(),
            attempts: 1,
        })?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(Undelivered::Answered {
        to,
        status,
        attempts: 1,
    })
}

/// Calls every hook of `kind` (blocking); the first "not yet", if any.
pub fn gate(
    http: &Http,
    rollout: &Rollout,
    kind: WebhookType,
    service: &str,
    state: &State,
    reason: &str,
) -> Result<(), NotYet> {
    for hook in rollout.webhooks.iter().filter(|h| h.kind == kind) {
        call(http, hook, &body(hook, service, state, reason)).map_err(|e| NotYet {
            hook: hook.name.clone(),
            limit: hook.failure_limit,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

pub fn has(rollout: &Rollout, kind: WebhookType) -> bool {
    rollout.webhooks.iter().any(|h| h.kind == kind)
}
