//! `meshplan apply`: check, compile, plan against the cluster, apply.

use std::process::ExitCode;

use meshplan_reconciler::apply::{self, failure_line};
use meshplan_reconciler::diff::{self, Action};
use meshplan_reconciler::{live, source, Cluster};

use super::cluster::{at_cluster_positions, connect_options, runtime};
use super::output::print;
use super::progress::Printer;
use super::render::compile_repo;
use super::{ApplyArgs, Color};

pub fn run(args: &ApplyArgs, color: Color) -> anyhow::Result<ExitCode> {
    let checked = match compile_repo(&args.compile, color, "apply", true)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let revision = args
        .revision
        .clone()
        .or_else(|| source::revision_of(&args.compile.repo));
    let dry_run = args.dry_run.is_some();
    runtime()?.block_on(async {
        let t = &args.target;
        let cluster = Cluster::connect(&connect_options(t)).await?;
        let compiled = at_cluster_positions(&cluster, &t.inventory, checked).await?;
        let snapshot = live::read(&cluster, &compiled.objects, &t.inventory, t.concurrency).await?;
        let revision = diff::Revision::new(revision, std::sync::Arc::new(compiled.summary));
        let plan = diff::plan(&compiled.objects, &revision, &snapshot);

        // What is about to happen, one line per object (like kubectl).
        let mut lines = String::new();
        for c in plan
            .changes
            .iter()
            .filter(|c| c.action != Action::Unchanged)
        {
            let verb = match (c.action, args.prune) {
                (Action::Prune, false) => "not pruned (no --prune)",
                (a, _) => a.verb(),
            };
            lines.push_str(&format!(
                "{verb} {}{}\n",
                c.id(),
                if c.drift { " (drift)" } else { "" }
            ));
            if let Some(r) = &c.reason {
                lines.push_str(&format!("  {r}\n"));
            }
        }
        print(&lines)?;

        let opts = apply::Options {
            concurrency: t.concurrency,
            prune: args.prune,
            dry_run,
            timeout: args.timeout,
            inventory: t.inventory.clone(),
        };
        let outcome = apply::apply(
            &cluster,
            &plan,
            snapshot.inventory_exists.then_some(&snapshot.inventory),
            &opts,
            &Printer::new(),
        )
        .await?;

        let c = plan.counts();
        let mut summary = format!(
            "{}applied {} object(s), pruned {}, {} unchanged",
            if dry_run { "dry run (server): " } else { "" },
            outcome.applied,
            outcome.pruned,
            c.unchanged
        );
        if outcome.not_pruned > 0 {
            summary.push_str(&format!(
                ", {} no longer desired (not pruned{})",
                outcome.not_pruned,
                if args.prune {
                    ": an earlier phase failed"
                } else {
                    ": use --prune"
                }
            ));
        }
        if c.drift > 0 {
            summary.push_str(&format!(", {} drifted object(s) restored", c.drift));
        }
        if outcome.retries > 0 {
            summary.push_str(&format!(", {} call(s) retried", outcome.retries));
        }
        summary.push_str(&format!(" in {:.1?}", outcome.elapsed));
        if let Some(r) = &revision.id {
            summary.push_str(&format!(" (revision {})", short(r)));
        }
        eprintln!("{summary}");

        let mut code = ExitCode::SUCCESS;
        if !outcome.ok() {
            eprintln!("apply failed: {} object(s) rejected:", outcome.failed.len());
            for (id, e) in &outcome.failed {
                eprintln!("  {}", failure_line(id, e));
            }
            if !outcome.skipped_phases.is_empty() {
                eprintln!(
                    "  not applied, as they depend on the failed phase: {}",
                    outcome.skipped_phases.join(", ")
                );
            }
            code = ExitCode::from(1);
        }
        if c.refuse > 0 {
            eprintln!(
                "apply incomplete: {} object(s) exist and are not meshplan's (listed above)",
                c.refuse
            );
            code = ExitCode::from(1);
        }
        Ok(code)
    })
}

/// A commit hash shortened to 12 digits, keeping a `-dirty` suffix.
fn short(rev: &str) -> String {
    let (hash, suffix) = rev.split_once('-').map_or((rev, ""), |(h, s)| (h, s));
    if hash.len() > 12 && hash.chars().all(|c| c.is_ascii_hexdigit()) {
        match suffix {
            "" => hash[..12].to_owned(),
            s => format!("{}-{s}", &hash[..12]),
        }
    } else {
        rev.to_owned()
    }
}
