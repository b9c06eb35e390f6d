//! `meshplan check`.

use std::process::ExitCode;

use anyhow::Context as _;
use meshplan_policy_lang::check::{check_dir, Report};
use meshplan_policy_lang::diagnostic::{human, json, sarif};

use super::output::{colorize, print, Color};
use super::{CheckArgs, Format};

pub fn run(args: &CheckArgs, color: Color) -> anyhow::Result<ExitCode> {
    let (_, report) =
        check_dir(&args.repo).with_context(|| format!("cannot check {}", args.repo.display()))?;
    print(&render(&report, args.format, color));
    Ok(if report.passes(args.strict) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn render(report: &Report, format: Format, color: Color) -> String {
    match format {
        Format::Human => {
            let mut text = String::new();
            for d in &report.diagnostics {
                text.push_str(&human::render(d));
                text.push('\n');
            }
            let s = report.summary();
            let verdict = if s.errors == 0 {
                "check passed"
            } else {
                "check failed"
            };
            text.push_str(&format!(
                "{verdict}: {} services, {} policies, {} rules in {} files; {}\n",
                report.services,
                report.policies,
                report.rules.rules.len(),
                report.files,
                human::summary_line(s)
            ));
            if color.enabled() {
                colorize(&text)
            } else {
                text
            }
        }
        Format::Json => json::render(&report.diagnostics),
        Format::Sarif => {
            let rules: Vec<sarif::RuleInfo> = report
                .rules
                .rules
                .iter()
                .map(|r| sarif::RuleInfo {
                    id: r.code.clone(),
                    description: r.description.clone(),
                })
                .collect();
            sarif::render(&report.diagnostics, &rules)
        }
    }
}
