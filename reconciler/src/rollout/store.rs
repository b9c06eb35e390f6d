//! Rollout state kept in the cluster: one ConfigMap per service in
//! meshplan's namespace (`meshplan-rollout-<namespace>-<service>`, key
//! `state.json`), so a restarted or failed-over reconciler resumes at the
//! same step.
//!
//! Writes are compare-and-swap on the ConfigMap's `resourceVersion`: of
//! two writers holding the same version, the API server accepts one and
//! the other gets [`Conflict`](StoreError::Conflict) and must re-read —
//! a stale replica can never roll a rollout back to an older step.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

use super::State;
use crate::cluster::Cluster;
use crate::Error;

const COMPONENT: &str = "rollout";

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

/// The ConfigMap holding `namespace/service`'s state (a DNS subdomain:
/// long names are shortened with a hash, so two services never share one).
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

/// Reads `namespace/service`'s state; `None` when there is none (never
/// started, or lost: the rollout then starts at its beginning).
pub async fn load(
    cluster: &Cluster,
    home: &str,
    namespace: &str,
    service: &str,
) -> Result<Option<Stored>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), home);
    let name = object_name(namespace, service);
    let cm = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::api(format!("reading the rollout state {home}/{name}"), &e))?;
    Ok(cm.and_then(|cm| {
        let rv = cm.metadata.resource_version.clone()?;
        let text = cm.data?.get("state.json")?.clone();
        // An unreadable state is a lost state: start over, never jump.
        let state = serde_json::from_str(&text).ok()?;
        Some(Stored {
            state,
            resource_version: rv,
        })
    }))
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
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), home);
    let name = object_name(namespace, service);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.clone());
    cm.metadata.namespace = Some(home.to_owned());
    cm.metadata.resource_version = read.map(str::to_owned);
    cm.metadata.labels = Some(BTreeMap::from([
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
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    cm.data = Some(BTreeMap::from([("state.json".to_owned(), text)]));
    let key = format!("{namespace}/{service}");
    let result = match read {
        None => api.create(&PostParams::default(), &cm).await,
        Some(_) => api.replace(&name, &PostParams::default(), &cm).await,
    };
    match result {
        Ok(cm) => Ok(cm.metadata.resource_version.unwrap_or_default()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(StoreError::Conflict(key)),
        Err(e) => Err(StoreError::Api(Error::api(
            format!("writing the rollout state {home}/{name}"),
            &e,
        ))),
    }
}

/// Every stored rollout, by `namespace/service`.
pub async fn list(cluster: &Cluster, home: &str) -> Result<BTreeMap<String, Stored>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), home);
    let lp = ListParams::default().labels(&format!(
        "app.kubernetes.io/name=meshplan,app.kubernetes.io/component={COMPONENT}"
    ));
    let list = api
        .list(&lp)
        .await
        .map_err(|e| Error::api(format!("listing the rollout states in {home}"), &e))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|cm| {
            let labels = cm.metadata.labels.clone().unwrap_or_default();
            let key = format!(
                "{}/{}",
                labels.get("meshplan.dev/intent-namespace")?,
                labels.get("meshplan.dev/intent")?
            );
            let rv = cm.metadata.resource_version.clone()?;
            let state = serde_json::from_str(cm.data?.get("state.json")?).ok()?;
            Some((
                key,
                Stored {
                    state,
                    resource_version: rv,
                },
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
