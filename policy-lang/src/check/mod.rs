//! The check stage: validation and CEL rules over a parsed [`Repository`].
//!
//! `check` never stops at the first problem: every document that could be
//! read is validated and every rule evaluated, so one run lists everything.

pub mod builtin;
pub mod rules;
pub mod semantic;
pub mod validate;

use std::path::Path as FsPath;

use crate::cel::Engine;
use crate::diagnostic::{normalize, Diagnostic, Summary};
use crate::parse::{self, Repository};

pub use rules::{CompiledRule, RuleSet, Views};

/// What a check found.
#[derive(Debug)]
pub struct Report {
    /// Sorted by file and position; deduplicated.
    pub diagnostics: Vec<Diagnostic>,
    pub services: usize,
    pub policies: usize,
    pub files: usize,
    /// Enabled rules (built-in and organisation), for listings and SARIF.
    pub rules: RuleSet,
}

impl Report {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.diagnostics)
    }

    /// Whether the repository may be compiled: no errors (and, when
    /// `strict`, no warnings).
    pub fn passes(&self, strict: bool) -> bool {
        let s = self.summary();
        s.errors == 0 && !(strict && s.warnings > 0)
    }

    /// The exit status of a command over this report: 0 when it passes,
    /// 2 when a file could not be read (MP1000: an I/O error, not a finding
    /// about the intents), else 1.
    pub fn exit_status(&self, strict: bool) -> u8 {
        let io = crate::diagnostic::Code::Io.as_str();
        if self.diagnostics.iter().any(|d| d.code == io) {
            2
        } else if self.passes(strict) {
            0
        } else {
            1
        }
    }
}

/// Validates and runs every rule on an already-parsed repository.
/// `parse_diags` are the parse stage's findings, merged into the report.
pub fn check(repo: &Repository, engine: &Engine, mut diags: Vec<Diagnostic>) -> Report {
    diags.extend(validate::validate(repo));
    diags.extend(semantic::analyze(repo));
    let rules = rules::compile(engine, repo, &mut diags);
    rules::check_metric_conditions(engine, repo, &mut diags);
    let views = Views::for_rules(repo, &rules);
    diags.extend(rules.eval_intents(engine, repo, &views));
    diags.extend(rules.eval_repository(engine, &views));
    normalize(&mut diags);
    Report {
        diagnostics: diags,
        services: repo.services.len(),
        policies: repo.policies.len(),
        files: repo.files.len(),
        rules,
    }
}

/// Reads, parses and checks the repository at `root`.
pub fn check_dir(root: &FsPath) -> Result<(Repository, Report), crate::Error> {
    let (sources, mut diags) = parse::read_dir(root)?;
    let (mut repo, parse_diags) = parse::parse_owned(sources);
    diags.extend(parse_diags);
    let engine = Engine::new();
    let report = check(&repo, &engine, diags);
    repo.forget_trees();
    Ok((repo, report))
}

/// Parses and checks in-memory sources (tests, fuzzing, benchmarks).
pub fn check_sources(sources: &parse::Sources) -> (Repository, Report) {
    let (mut repo, diags) = parse::parse(sources);
    let engine = Engine::new();
    let report = check(&repo, &engine, diags);
    repo.forget_trees();
    (repo, report)
}
