//! `meshplan rules`.

use std::process::ExitCode;

use anyhow::Context as _;
use meshplan_policy_lang::cel::Engine;
use meshplan_policy_lang::check::{self, RuleSet};
use meshplan_policy_lang::parse::{self, Repository, Sources};
use meshplan_policy_lang::Severity;
use serde_json::json;

use super::output::print;
use super::{ListFormat, RulesArgs};

pub fn run(args: &RulesArgs) -> anyhow::Result<ExitCode> {
    let engine = Engine::new();
    let repo = match &args.repo {
        Some(path) => {
            let (sources, _) =
                parse::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?;
            parse::parse(&sources).0
        }
        None => parse::parse(&Sources::default()).0,
    };
    let mut diags = Vec::new();
    let set = check::rules::compile(&engine, &repo, &mut diags);
    print(&render(&set, &repo, args.format))?;
    // A rule that does not compile is not in the list: say so, and fail,
    // rather than list a set of rules that is not the one check runs.
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    if errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for d in &errors {
        eprint!("{}", meshplan_policy_lang::diagnostic::human::render(d));
    }
    eprintln!("{} rule(s) left out: they do not compile", errors.len());
    Ok(ExitCode::from(1))
}

fn render(set: &RuleSet, _repo: &Repository, format: ListFormat) -> String {
    match format {
        ListFormat::Json => {
            let rules: Vec<_> = set
                .rules
                .iter()
                .map(|r| {
                    json!({
                        "code": r.code,
                        "name": r.name,
                        "policy": r.policy,
                        "builtin": r.builtin,
                        "scope": r.scope.as_str(),
                        "severity": r.severity.as_str(),
                        "description": r.description,
                    })
                })
                .collect();
            let mut s =
                serde_json::to_string_pretty(&json!({ "rules": rules })).unwrap_or_default();
            s.push('\n');
            s
        }
        ListFormat::Text => {
            let code_w = set
                .rules
                .iter()
                .map(|r| r.code.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let name_w = set
                .rules
                .iter()
                .map(|r| r.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let mut out = format!(
                "{:code_w$}  {:name_w$}  {:8}  {:10}  DESCRIPTION\n",
                "CODE", "NAME", "SEVERITY", "SCOPE"
            );
            for r in &set.rules {
                let sev = match r.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                out.push_str(&format!(
                    "{:code_w$}  {:name_w$}  {:8}  {:10}  {}\n",
                    r.code,
                    r.name,
                    sev,
                    r.scope.as_str(),
                    r.description
                ));
            }
            out
        }
    }
}
