//! Rollout state kept in the cluster: one `MeshRollout`
//! (`meshplan.dev/v1alpha1`, deploy/crds/meshrollouts.yaml) per service in
//! meshplan's namespace (`meshplan-rollout-<namespace>-<service>`), so a
//! restarted or failed-over reconciler resumes at the same step. Its
//! `status` carries the state machine's state and kstatus-style conditions
//! (`Ready`, `Progressing`, `Failed`), so `kubectl wait
//! --for=condition=Ready` waits for a promotion.
//!
//! Writes are compare-and-swap on the object's `resourceVersion`: of two
//! writers holding the same version, the API server accepts one and the
//! other gets [`Conflict`](StoreError::Conflict) and must re-read — a stale
//! replica can never roll a rollout back to an older step.

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

use super::{Phase, State};
use crate::cluster::Cluster;
use crate::Error;

const COMPONENT: &str = "rollout";
/// Said when the API server does not know the kind: the usual cause.
const CRD_HINT: &str = " (is the MeshRollout CRD installed? kubectl apply -f deploy/crds/)";

fn api_error(what: String, e: &kube::Error) -> Error {
    let missing = matches!(e, kube::Error::Api(s) if s.code == 404);
    Error::api(if missing { what + CRD_HINT } else { what }, e)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote the state since it was read.
    #[error("the rollout state of {0} changed since it was read")]
    Conflict(String),
    #[error(transparent)]
    Api(#[from] Error),
}

/// A state and the version it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub state: State,
    pub resource_version: String,
}

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("meshplan.dev", "v1alpha1", "MeshRollout"),
        "meshrollouts",
    )
}

fn api(cluster: &Cluster, home: &str) -> Api<DynamicObject> {
    Api::namespaced_with(cluster.client().clone(), home, &resource())
}

/// The object holding `namespace/service`'s state (a DNS subdomain: long
/// names are shortened with a hash, so two services never share one).
pub fn object_name(namespace: &str, service: &str) -> String {
    let name = format!("meshplan-rollout-{namespace}-{service}");
    if name.len() <= 253 {
        return name;
    }
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("{namespace}/{service}").as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &name[..200])
}

fn stored(o: &DynamicObject) -> Option<Stored> {
    let rv = o.metadata.resource_version.clone()?;
    // An unreadable state is a lost state: start over, never jump.
    let state = serde_json::from_value(o.data["status"]["state"].clone()).ok()?;
    Some(Stored {
        state,
        resource_version: rv,
    })
}

/// Reads `namespace/service`'s state; `None` when there is none (never
/// started, or lost: the rollout then starts at its beginning).
pub async fn load(
    cluster: &Cluster,
    home: &str,
    namespace: &str,
    service: &str,
) -> Result<Option<Stored>, Error> {
    let name = object_name(namespace, service);
    let o = api(cluster, home)
        .get_opt(&name)
        .await
        .map_err(|e| api_error(format!("reading the rollout state {home}/{name}"), &e))?;
    Ok(o.as_ref().and_then(stored))
}

