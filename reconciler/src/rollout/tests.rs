use super::*;

fn rollout(yaml: &str) -> Rollout {
    serde_saphyr::from_str(yaml).expect("a rollout")
}

const CANARY: &str = "stable: v1\ncanary: v2\nsteps:\n  - { weight: 10, pause: 1m }\n  - { weight: 50 }\n  - gate: manual\n  - { weight: 100 }\nanalysis:\n  failureLimit: 2\n  inconclusiveLimit: 2\n  successRate: { min: 99 }\n";

fn started(r: &Rollout) -> State {
    let mut s = State::new("v2", "f1", 0);
    s.start(r, 0);
    s
}

fn pass(s: &mut State, r: &Rollout, now: u64) -> Vec<Effect> {
    s.handle(r, Event::Analysis(Verdict::Pass), now).unwrap()
}

#[test]
fn a_healthy_canary_walks_every_step_waits_at_the_gate_and_promotes() {
    let r = rollout(CANARY);
    let mut s = started(&r);
    assert_eq!((s.phase.clone(), s.at), (Phase::Progressing, At::Step(0)));
    // A pass before the pause elapsed does not advance.
    assert!(!pass(&mut s, &r, 30).contains(&Effect::Apply(At::Step(1))));
    assert_eq!(s.at, At::Step(0));
    assert!(pass(&mut s, &r, 61).contains(&Effect::Apply(At::Step(1))));
    // Step 1 has no pause: a pass moves on, to the manual gate.
    pass(&mut s, &r, 62);
    assert_eq!(
        (s.phase.clone(), s.at),
        (
            Phase::Paused {
                reason: PauseReason::ManualGate
            },
            At::Step(2)
        )
    );
    // Checks do not pass a gate.
    pass(&mut s, &r, 63);
    assert_eq!(s.at, At::Step(2));
    assert!(
        s.handle(&r, Event::Resume, 64).is_err(),
        "resume does not pass a gate"
    );
    s.handle(&r, Event::Promote { force: false }, 65).unwrap();
    assert_eq!((s.phase.clone(), s.at), (Phase::Progressing, At::Step(3)));
    let fx = pass(&mut s, &r, 66);
    assert!(fx.contains(&Effect::Apply(At::Canary)), "{fx:?}");
    assert_eq!(s.phase, Phase::Promoting);
    s.settle(67);
    assert_eq!(s.phase, Phase::Succeeded);
    assert_eq!(Position::from(s.at), Position::Promoted);
}

#[test]
fn failure_limit_consecutive_failures_roll_back() {
    let r = rollout(CANARY);
    let mut s = started(&r);
    pass(&mut s, &r, 61);
    assert_eq!(s.at, At::Step(1));
    s.handle(&r, Event::Analysis(Verdict::Fail("5% errors".into())), 70)
        .unwrap();
    assert_eq!(s.failures, 1);
    // A pass in between resets the count: fail, pass, fail is no rollback.
    let r2 = rollout(&CANARY.replace("  - { weight: 50 }\n", "  - { weight: 50, pause: 1h }\n"));
    let mut gated = started(&r2);
    pass(&mut gated, &r2, 61);
    gated
        .handle(&r2, Event::Analysis(Verdict::Fail("x".into())), 70)
        .unwrap();
    pass(&mut gated, &r2, 71);
    assert_eq!(gated.failures, 0);
    gated
        .handle(&r2, Event::Analysis(Verdict::Fail("x".into())), 72)
        .unwrap();
    assert_eq!(
        (gated.phase.clone(), gated.at),
        (Phase::Progressing, At::Step(1))
    );
    let mut s = started(&r);
    pass(&mut s, &r, 61);
    s.handle(&r, Event::Analysis(Verdict::Fail("5% errors".into())), 70)
        .unwrap();
    assert_eq!(s.phase, Phase::Progressing);
    let fx = s
        .handle(&r, Event::Analysis(Verdict::Fail("6% errors".into())), 80)
        .unwrap();
    assert!(fx.contains(&Effect::Apply(At::Stable)), "{fx:?}");
    assert!(
        matches!(&s.phase, Phase::RollingBack { reason } if reason.contains("2 failed checks in a row (limit 2): 6% errors"))
    );
    s.settle(81);
    assert!(matches!(s.phase, Phase::Failed { .. }));
    assert_eq!(Position::from(s.at), Position::NotStarted);
}

