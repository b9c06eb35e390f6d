//! `meshplan rollout simulate`: a service's rollout replayed over
//! Prometheus's history (the replay itself is the reconciler's
//! `rollout::simulate`; this is the command line around it).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use chrono::{DateTime, SecondsFormat};
use meshplan_compiler::{check_dir, rollout};
use meshplan_policy_lang::diagnostic::human;
use meshplan_policy_lang::intent::Duration;
use meshplan_reconciler::controller::rollouts::unix_now;
use meshplan_reconciler::rollout::analysis::Prometheus;
use meshplan_reconciler::rollout::simulate::{simulate, SimEvent, Simulation};

use super::output::print;
use super::{ListFormat, RolloutSimulateArgs};

/// The longest period replayed, in seconds.
const MAX_PERIOD: u64 = 400 * 86_400;

pub fn run(a: &RolloutSimulateArgs) -> anyhow::Result<ExitCode> {
    let now = unix_now();
    let from = moment(&a.from, now).context("--from")?;
    let to = moment(&a.to, now).context("--to")?;
    if to <= from {
        bail!("--to must be after --from");
    }
    if to > now {
        bail!("--to is in the future: there is no history there yet");
    }
    if to - from > MAX_PERIOD {
        bail!("the period is over 400 days: longer than any Prometheus keeps, and than a replay should hold");
    }
    let (repo, report) =
        check_dir(&a.repo).with_context(|| format!("cannot read {}", a.repo.display()))?;
    if !report.passes(false) {
        for d in report.diagnostics.iter().filter(|d| d.is_error()) {
            eprintln!("{}", human::render(d));
        }
        eprintln!(
            "simulate refused: the repository does not pass check ({})",
            human::summary_line(report.summary())
        );
        return Ok(ExitCode::from(report.exit_status(false)));
    }
    let config = repo.config.as_ref().map(|c| &c.value);
    let url = a
        .prometheus
        .clone()
        .or_else(|| {
            config
                .and_then(|c| c.metrics.as_ref())
                .map(|m| m.url.clone())
        })
        .filter(|u| !u.is_empty())
        .context(
            "no Prometheus to read: pass --prometheus URL, or set `metrics.url` in meshplan.yaml",
        )?;
    let keys: Vec<String> = repo
        .services
        .iter()
        .map(|s| format!("{}/{}", repo.namespace_of(&s.value), s.value.metadata.name))
        .collect();
    let key = find(keys, &a.service)?;
    let subject = rollout::subjects(&repo)
        .context("cannot lower the repository")?
        .into_iter()
        .find(|s| s.key() == key);
    let Some((subject, rollout)) = subject.and_then(|s| s.rollout().cloned().map(|r| (s, r)))
    else {
        bail!("`{key}` has no `rollout` to simulate");
    };
    let prom = Prometheus {
        url,
        http: Arc::new(super::run::http_client(a.http_credentials.as_deref())?),
    };
    let sim = simulate(&prom, &subject, &rollout, from, to);
    match a.format {
        ListFormat::Json => print(&(serde_json::to_string_pretty(&sim)? + "\n"))?,
        ListFormat::Text => print(&text(&sim))?,
    }
    Ok(ExitCode::from(u8::from(sim.failed)))
}

/// The key of the service `wanted` names: `namespace/name`, or a name
/// only one namespace has.
fn find(keys: Vec<String>, wanted: &str) -> anyhow::Result<String> {
    let mut matching: Vec<&String> = keys
        .iter()
        .filter(|k| {
            *k == wanted
                || (!wanted.contains('/') && k.split_once('/').map(|(_, n)| n) == Some(wanted))
        })
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0).clone()),
        0 => bail!(
            "no service `{wanted}` in the repository; services: {}",
            keys.join(", ")
        ),
        _ => bail!(
            "`{wanted}` is ambiguous: {}; name it as namespace/name",
            matching
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A moment: RFC 3339, unix seconds, `now`, or `now-<duration>`.
fn moment(s: &str, now: u64) -> anyhow::Result<u64> {
    if s == "now" {
        return Ok(now);
    }
    if let Some(ago) = s.strip_prefix("now-") {
        let d = Duration::parse(ago).map_err(anyhow::Error::msg)?;
        return Ok(now.saturating_sub(d.as_millis() / 1000));
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    let t = DateTime::parse_from_rfc3339(s).with_context(|| {
        format!(
            "`{s}` is not a time: use RFC 3339 (2026-11-24T09:00:00Z), unix seconds, now or now-7d"
        )
    })?;
    u64::try_from(t.timestamp()).context("a time before 1970")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn stamp(t: u64) -> String {
    DateTime::from_timestamp(t as i64, 0).map_or_else(
        || t.to_string(),
        |d| d.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// The simulation as a person reads it: one line per run of analyses and
/// per move, then the result and the queries.
fn text(sim: &Simulation) -> String {
    let mut out = format!(
        "simulating {} from {} to {}, an analysis every {}s\n",
        sim.service,
        stamp(sim.from),
        stamp(sim.to),
        sim.interval
    );
    let mut analyses = 0;
    for e in &sim.events {
        match e {
            SimEvent::Analyses {
                first,
                last,
                count,
                verdict,
                detail,
                ..
            } => {
                analyses += count;
                let span = if first == last {
                    stamp(*first)
                } else {
                    format!("{} … {}", stamp(*first), stamp(*last))
                };
                let why = if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                };
                out.push_str(&format!("{span}  {verdict} ×{count}{why}\n"));
            }
            SimEvent::Transition {
                time,
                to,
                reason,
                weight,
                ..
            } => out.push_str(&format!(
                "{}  → {to} (canary {weight}%): {reason}\n",
                stamp(*time)
            )),
        }
    }
    out.push_str(&format!(
        "result: {} (canary at {}%) after {analyses} analyses; {} in {} to Prometheus\n",
        sim.outcome,
        sim.weight,
        plural(sim.queries.len(), "query", "queries"),
        plural(sim.requests, "range request", "range requests"),
    ));
    if !sim.queries.is_empty() {
        out.push_str("queries:\n");
        for q in &sim.queries {
            out.push_str(&format!("  {q}\n"));
        }
    }
    out
}
