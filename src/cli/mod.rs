//! Arguments and dispatch. Exit codes are the same for every command:
//! 0 success, 1 the input has errors (or changes, with `--exit-code`),
//! 2 usage or I/O errors.

mod check;
mod output;
mod render;
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
    /// Compile a repository into mesh resources (Istio, …) after checking
    /// it; refuses when check finds errors.
    ///
    /// Prints a YAML stream on stdout, or writes one file per object into
    /// --out DIR (`<namespace>/<group>.<kind>-<name>.yaml`), ready for
    /// `kubectl apply -R -f DIR`. Exit status as for check.
    #[command(
        after_help = "Examples:\n  meshplan render examples-repo\n  meshplan render examples-repo --mesh istio --out rendered/\n  meshplan render --format json | jq '.items[].kind'"
    )]
    Render(RenderArgs),
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
pub struct RenderArgs {
    /// The repository to render.
    #[arg(default_value = ".")]
    pub repo: PathBuf,
    /// Render for this mesh (repeatable; default: meshplan.yaml's targets).
    #[arg(long, value_enum)]
    pub mesh: Vec<Mesh>,
    /// Write one file per object below this directory instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RenderFormat::Yaml)]
    pub format: RenderFormat,
    /// Refuse to render when check finds warnings too.
    #[arg(long)]
    pub strict: bool,
    /// What a feature the chosen meshes cannot express does: `error` (render
    /// nothing) or `warning` (render without it, and list it). Default:
    /// meshplan.yaml's `unsupported`, else error.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub unsupported: Option<Unsupported>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Unsupported {
    Error,
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mesh {
    Istio,
    Linkerd,
    GatewayApi,
    Consul,
    Cilium,
}

impl Mesh {
    pub fn target(self) -> meshplan_policy_lang::intent::Target {
        use meshplan_policy_lang::intent::Target;
        match self {
            Mesh::Istio => Target::Istio,
            Mesh::Linkerd => Target::Linkerd,
            Mesh::GatewayApi => Target::GatewayApi,
            Mesh::Consul => Target::Consul,
            Mesh::Cilium => Target::Cilium,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// A YAML stream (`---` between objects).
    Yaml,
    /// A Kubernetes `List` as JSON.
    Json,
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
        Command::Render(a) => render::run(&a, cli.color),
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
