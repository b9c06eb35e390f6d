//! `meshplan rollout status|promote|abort|pause|resume|skip-analysis`
//! (`simulate` is in simulate.rs).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use meshplan_reconciler::controller::rollouts::unix_now;
use meshplan_reconciler::rollout::store::{self, Stored};
use meshplan_reconciler::rollout::{Command, CommandKind, State};
use meshplan_reconciler::Cluster;

use super::cluster::{connect_options, runtime};
use super::output::print;
use super::{ClusterArgs, ListFormat, RolloutArgs, RolloutCommand, RolloutStatusArgs};

pub fn run(c: &RolloutCommand) -> anyhow::Result<ExitCode> {
    match c {
        RolloutCommand::Status(a) => status(a),
        RolloutCommand::Promote(a) => command(
            &a.rollout,
            if a.force {
                CommandKind::PromoteForce
            } else {
                CommandKind::Promote
            },
        ),
        RolloutCommand::Abort(a) => command(a, CommandKind::Abort),
        RolloutCommand::Pause(a) => command(a, CommandKind::Pause),
        RolloutCommand::Resume(a) => command(a, CommandKind::Resume),
        RolloutCommand::SkipAnalysis(a) => command(a, CommandKind::SkipAnalysis),
        RolloutCommand::Simulate(a) => super::simulate::run(a),
    }
}

fn home(t: &ClusterArgs) -> String {
    t.inventory.namespace.clone()
}

/// The stored rollout `wanted` names: `namespace/name`, or a name that
/// only one namespace has.
fn find(all: &BTreeMap<String, Stored>, wanted: &str) -> anyhow::Result<(String, Stored)> {
    if let Some(s) = all.get(wanted) {
        return Ok((wanted.to_owned(), s.clone()));
    }
    let matching: Vec<_> = all
        .iter()
        .filter(|(k, _)| k.rsplit('/').next() == Some(wanted))
        .collect();
    match matching.as_slice() {
        [(k, s)] => Ok(((*k).clone(), (*s).clone())),
        [] => anyhow::bail!(
            "no rollout for `{wanted}`{}",
            if all.is_empty() {
                ": none has started (is `meshplan run` running with this --inventory?)".to_owned()
            } else {
                format!(
                    "; rollouts: {}",
                    all.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }
        ),
        many => anyhow::bail!(
            "`{wanted}` is ambiguous: {}; name it as namespace/name",
            many.iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn status(a: &RolloutStatusArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let cluster = Cluster::connect(&connect_options(&a.target)).await?;
        loop {
            let all = store::list(&cluster, &home(&a.target)).await?;
            let shown: BTreeMap<String, Stored> = match &a.service {
                Some(s) => {
                    let (k, v) = find(&all, s)?;
                    BTreeMap::from([(k, v)])
                }
                None => all,
            };
            let text = match a.format {
                ListFormat::Json => {
                    let v: Vec<serde_json::Value> = shown
                        .iter()
                        .map(|(k, s)| {
                            let mut v = serde_json::to_value(&s.state).unwrap_or_default();
                            v["service"] = k.clone().into();
                            v
                        })
                        .collect();
                    serde_json::to_string_pretty(&v)? + "\n"
                }
                ListFormat::Text if shown.is_empty() => {
                    "no rollouts: none has started (is `meshplan run` running with this --inventory?)\n".into()
                }
                ListFormat::Text => shown
                    .iter()
                    .map(|(k, s)| describe(k, &s.state, unix_now()))
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            if !a.watch {
                print(&text)?;
                return Ok(ExitCode::SUCCESS);
            }
            // Clear the screen and draw again, in place.
            print(&format!("\x1b[2J\x1b[H{text}"))?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// A rollout in a few lines.
pub fn describe(key: &str, s: &State, now: u64) -> String {
    let at = match s.at {
        meshplan_reconciler::rollout::At::Stable => "stable".to_owned(),
        meshplan_reconciler::rollout::At::Shadow => "shadow (A/B match or mirror)".to_owned(),
        meshplan_reconciler::rollout::At::Step(i) => format!("step {}", i + 1),
        meshplan_reconciler::rollout::At::Canary => "promoted".to_owned(),
    };
    let mut out = format!(
        "{key}: {} at {at} — {} {}%, {} {}%\n",
        s.phase.name(),
        if s.stable.is_empty() {
            "stable"
        } else {
            &s.stable
        },
        100 - s.weight.min(100),
        s.canary,
        s.weight
    );
    match &s.phase {
        meshplan_reconciler::rollout::Phase::Failed { reason }
        | meshplan_reconciler::rollout::Phase::RollingBack { reason } => {
            out.push_str(&format!("  why:      {reason}\n"));
        }
        _ => {}
    }
    out.push_str(&format!("  next:     {}\n", s.next));
    if s.skip_analysis {
        out.push_str("  analysis: skipped (advancing on time alone)\n");
    }
    if let Some(a) = &s.last_analysis {
        out.push_str(&format!(
            "  analysis: {} ({}s ago)\n",
            a.verdict,
            now.saturating_sub(a.time)
        ));
        for c in &a.checks {
            out.push_str(&format!("    {:<13} {}\n", c.outcome, c.detail));
        }
    }
    if let Some(t) = s.history.last() {
        out.push_str(&format!(
            "  last:     {} → {} ({}, {}s ago)\n",
            t.from,
            t.to,
            t.reason,
            now.saturating_sub(t.time)
        ));
    }
    out
}

fn command(a: &RolloutArgs, kind: CommandKind) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let cluster = Cluster::connect(&connect_options(&a.target)).await?;
        let home = home(&a.target);
        let id = format!("{}-{}", std::process::id(), unix_now());
        // Queue the command (compare-and-swap: a concurrent write by the
        // reconciler makes us read again).
        let key = loop {
            let all = store::list(&cluster, &home).await?;
            let (key, stored) = find(&all, &a.service)?;
            let (ns, name) = key.split_once('/').context("a stored key is namespace/name")?;
            let mut state = stored.state.clone();
            state.command = Some(Command {
                id: id.clone(),
                kind,
                requested: unix_now(),
            });
            match store::save(&cluster, &home, ns, name, &state, Some(&stored.resource_version)).await {
                Ok(_) => break key,
                Err(store::StoreError::Conflict(_)) => continue,
                Err(store::StoreError::Api(e)) => return Err(e.into()),
            }
        };
        eprintln!("{} {key}: queued; waiting for the reconciler…", kind.name());
        let deadline = Instant::now() + a.wait;
        let (ns, name) = key.split_once('/').context("namespace/name")?;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Some(stored) = store::load(&cluster, &home, ns, name).await? else {
                continue;
            };
            match &stored.state.command_result {
                Some(r) if r.id == id && r.accepted => {
                    println!("{} {key}: {}", kind.name(), r.message);
                    return Ok(ExitCode::SUCCESS);
                }
                Some(r) if r.id == id => {
                    println!("{} {key} refused: {}", kind.name(), r.message);
                    return Ok(ExitCode::from(1));
                }
                _ => {}
            }
        }
        anyhow::bail!(
            "{} {key}: still queued after {:?}: no reconciler carried it out (is `meshplan run` running and leading?); it runs when one does",
            kind.name(),
            a.wait
        )
    })
}
