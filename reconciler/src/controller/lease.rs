//! Leader election on a `coordination.k8s.io/v1` Lease, so several
//! replicas run with exactly one acting.
//!
//! # Expected flow
//!
//! Every `retry` (2 s) a replica reads the Lease. If nobody holds it, or
//! the holder has not renewed it for `duration` (15 s), it takes it with an
//! update that carries the Lease's `resourceVersion`: of two replicas
//! trying at once, the API server lets exactly one win (the other gets a
//! conflict and stays a follower). The leader renews every `retry`; one
//! that cannot renew within `duration` steps down by itself, before anyone
//! else may take over. On shutdown the leader clears the holder, so a
//! follower takes over at its next try instead of waiting out the lease.
//!
//! # Guarantees
//!
//! - At most one replica believes it leads at any time, provided clocks
//!   tick at the same rate (not that they agree): a leader steps down
//!   after `duration - retry` without a successful renewal, measured on
//!   its own monotonic clock.
//! - Leadership changes are published on a `watch` channel; the
//!   controller reconciles only while it holds `true`.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;

/// Which Lease, and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (the pod name, or host and pid).
    pub identity: String,
    pub duration: Duration,
    pub retry: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        }
    }
}

/// Runs the election until `shutdown` turns true; publishes leadership on
/// `leader`.
pub async fn elect(
    client: Client,
    cfg: LeaseConfig,
    leader: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renewed: Option<Instant> = None;
    loop {
        let holds = try_hold(&api, &cfg).await;
        match holds {
            Ok(true) => last_renewed = Some(Instant::now()),
            Ok(false) => last_renewed = None,
            // Unreachable API server: keep leading only while the lease
            // we hold cannot have expired for others.
            Err(_) => {}
        }
        let leading = last_renewed.is_some_and(|t| t.elapsed() + cfg.retry < cfg.duration);
        leader.send_if_modified(|l| std::mem::replace(l, leading) != leading);
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    if *leader.borrow() {
        let _ = release(&api, &cfg).await;
        leader.send_replace(false);
    }
}

/// One attempt: `Ok(true)` when we hold the lease afterwards.
async fn try_hold(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let mut lease = Lease::default();
        lease.metadata.name = Some(cfg.name.clone());
        lease.spec = Some(spec(0, None));
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let holder = current.holder_identity.clone().unwrap_or_default();
    let ours = holder == cfg.identity;
    let expired = match (&current.renew_time, current.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(secs)) => {
            let age = now.duration_since(*renewed);
            age.as_secs() >= i64::from(secs)
        }
        _ => true,
    };
    if !ours && !holder.is_empty() && !expired {
        return Ok(false);
    }
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
    let acquired = if ours {
        current.acquire_time.clone()
    } else {
        None
    };
    lease.spec = Some(spec(transitions, acquired));
    // The resourceVersion read above makes this a compare-and-swap.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    if let Some(mut lease) = api.get_opt(&cfg.name).await? {
        if let Some(spec) = lease.spec.as_mut() {
            if spec.holder_identity.as_deref() == Some(cfg.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                api.replace(&cfg.name, &PostParams::default(), &lease)
                    .await?;
            }
        }
    }
    Ok(())
}
