//! What a reconcile did, as types: the stage it stopped at ([`Stage`]) and
//! the result of a sync ([`Outcome`]). Each names its own metric label and
//! Event reason, so a new stage or result cannot reach the metrics, the
//! Events or the status unnamed, and none is compared as a string.

use super::status::StatusResult;

/// Where a reconcile failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the source (Git, a folder).
    Fetch,
    /// The revision does not pass check.
    Check,
    /// The revision checks but does not compile, or resource rules refuse
    /// its objects.
    Compile,
    /// The rollout states could not be read.
    Rollout,
    /// Planning or applying against the cluster.
    Apply,
}

impl Stage {
    /// The `reason` label of `meshplan_apply_errors_total`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Check => "check",
            Stage::Compile => "compile",
            Stage::Rollout => "rollout",
            Stage::Apply => "apply",
        }
    }

    /// The reason of the warning Event recorded on the status ConfigMap.
    pub fn event_reason(self) -> &'static str {
        match self {
            Stage::Fetch => "FetchFailed",
            Stage::Check => "CheckFailed",
            Stage::Compile => "CompileFailed",
            Stage::Rollout => "RolloutFailed",
            Stage::Apply => "ApplyFailed",
        }
    }
}

/// How a sync (plan and apply of the desired revision) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Something was created, updated or pruned.
    Applied,
    /// The cluster already matched.
    Unchanged,
    /// Some object could not be applied.
    Failed,
    /// Some object is someone else's: meshplan refused to take it over.
    Refused,
}

impl Outcome {
    /// Every outcome, in the order the metrics list them.
    pub const ALL: [Outcome; 4] = [
        Outcome::Applied,
        Outcome::Unchanged,
        Outcome::Failed,
        Outcome::Refused,
    ];

    /// The `result` label of `meshplan_reconciles_total`.
    pub fn metric_label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }

    /// Whether the cluster now runs the revision.
    pub fn synced(self) -> bool {
        match self {
            Outcome::Applied | Outcome::Unchanged => true,
            Outcome::Failed | Outcome::Refused => false,
        }
    }

    /// The status' `result`: applied and unchanged are one state (the
    /// cluster runs the revision), so a no-op resync after an apply writes
    /// nothing.
    pub fn status(self) -> StatusResult {
        match self {
            Outcome::Applied | Outcome::Unchanged => StatusResult::Synced,
            Outcome::Failed => StatusResult::Failed,
            Outcome::Refused => StatusResult::Refused,
        }
    }

    /// The `reason` label of `meshplan_apply_errors_total` and the warning
    /// Event's reason, when the sync did not succeed.
    pub fn error(self) -> Option<(&'static str, &'static str)> {
        match self {
            Outcome::Applied | Outcome::Unchanged => None,
            Outcome::Failed => Some((Stage::Apply.metric_label(), Stage::Apply.event_reason())),
            Outcome::Refused => Some(("refused", Stage::Apply.event_reason())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels are a bounded set, and distinct: a metric series per
    /// stage and per result.
    #[test]
    fn labels_and_reasons_are_distinct() {
        let stages = [
            Stage::Fetch,
            Stage::Check,
            Stage::Compile,
            Stage::Rollout,
            Stage::Apply,
        ];
        let mut labels: Vec<&str> = stages.iter().map(|s| s.metric_label()).collect();
        let mut reasons: Vec<&str> = stages.iter().map(|s| s.event_reason()).collect();
        labels.push("refused");
        for v in [&mut labels, &mut reasons] {
            let n = v.len();
            v.sort();
            v.dedup();
            assert_eq!(v.len(), n, "{v:?}");
        }
        let results: Vec<&str> = Outcome::ALL.iter().map(|o| o.metric_label()).collect();
        assert_eq!(results, ["applied", "unchanged", "failed", "refused"]);
        assert!(Outcome::ALL
            .iter()
            .all(|o| o.synced() == o.error().is_none()));
    }
}
