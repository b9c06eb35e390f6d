//! Rollout state in the real API server, with the least-privilege
//! ServiceAccount: a restarted reconciler reads back the same step; a
//! stale writer is refused; a lost state is absent (the rollout restarts
//! at its beginning). Needs the test environment.

use meshplan_policy_lang::intent::rollout::Rollout;
use meshplan_reconciler::rollout::store::{self, StoreError};
use meshplan_reconciler::rollout::{At, Event, State, Verdict};
use meshplan_reconciler::Cluster;
use meshplan_testenv::{unique_name, TestEnv};

#[tokio::test]
async fn a_rollout_state_survives_a_restart_and_refuses_stale_writers() {
    let env = TestEnv::get();
    let cluster = Cluster::from_client(env.sa_client().await);
    let svc = unique_name("web");
    let r: Rollout = serde_saphyr::from_str(
        "stable: v1\ncanary: v2\nsteps: [{ weight: 10 }, { weight: 50 }, { weight: 100 }]\nanalysis:\n  successRate: { min: 99 }\n",
    )
    .unwrap();
    assert!(store::load(&cluster, "meshplan-system", "shop", &svc)
        .await
        .unwrap()
        .is_none());

    let mut s = State::new("v2", "f1", 0);
    s.start(&r, 0);
    s.handle(&r, Event::Analysis(Verdict::Pass), 10).unwrap();
    assert_eq!(s.at, At::Step(1));
    let v1 = store::save(&cluster, "meshplan-system", "shop", &svc, &s, None)
        .await
        .unwrap();

    // "Restarted": a fresh read resumes at the same step.
    let back = store::load(&cluster, "meshplan-system", "shop", &svc)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.state, s);
    let resumed = State::resume_or_restart(Some(back.state.clone()), &r, "f1", 20);
    assert_eq!(resumed.at, At::Step(1));

    // Two writers from the same read: the second is refused.
    let mut a = back.state.clone();
    a.handle(&r, Event::Analysis(Verdict::Pass), 30).unwrap();
    store::save(&cluster, "meshplan-system", "shop", &svc, &a, Some(&v1))
        .await
        .unwrap();
    let stale = State::new("v2", "f1", 0);
    let err = store::save(&cluster, "meshplan-system", "shop", &svc, &stale, Some(&v1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // A second "create" is refused too.
    assert!(
        store::save(&cluster, "meshplan-system", "shop", &svc, &stale, None)
            .await
            .is_err()
    );

    let all = store::list(&cluster, "meshplan-system").await.unwrap();
    assert_eq!(all[&format!("shop/{svc}")].state.at, At::Step(2));
}

#[tokio::test]
async fn listing_reads_every_page_of_states() {
    let env = TestEnv::get();
    let cluster = Cluster::from_client(env.sa_client().await);
    // More than one list page (100) of states of a namespace of this test.
    let ns = unique_name("paged");
    let s = State::new("v2", "f1", 0);
    let saves = (0..150).map(|i| {
        let (cluster, ns, s) = (&cluster, &ns, &s);
        async move {
            store::save(cluster, "meshplan-system", ns, &format!("svc-{i}"), s, None)
                .await
                .unwrap()
        }
    });
    futures::future::join_all(saves).await;
    let all = store::list(&cluster, "meshplan-system").await.unwrap();
    let ours = all
        .keys()
        .filter(|k| k.starts_with(&format!("{ns}/")))
        .count();
    assert_eq!(ours, 150);
}