#[test]
fn inconclusive_checks_never_advance_and_pause_at_the_limit() {
    let r = rollout(CANARY);
    let mut s = started(&r);
    s.handle(
        &r,
        Event::Analysis(Verdict::Inconclusive("3 requests < 100".into())),
        61,
    )
    .unwrap();
    assert_eq!((s.phase.clone(), s.at), (Phase::Progressing, At::Step(0)));
    s.handle(
        &r,
        Event::Analysis(Verdict::Inconclusive("no data".into())),
        70,
    )
    .unwrap();
    assert_eq!(
        s.phase,
        Phase::Paused {
            reason: PauseReason::Inconclusive
        }
    );
    assert_eq!(s.at, At::Step(0), "the weights hold");
    s.handle(&r, Event::Resume, 80).unwrap();
    assert_eq!(s.phase, Phase::Progressing);
    assert!(pass(&mut s, &r, 81).contains(&Effect::Apply(At::Step(1))));
}

#[test]
fn on_inconclusive_rollback_rolls_back() {
    let r = rollout(&CANARY.replace(
        "inconclusiveLimit: 2",
        "inconclusiveLimit: 1\n  onInconclusive: rollback",
    ));
    let mut s = started(&r);
    s.handle(
        &r,
        Event::Analysis(Verdict::Inconclusive("Prometheus unreachable".into())),
        5,
    )
    .unwrap();
    assert!(matches!(s.phase, Phase::RollingBack { .. }));
}

#[test]
fn freeze_on_failure_holds_the_weights() {
    let r = rollout(&format!("{CANARY}freezeOnFailure: true\n"));
    let mut s = started(&r);
    pass(&mut s, &r, 61);
    for t in [70, 80] {
        s.handle(&r, Event::Analysis(Verdict::Fail("bad".into())), t)
            .unwrap();
    }
    assert_eq!(
        s.phase,
        Phase::Paused {
            reason: PauseReason::Frozen
        }
    );
    assert_eq!(s.at, At::Step(1));
}

#[test]
fn without_analysis_time_alone_advances() {
    let r = rollout(
        "stable: v1\ncanary: v2\nsteps:\n  - { weight: 20, pause: 10s }\n  - { weight: 100 }\n",
    );
    let mut s = started(&r);
    assert!(s.handle(&r, Event::Tick, 5).unwrap().is_empty());
    assert!(s
        .handle(&r, Event::Tick, 10)
        .unwrap()
        .contains(&Effect::Apply(At::Step(1))));
}

#[test]
fn ab_tests_and_mirrors_start_in_the_shadow_stage() {
    let ab = rollout("strategy: abTest\nstable: v1\ncanary: v2\nabTest:\n  match: [{ headers: { x-beta: { exact: 'on' } } }]\n  iterations: 2\nanalysis:\n  successRate: { min: 99 }\n");
    let mut s = started(&ab);
    assert_eq!(s.at, At::Shadow);
    pass(&mut s, &ab, 1);
    assert_eq!(s.at, At::Shadow, "one of two iterations");
    pass(&mut s, &ab, 2);
    assert_eq!((s.phase.clone(), s.at), (Phase::Promoting, At::Canary));

    let mirror = rollout("strategy: mirror\nstable: v1\ncanary: v2\nmirror: { percentage: 20, iterations: 1 }\nsteps: [{ weight: 50 }, { weight: 100 }]\nanalysis:\n  successRate: { min: 99 }\n");
    let mut s = started(&mirror);
    assert_eq!(s.at, At::Shadow);
    pass(&mut s, &mirror, 1);
    assert_eq!(s.at, At::Step(0));
}

#[test]
fn commands_that_make_no_sense_are_refused_and_change_nothing() {
    let r = rollout(CANARY);
    let mut s = started(&r);
    let before = s.clone();
    assert!(s.handle(&r, Event::Resume, 1).is_err());
    assert!(s.handle(&r, Event::Promote { force: false }, 1).is_err());
    assert_eq!(s, before);
    s.handle(&r, Event::Pause, 2).unwrap();
    assert!(s.handle(&r, Event::Pause, 3).is_err());
    pass(&mut s, &r, 100);
    assert_eq!(s.at, At::Step(0), "a paused rollout does not advance");
    s.handle(&r, Event::Resume, 101).unwrap();
    s.handle(&r, Event::Abort, 102).unwrap();
    assert!(matches!(s.phase, Phase::RollingBack { .. }));
    s.settle(103);
    assert!(s.handle(&r, Event::Abort, 104).is_err());
}

#[test]
fn force_promote_and_skip_analysis() {
    let r = rollout(CANARY);
    let mut s = started(&r);
    s.handle(&r, Event::Promote { force: true }, 5).unwrap();
    assert_eq!((s.phase.clone(), s.at), (Phase::Promoting, At::Canary));
    let mut s = started(&r);
    s.handle(&r, Event::SkipAnalysis, 1).unwrap();
    assert!(s
        .handle(&r, Event::Tick, 61)
        .unwrap()
        .contains(&Effect::Apply(At::Step(1))));
}

