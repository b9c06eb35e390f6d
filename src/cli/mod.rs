//! Arguments and dispatch. Exit codes are the same for every command:
//! 0 success, 1 the input has errors (or changes, with `--exit-code`),
//! 2 usage or I/O errors.

mod check;
mod output;
mod rules;
mod schema;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use output::Color;

/// GitOps policy compiler and reconciler for service meshes.
///
/// meshplan reads a repository of mesh intents (canary stages, zero-trust
/// allow lists, SLOs, retries and timeouts), checks them with CEL rules and
/// compiles them into mesh resources.
#[derive(Debug, Parser)]
#[command(name = "meshplan", version, propagate_version = true)]
pub struct Cli {
    /// When to colour human output.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a repository: load every intent, validate it and run the CEL
    /// rules (built-in and the repository's own policies).
    ///
    /// Exit status: 0 when clean (warnings allowed unless --strict), 1 when
    /// there are errors, 2 on usage or I/O errors.
    #[command(
        after_help = "Examples:\n  meshplan check examples-repo\n  meshplan check --format sarif > meshplan.sarif\n  meshplan check --strict --format json"
    )]
    Check(CheckArgs),
    /// Print the JSON Schema of the intent language (for editors running
    /// yaml-language-server).
    #[command(
        after_help = "Example (VS Code, settings.json):\n  \"yaml.schemas\": { \"meshplan.schema.json\": [\"intents/**/*.yaml\"] }\n\n  meshplan schema > meshplan.schema.json"
    )]
    Schema(SchemaArgs),
    /// List the rules a check runs: the built-in pack, and a repository's
    /// own policies when REPO is given.
    Rules(RulesArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The repository to check.
    #[arg(default_value = ".")]
    pub repo: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// rustc-style messages with source snippets.
    Human,
    /// One JSON object with every diagnostic and a summary.
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Only this kind's schema.
    #[arg(long, value_enum)]
    pub kind: Option<SchemaKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    ServiceIntent,
    Policy,
    MeshplanConfig,
}

#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    /// Also list this repository's policies.
    pub repo: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

/// Runs a parsed command line and returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check(a) => check::run(&a, cli.color),
        Command::Schema(a) => schema::run(&a),
        Command::Rules(a) => rules::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