/// kstatus-style conditions of a state.
pub fn conditions(state: &State) -> Vec<Value> {
    let since = state.history.last().map_or(state.stage_started, |t| t.time);
    let time = k8s_openapi::jiff::Timestamp::from_second(since as i64)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let why = state.history.last().map_or("", |t| t.reason.as_str());
    let phase = state.phase.name();
    let cond = |kind: &str, on: bool, reason: &str, message: &str| {
        json!({
            "type": kind,
            "status": if on { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "lastTransitionTime": time,
        })
    };
    let (progressing, paused) = match &state.phase {
        Phase::Idle | Phase::Progressing | Phase::Promoting | Phase::RollingBack { .. } => {
            (true, "")
        }
        Phase::Paused { reason } => (
            false,
            match reason {
                super::PauseReason::ManualGate => "ManualGate",
                super::PauseReason::Requested => "PausedByUser",
                super::PauseReason::Inconclusive => "Inconclusive",
                super::PauseReason::Frozen => "Frozen",
            },
        ),
        Phase::Succeeded | Phase::Failed { .. } => (false, ""),
    };
    vec![
        cond("Ready", state.phase == Phase::Succeeded, phase, why),
        cond(
            "Progressing",
            progressing,
            if paused.is_empty() { phase } else { paused },
            &state.next,
        ),
        cond(
            "Failed",
            matches!(state.phase, Phase::Failed { .. }),
            phase,
            why,
        ),
    ]
}

/// Writes the state if it is still at `read` (`None`: it must not exist
/// yet). Returns the new version.
pub async fn save(
    cluster: &Cluster,
    home: &str,
    namespace: &str,
    service: &str,
    state: &State,
    read: Option<&str>,
) -> Result<String, StoreError> {
    let name = object_name(namespace, service);
    let mut o = DynamicObject::new(&name, &resource())
        .within(home)
        .data(json!({
            "spec": {"service": service, "namespace": namespace},
            "status": {
                "phase": state.phase.name(),
                "weight": state.weight,
                "conditions": conditions(state),
                "state": state,
            },
        }));
    o.metadata.resource_version = read.map(str::to_owned);
    o.metadata.labels = Some(BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "meshplan".to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            COMPONENT.to_owned(),
        ),
        ("meshplan.dev/intent".to_owned(), service.to_owned()),
        (
            "meshplan.dev/intent-namespace".to_owned(),
            namespace.to_owned(),
        ),
    ]));
    let key = format!("{namespace}/{service}");
    let api = api(cluster, home);
    let result = match read {
        None => api.create(&PostParams::default(), &o).await,
        Some(_) => api.replace(&name, &PostParams::default(), &o).await,
    };
    match result {
        Ok(o) => Ok(o.metadata.resource_version.unwrap_or_default()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(StoreError::Conflict(key)),
        Err(e) => Err(StoreError::Api(api_error(
            format!("writing the rollout state {home}/{name}"),
            &e,
        ))),
    }
}

/// Every stored rollout, by `namespace/service`.
pub async fn list(cluster: &Cluster, home: &str) -> Result<BTreeMap<String, Stored>, Error> {
    let mut lp = ListParams::default()
        .labels(&format!(
            "app.kubernetes.io/name=meshplan,app.kubernetes.io/component={COMPONENT}"
        ))
        // In pages: every rollout's state is read every tick, and read
        // whole they are all held at once, however many rollouts there
        // are; a page holds `LIST_PAGE` of them.
        .limit(LIST_PAGE);
    let mut out = BTreeMap::new();
    loop {
        let page = api(cluster, home)
            .list(&lp)
            .await
            .map_err(|e| api_error(format!("listing the rollout states in {home}"), &e))?;
        out.extend(page.items.iter().filter_map(|o| {
            let labels = o.metadata.labels.as_ref()?;
            let key = format!(
                "{}/{}",
                labels.get("meshplan.dev/intent-namespace")?,
                labels.get("meshplan.dev/intent")?
            );
            Some((key, stored(o)?))
        }));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Rollout states read per list call.
const LIST_PAGE: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_ready_only_on_success_and_why_a_rollout_is_paused() {
        let kind = |c: &[Value], t: &str| -> (String, String) {
            let c = c.iter().find(|c| c["type"] == t).unwrap();
            (
                c["status"].as_str().unwrap().into(),
                c["reason"].as_str().unwrap().into(),
            )
        };
        let mut s = State::new("v2", "f", 0);
        s.phase = Phase::Paused {
            reason: super::super::PauseReason::ManualGate,
        };
        let c = conditions(&s);
        assert_eq!(kind(&c, "Ready").0, "False");
        assert_eq!(
            kind(&c, "Progressing"),
            ("False".into(), "ManualGate".into())
        );
        s.phase = Phase::Succeeded;
        let c = conditions(&s);
        assert_eq!(kind(&c, "Ready"), ("True".into(), "Succeeded".into()));
        assert_eq!(kind(&c, "Failed").0, "False");
        s.phase = Phase::Failed { reason: "x".into() };
        assert_eq!(kind(&conditions(&s), "Failed").0, "True");
        assert_eq!(c[0]["lastTransitionTime"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn names_are_per_service_and_never_too_long() {
        assert_eq!(object_name("shop", "web"), "meshplan-rollout-shop-web");
        let long = "x".repeat(200);
        let a = object_name(&long, "a");
        let b = object_name(&long, "b");
        assert!(a.len() <= 253 && b.len() <= 253);
        assert_ne!(a, b);
    }
}