#[test]
fn a_new_canary_or_a_lost_state_restarts_at_the_beginning() {
    let r = rollout(CANARY);
    let mut s = started(&r);
    pass(&mut s, &r, 61);
    let same = State::resume_or_restart(Some(s.clone()), &r, "f1", 90);
    assert_eq!(same.at, At::Step(1), "a restarted controller resumes");
    let changed = State::resume_or_restart(Some(s.clone()), &r, "f2", 90);
    assert_eq!((changed.phase, changed.at), (Phase::Idle, At::Stable));
    let lost = State::resume_or_restart(None, &r, "f1", 90);
    assert_eq!(lost.at, At::Stable, "never 100 %");
}

#[test]
fn the_state_survives_serialization_and_keeps_a_bounded_history() {
    let r = rollout("stable: v1\ncanary: v2\nsteps:\n  - { weight: 20 }\n  - { weight: 100 }\n");
    let mut s = started(&r);
    for t in 0..200 {
        let _ = s.handle(&r, Event::Pause, t);
        let _ = s.handle(&r, Event::Resume, t);
    }
    assert_eq!(s.history.len(), HISTORY);
    let json = serde_json::to_string(&s).unwrap();
    let back: State = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn a_held_stage_counts_its_checks_but_does_not_advance() {
    let r = rollout(CANARY);
    let mut s = started(&r);
    s.hold = true;
    let fx = pass(&mut s, &r, 61);
    assert!(!fx.contains(&Effect::Apply(At::Step(1))), "{fx:?}");
    assert_eq!((s.at, s.passes), (At::Step(0), 1));
    s.hold = false;
    assert!(pass(&mut s, &r, 62).contains(&Effect::Apply(At::Step(1))));
}

#[test]
fn the_hold_flag_is_never_stored() {
    let mut s = State::new("v2", "f1", 0);
    s.hold = true;
    let back: State = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert!(!back.hold);
}

#[test]
fn blue_green_keeps_the_canary_dark_until_promotion() {
    let r = rollout("strategy: blueGreen\nstable: v1\ncanary: v2\nsteps:\n  - { weight: 100, pause: 30s }\nanalysis:\n  successRate: { min: 99 }\n");
    let mut s = started(&r);
    assert_eq!(s.at, At::Step(0));
    assert_eq!(
        meshplan_compiler::rollout::canary_weight(&r, s.at.into()),
        0
    );
    pass(&mut s, &r, 10);
    assert_eq!(s.at, At::Step(0), "the pause has not elapsed");
    let fx = pass(&mut s, &r, 31);
    assert!(fx.contains(&Effect::Apply(At::Canary)), "{fx:?}");
    assert_eq!(
        meshplan_compiler::rollout::canary_weight(&r, s.at.into()),
        100
    );
}

/// A gate's webhook that keeps failing (its `failureLimit`) fails the
/// rollout wherever it waits, instead of holding it forever.
#[test]
fn a_webhook_past_its_failure_limit_fails_the_rollout_where_it_waits() {
    let r = rollout(CANARY);
    // Before the start: failed, nothing to roll back.
    let mut s = State::new("v2", "f1", 0);
    let fx = s.webhook_failed("load-test", 3, 5);
    assert!(
        matches!(&s.phase, Phase::Failed { reason } if reason.contains("`load-test` failed 3 times"))
    );
    assert_eq!(s.at, At::Stable);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Apply(_))));
    // At a stage: rolled back to stable.
    let mut s = started(&r);
    s.hook_failures = 3;
    let fx = s.webhook_failed("approve", 3, 10);
    assert!(matches!(&s.phase, Phase::RollingBack { reason } if reason.contains("`approve`")));
    assert!(fx.contains(&Effect::Apply(At::Stable)));
    assert_eq!(s.hook_failures, 0, "a transition starts the count again");
    // Rolling back, its rollback hook failing: finished, failed.
    s.webhook_failed("page", 2, 20);
    assert!(
        matches!(&s.phase, Phase::Failed { reason } if reason.contains("`approve`") && reason.contains("`page`"))
    );
    // Over: nothing happens.
    assert!(s.webhook_failed("page", 2, 30).is_empty());
}

#[test]
fn a_state_without_hook_failures_reads_and_writes_as_before() {
    let s = State::new("v2", "f1", 0);
    let json = serde_json::to_value(&s).unwrap();
    assert!(json.get("hookFailures").is_none(), "{json}");
    let back: State = serde_json::from_value(json).unwrap();
    assert_eq!(back.hook_failures, 0);
}
