//! A plan as text (terminals, CI logs), Markdown (a pull-request
//! comment) or JSON (machines).

use std::fmt::Write as _;

use super::{Action, Plan};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

/// Renders a plan. Unchanged objects are counted, not listed.
pub fn render(plan: &Plan, format: Format) -> String {
    match format {
        Format::Text => text(plan),
        Format::Markdown => markdown(plan),
        Format::Json => json(plan),
    }
}

/// `3 to create, 2 to update (1 drifted), 1 to prune, 40 unchanged`.
pub fn counts_line(plan: &Plan) -> String {
    let c = plan.counts();
    let mut s = format!("{} to create, {} to update", c.create, c.update);
    if c.drift > 0 {
        let _ = write!(s, " ({} drifted)", c.drift);
    }
    let _ = write!(s, ", {} to prune", c.prune);
    if c.refuse > 0 {
        let _ = write!(s, ", {} refused", c.refuse);
    }
    let _ = write!(s, ", {} unchanged", c.unchanged);
    s
}

fn title(c: &super::Change) -> String {
    let mut s = format!("{} {} {}", c.action.sigil(), c.action.verb(), c.id());
    if c.drift {
        s.push_str("  [drift: edited in the cluster]");
    }
    s
}

fn text(plan: &Plan) -> String {
    let mut out = String::new();
    for c in plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Unchanged)
    {
        let _ = writeln!(out, "{}", title(c));
        if let Some(r) = &c.reason {
            let _ = writeln!(out, "  {r}");
        }
        out.push_str(&c.diff);
        if !c.diff.is_empty() && !c.diff.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    if !plan.summary.is_empty() {
        out.push_str("What changes:\n");
        for s in &plan.summary {
            let _ = writeln!(out, "  {}", s.service);
            for l in &s.lines {
                let _ = writeln!(out, "    {l}");
            }
        }
        out.push('\n');
    }
    notes(plan, &mut out, "note: ");
    let _ = writeln!(out, "Plan: {}.", counts_line(plan));
    out
}

fn notes(plan: &Plan, out: &mut String, prefix: &str) {
    if !plan.unlisted.is_empty() {
        let _ = writeln!(
            out,
            "{prefix}{} object(s) wear meshplan's label but are not in its inventory, so are never pruned: {}",
            plan.unlisted.len(),
            plan.unlisted.join(", ")
        );
    }
    if !plan.gone_kinds.is_empty() {
        let _ = writeln!(
            out,
            "{prefix}the cluster no longer serves {}: objects of these kinds in the inventory cannot be pruned",
            plan.gone_kinds.join(", ")
        );
    }
}

fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### meshplan diff\n");
    let _ = writeln!(out, "**{}**\n", counts_line(plan));
    if !plan.summary.is_empty() {
        out.push_str("#### What changes\n\n");
        for s in &plan.summary {
            let _ = writeln!(out, "- `{}`", s.service);
            for l in &s.lines {
                let _ = writeln!(out, "  - {}", l.replace('|', "\\|"));
            }
        }
        out.push('\n');
    }
    let changed: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Unchanged)
        .collect();
    if !changed.is_empty() {
        out.push_str("#### Objects\n\n| | Kind | Namespace | Name | |\n|---|---|---|---|---|\n");
        for c in &changed {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                c.action.verb(),
                c.kind,
                c.namespace.as_deref().unwrap_or(""),
                c.name,
                if c.drift { "drift" } else { "" }
            );
        }
        out.push('\n');
        for c in changed
            .iter()
            .filter(|c| !c.diff.is_empty() || c.reason.is_some())
        {
            let _ = writeln!(out, "<details><summary>{}</summary>\n", title(c));
            if let Some(r) = &c.reason {
                let _ = writeln!(out, "{r}\n");
            }
            if !c.diff.is_empty() {
                // A fence longer than any backtick run in the diff.
                let fence = "`".repeat(longest_backticks(&c.diff).max(2) + 1);
                let _ = writeln!(out, "{fence}diff\n{}{fence}\n", c.diff);
            }
            out.push_str("</details>\n\n");
        }
    }
    notes(plan, &mut out, "> ");
    out
}

fn longest_backticks(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

fn json(plan: &Plan) -> String {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        counts: super::Counts,
        #[serde(flatten)]
        plan: PlanChanged<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct PlanChanged<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        revision: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_revision: &'a Option<String>,
        changes: Vec<&'a super::Change>,
        summary: &'a [meshplan_compiler::summary::Change],
        unlisted: &'a [String],
        gone_kinds: &'a [String],
    }
    let out = Out {
        counts: plan.counts(),
        plan: PlanChanged {
            revision: &plan.revision.id,
            previous_revision: &plan.previous_revision,
            changes: plan
                .changes
                .iter()
                .filter(|c| c.action != Action::Unchanged)
                .collect(),
            summary: &plan.summary,
            unlisted: &plan.unlisted,
            gone_kinds: &plan.gone_kinds,
        },
    };
    let mut s = serde_json::to_string_pretty(&out).unwrap_or_default();
    s.push('\n');
    s
}
