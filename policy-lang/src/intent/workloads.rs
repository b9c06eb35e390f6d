//! Which pods an intent is about: the one definition that `check` (overlap
//! and collision errors) and the compiler (every selector it emits) share.
//!
//! A service's pods are its versions' pods; a version's pods carry the
//! service's selector and the version's own labels. The selector is
//! `spec.selector`, or — when unset — the labels all versions share, or
//! `app: <service>` when they share none (the Kubernetes convention the
//! meshes rely on too). Whether a selector identifies one service is a
//! property of the whole repository, checked by `check`
//! (`validate/workloads.rs`).

use super::labels::Labels;
use super::ServiceIntent;

/// The Kubernetes Service traffic to `intent` is addressed to.
pub fn host(intent: &ServiceIntent) -> &str {
    intent
        .spec
        .service
        .as_deref()
        .unwrap_or(&intent.metadata.name)
}

/// The ServiceAccount `intent`'s pods run as: its mesh identity.
pub fn service_account(intent: &ServiceIntent) -> &str {
    intent
        .spec
        .service_account
        .as_deref()
        .unwrap_or(&intent.metadata.name)
}

/// The labels selecting every pod of `intent`.
pub fn selector(intent: &ServiceIntent) -> Labels {
    if let Some(s) = &intent.spec.selector {
        return s.clone();
    }
    let versions = &intent.spec.versions;
    let mut common = match versions.first() {
        Some(v) => v.labels.clone(),
        None => Labels::default(),
    };
    for v in versions.iter().skip(1) {
        common.retain(|k, val| v.labels.get(k) == Some(val));
    }
    if common.is_empty() {
        common.insert("app".into(), host(intent).into());
    }
    common
}

/// The labels of a version's pods: the service's `selector` and the
/// version's own (a version's label wins a key both set; `check` refuses
/// that contradiction).
pub fn pod_labels(selector: &Labels, version: &Labels) -> Labels {
    selector.iter().chain(version.iter()).collect()
}

/// Whether `selector` may select a pod declared with `labels`: a pod
/// carries at least the labels declared for it, so only a key both name,
/// with different values, proves it is not selected.
pub fn may_select(selector: &Labels, labels: &Labels) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k).is_none_or(|l| l == v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_contradicting_key_proves_a_pod_is_not_selected() {
        let sel = Labels::from([("app", "reviews")]);
        assert!(may_select(
            &sel,
            &Labels::from([("app", "reviews"), ("version", "v1")])
        ));
        assert!(!may_select(&sel, &Labels::from([("app", "ratings")])));
        // A pod declared only by `version: v1` may well carry `app: reviews`.
        assert!(may_select(&sel, &Labels::from([("version", "v1")])));
    }

    #[test]
    fn a_pod_carries_the_selector_and_its_versions_labels() {
        let pod = pod_labels(
            &Labels::from([("app", "reviews")]),
            &Labels::from([("version", "v1")]),
        );
        assert_eq!(pod, Labels::from([("app", "reviews"), ("version", "v1")]));
    }
}
