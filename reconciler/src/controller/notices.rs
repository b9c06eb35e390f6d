//! What the controller announces through the operator's notification sinks
//! (`--notifications`, [`crate::outgoing::notify`]): each rollout transition,
//! and each change of the reconcile result (a revision that fails to
//! fetch, check, compile or apply; the next one that is applied). Sent in
//! the background, by one worker in order — a late `failure` never lands on
//! a commit after the `success` that followed it — and a slow chat never
//! holds a reconcile.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use crate::outgoing::notify::{Notice, Notifier, State, Topic};

use super::Log;

use super::rollouts::Transitioned;
use super::status::{Status, StatusResult};
use crate::rollout::Phase;

/// The notices of rollout transitions.
pub(super) fn rollouts(ts: &[Transitioned], revision: Option<&str>) -> Vec<Notice> {
    ts.iter().map(|t| rollout(t, revision)).collect()
}

/// The notice of a rollout transition.
pub(super) fn rollout(t: &Transitioned, revision: Option<&str>) -> Notice {
    let state = match &t.phase {
        Phase::Succeeded => State::Success,
        p if p.ends_badly() => State::Failure,
        _ => State::Pending,
    };
    Notice {
        topic: Topic::Rollout,
        subject: t.service.clone(),
        state,
        message: format!("{} → {}: {}", t.from, t.to, t.reason),
        revision: revision.map(str::to_owned),
    }
}

/// The notice of a new reconcile status, when it says something new: a
/// different result, or the same result about another revision.
pub(super) fn reconcile(old: Option<&Status>, new: &Status) -> Option<Notice> {
    if old.is_some_and(|o| o.result == new.result && o.revision == new.revision) {
        return None;
    }
    let (state, message) = match new.result {
        StatusResult::Synced => (
            State::Success,
            format!("applied: {} objects managed", new.objects),
        ),
        StatusResult::Failed | StatusResult::Refused => (State::Failure, new.message.clone()),
    };
    Some(Notice {
        topic: Topic::Reconcile,
        subject: "repository".into(),
        state,
        message,
        revision: new.revision.clone(),
    })
}

/// Notices waiting for the worker, at most: beyond, they are dropped
/// (with a warning) rather than held without bound behind a dead sink.
const QUEUED: usize = 1000;

/// The worker that sends notices, one after the other.
pub(super) struct Announcer {
    notifier: Arc<Notifier>,
    queue: SyncSender<Notice>,
}

impl Announcer {
    /// The worker of `--notifications`, if given.
    pub(super) fn of(notifier: Option<&Arc<Notifier>>, log: &Arc<dyn Log>) -> Option<Announcer> {
        notifier.map(|n| Announcer::start(Arc::clone(n), Arc::clone(log)))
    }

    pub(super) fn start(notifier: Arc<Notifier>, log: Arc<dyn Log>) -> Announcer {
        let (queue, notices) = sync_channel::<Notice>(QUEUED);
        let sender = Arc::clone(&notifier);
        let worker = move || {
            for n in notices {
                for w in sender.send(&n) {
                    log.warn(&w);
                }
            }
        };
        // Ends when the controller (the queue's sender) is dropped.
        let _ = std::thread::Builder::new()
            .name("meshplan-notify".into())
            .spawn(worker);
        Announcer { notifier, queue }
    }
}

impl super::Controller {
    /// Queues `notices` for the sinks that hear about them.
    pub(super) fn announce(&self, notices: impl IntoIterator<Item = Notice>) {
        let Some(a) = &self.announcer else { return };
        for n in notices.into_iter().filter(|n| a.notifier.wants(n.topic)) {
            if let Err(TrySendError::Full(n) | TrySendError::Disconnected(n)) = a.queue.try_send(n)
            {
                self.log.warn(&format!(
                    "notification dropped ({QUEUED} waiting for the sinks): {}",
                    n.text()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::PauseReason;

    fn status(result: StatusResult, revision: &str) -> Status {
        Status {
            result,
            revision: Some(revision.into()),
            last_applied_revision: None,
            message: "the revision does not pass check".into(),
            diagnostics: Vec::new(),
            drift: Vec::new(),
            failures: Vec::new(),
            objects: 7,
            since: String::new(),
        }
    }

    #[test]
    fn only_news_about_the_reconcile_is_announced() {
        let bad = status(StatusResult::Failed, "a");
        let n = reconcile(None, &bad).unwrap();
        assert_eq!(
            (n.state, n.message.as_str()),
            (State::Failure, "the revision does not pass check")
        );
        assert!(
            reconcile(Some(&bad), &bad).is_none(),
            "the same failure again"
        );
        let fixed = status(StatusResult::Synced, "b");
        let n = reconcile(Some(&bad), &fixed).unwrap();
        assert_eq!(
            (n.state, n.revision.as_deref()),
            (State::Success, Some("b"))
        );
        assert!(reconcile(Some(&fixed), &fixed).is_none(), "a resync");
        assert!(
            reconcile(Some(&fixed), &status(StatusResult::Synced, "c")).is_some(),
            "a new revision applied"
        );
    }

    #[test]
    fn a_transition_says_how_the_rollout_stands() {
        let t = |to: &str, phase| Transitioned {
            service: "shop/cart".into(),
            from: "Progressing@step 1".into(),
            to: to.into(),
            reason: "why".into(),
            phase,
        };
        assert_eq!(
            rollout(&t("Progressing@step 2", Phase::Progressing), None).state,
            State::Pending
        );
        assert_eq!(
            rollout(&t("Succeeded@canary", Phase::Succeeded), None).state,
            State::Success
        );
        let back = Phase::RollingBack {
            reason: "why".into(),
        };
        assert_eq!(
            rollout(&t("RollingBack@stable", back), None).state,
            State::Failure
        );
        let frozen = Phase::Paused {
            reason: PauseReason::Frozen,
        };
        assert_eq!(
            rollout(&t("Paused@step 1", frozen), None).state,
            State::Failure
        );
        let gate = Phase::Paused {
            reason: PauseReason::ManualGate,
        };
        assert_eq!(
            rollout(&t("Paused@step 1", gate), None).state,
            State::Pending
        );
        assert_eq!(
            rollout(&t("Succeeded@canary", Phase::Succeeded), Some("r")).message,
            "Progressing@step 1 → Succeeded@canary: why"
        );
    }
}
