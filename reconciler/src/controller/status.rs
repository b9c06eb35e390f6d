//! The last reconcile's status, kept in a ConfigMap beside the inventory
//! (`<inventory>-status`, key `status.json`) and shown by
//! `meshplan status`; Kubernetes Events on failures.
//!
//! The status is written only when it changes, so a no-op resync makes no
//! write call.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::inventory::InventoryName;
use crate::{Error, FIELD_MANAGER};

/// How the last reconcile ended, as the status says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StatusResult {
    /// The cluster runs the revision.
    #[default]
    Synced,
    /// Fetch, check, compile, reading the rollouts or apply failed.
    Failed,
    /// Objects meshplan does not own are in the way.
    Refused,
}

impl StatusResult {
    pub fn name(self) -> &'static str {
        match self {
            StatusResult::Synced => "synced",
            StatusResult::Failed => "failed",
            StatusResult::Refused => "refused",
        }
    }

    /// Whether the cluster runs the revision the status names.
    pub fn ok(self) -> bool {
        match self {
            StatusResult::Synced => true,
            StatusResult::Failed | StatusResult::Refused => false,
        }
    }
}

impl std::fmt::Display for StatusResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the last reconcile found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub result: StatusResult,
    /// The revision this reconcile looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The revision the cluster runs (the last one applied in full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// What went wrong, in a sentence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Check and compile findings (`file:line:col: code: message`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
    /// Objects that differ from Git and are not healed (report-only kinds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// Objects the last apply could not change, with the server's answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// How many objects meshplan manages.
    pub objects: usize,
    /// When the status last changed (RFC 3339).
    #[serde(default)]
    pub since: String,
}

/// Where the status lives.
pub fn status_name(inventory: &InventoryName) -> InventoryName {
    InventoryName {
        namespace: inventory.namespace.clone(),
        name: format!("{}-status", inventory.name),
    }
}

/// Reads the status; `None` when meshplan never ran here.
pub async fn read(cluster: &Cluster, inventory: &InventoryName) -> Result<Option<Status>, Error> {
    let at = status_name(inventory);
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), &at.namespace);
    let cm = api
        .get_opt(&at.name)
        .await
        .map_err(|e| Error::api(format!("reading the status ConfigMap {at}"), &e))?;
    Ok(cm
        .and_then(|c| c.data)
        .and_then(|d| d.get("status.json").cloned())
        .and_then(|s| serde_json::from_str(&s).ok()))
}

/// Writes `status` when it differs from `previous` (ignoring `since`).
pub async fn write(
    cluster: &Cluster,
    inventory: &InventoryName,
    previous: Option<&Status>,
    mut status: Status,
) -> Result<Status, Error> {
    if let Some(p) = previous {
        let mut same = status.clone();
        same.since = p.since.clone();
        if &same == p {
            return Ok(same);
        }
    }
    status.since = Timestamp::now().to_string();
    let at = status_name(inventory);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": at.name,
            "namespace": at.namespace,
            "labels": {"app.kubernetes.io/name": "meshplan", "app.kubernetes.io/component": "status"},
        },
        "data": {"status.json": serde_json::to_string_pretty(&status).unwrap_or_default()},
    });
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), &at.namespace);
    api.patch(
        &at.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::api(format!("writing the status ConfigMap {at}"), &e))?;
    Ok(status)
}

/// Records a Kubernetes Event on the status ConfigMap (best effort: an
/// Event that cannot be written is not worth failing a reconcile for).
pub async fn event(
    cluster: &Cluster,
    inventory: &InventoryName,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let at = status_name(inventory);
    let now = Timestamp::now();
    let name = format!("{}.{:x}", at.name, now.as_nanosecond());
    let ev = Event {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            namespace: Some(at.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "meshplan".to_owned(),
            )])),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some(at.name.clone()),
            namespace: Some(at.namespace.clone()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        // The API server caps messages at 1 KiB.
        message: Some(message.chars().take(1000).collect()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        reporting_component: Some("meshplan".into()),
        reporting_instance: Some(hostname()),
        action: Some("Reconcile".into()),
        count: Some(1),
        source: Some(EventSource {
            component: Some("meshplan".into()),
            host: None,
        }),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(cluster.client().clone(), &at.namespace);
    let _ = api.create(&PostParams::default(), &ev).await;
}

/// This replica's name: the pod's (`HOSTNAME`), else the host's.
pub fn hostname() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| {
            std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "meshplan".into())
        })
}
