//! `meshplan check`.

use std::process::ExitCode;

use anyhow::Context as _;
use meshplan_compiler::check_dir;
use meshplan_compiler::validate::SchemaSet;
use meshplan_compiler::{
    check_schemas, collision_diagnostic, compile, unsupported_diagnostics, Options,
};
use meshplan_policy_lang::check::Report;
use meshplan_policy_lang::diagnostic::{human, json, sarif};
use meshplan_policy_lang::intent::config::UnsupportedSetting;

use super::output::{colorize, print, Color};
use super::{CheckArgs, Format};

pub fn run(args: &CheckArgs, color: Color) -> anyhow::Result<ExitCode> {
    let (repo, mut report) =
        check_dir(&args.repo).with_context(|| format!("cannot check {}", args.repo.display()))?;
    let schemas = match &args.schemas {
        Some(dir) => Some((dir, SchemaSet::load(dir)?)),
        None => None,
    };
    // Compiled as render would, when check is clean (broken intents compile
    // to nothing worth judging): what the targets cannot express is
    // reported here, where CI sees it, and not only at render time.
    // A repository meshplan cannot compile does not pass, whatever else.
    let mut not_compiled = false;
    if report.passes(false) {
        let tolerate = repo
            .config
            .as_ref()
            .and_then(|c| c.value.unsupported)
            .is_some_and(|u| u == UnsupportedSetting::Warning);
        let opts = Options {
            unsupported: Some(UnsupportedSetting::Warning),
            skip_summary: true,
            ..Options::default()
        };
        match compile(&repo, &report, &opts) {
            Ok(compiled) => {
                report.diagnostics.extend(unsupported_diagnostics(
                    &repo,
                    &compiled.unsupported,
                    tolerate,
                ));
                if let Some((dir, set)) = &schemas {
                    let (v, diags) = check_schemas(&repo, &compiled.objects, set);
                    report.diagnostics.extend(diags);
                    eprintln!(
                        "schemas: {} objects checked against {} CRD versions from {}; {} CEL rules evaluated, {} skipped{}{}",
                        v.objects,
                        set.len(),
                        dir.display(),
                        v.rules_evaluated,
                        v.rules_skipped.len(),
                        if v.no_schema.is_empty() { String::new() } else {
                            format!("; no schema for {}", v.no_schema.iter().cloned().collect::<Vec<_>>().join(", "))
                        },
                        if v.rules_skipped.is_empty() { String::new() } else {
                            format!("\n  skipped (the CEL engine cannot run them): {}", v.rules_skipped.iter().cloned().collect::<Vec<_>>().join("\n  "))
                        },
                    );
                }
                meshplan_policy_lang::diagnostic::normalize(&mut report.diagnostics);
            }
            // No meshplan.yaml naming targets: there is nothing to compile
            // for, and nothing more to report.
            Err(meshplan_compiler::Error::NoTargets) if schemas.is_none() => {}
            // Names two intents both derive: an error of the repository.
            Err(meshplan_compiler::Error::Collision(c))
                if collision_diagnostic(&repo, &c).is_some() =>
            {
                report.diagnostics.extend(collision_diagnostic(&repo, &c));
            }
            Err(e) => {
                eprintln!("not compiled: {e}");
                not_compiled = true;
            }
        }
    }
    print(&render(&report, args.format, color))?;
    let code = ExitCode::from(report.exit_status(args.strict).max(u8::from(not_compiled)));
    super::free_at_exit((repo, report));
    Ok(code)
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
