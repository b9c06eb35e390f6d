//! What the commands that talk to a cluster share (apply, diff, rollout,
//! run): the async runtime, how to connect, and the revision compiled at
//! the cluster's rollout positions.

use anyhow::Context as _;
use meshplan_reconciler::{Cluster, ConnectOptions};

use super::render::Checked;
use super::ClusterArgs;

/// A runtime for the commands that talk to a cluster.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn connect_options(t: &ClusterArgs) -> ConnectOptions {
    ConnectOptions {
        kubeconfig: t.kubeconfig.clone(),
        context: t.context.clone(),
    }
}

/// The compiled revision at the cluster's rollout positions (compiled again
/// only when a rollout runs there): applying or diffing never moves a
/// running canary.
pub async fn at_cluster_positions(
    cluster: &Cluster,
    inventory: &meshplan_reconciler::InventoryName,
    checked: Checked,
) -> anyhow::Result<meshplan_compiler::Compiled> {
    let positions = meshplan_reconciler::controller::rollouts::current_positions(
        cluster,
        &inventory.namespace,
        &checked.repo,
    )
    .await?;
    if positions.by_service.is_empty() {
        return Ok(checked.compiled);
    }
    let opts = meshplan_compiler::Options {
        positions,
        ..checked.options
    };
    Ok(meshplan_compiler::compile(
        &checked.repo,
        &checked.report,
        &opts,
    )?)
}
