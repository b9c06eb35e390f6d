//! Arguments and dispatch. Exit codes are the same for every command:
//! 0 success, 1 the input has errors (or changes, with `--exit-code`),
//! 2 usage or I/O errors.

mod apply;
mod check;
mod cluster;
mod diff;
mod output;
mod progress;
mod render;
mod rollout;
mod rules;
mod run;
mod schema;
mod simulate;
mod tree;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use meshplan_policy_lang::intent::Target;

pub use output::Color;

/// GitOps policy compiler and reconciler for service meshes.
///
/// meshplan reads a repository of mesh intents (canary stages, zero-trust
/// allow lists, SLOs, retries and timeouts), checks them with CEL rules,
/// compiles them into mesh resources (Istio, Linkerd, Gateway API, Consul,
/// Cilium, NetworkPolicy, SMI, Prometheus rules), keeps clusters in sync
/// with them, and advances canary rollouts from Prometheus metrics.
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
        after_help = "Examples:\n  meshplan check examples-repo\n  meshplan check --format sarif > meshplan.sarif\n  meshplan check --strict --format json\n  meshplan check examples-repo --schemas ../crds   # validate the output offline"
    )]
    Check(CheckArgs),
    /// Compile a repository into mesh resources (Istio, …) after checking
    /// it; refuses when check finds errors.
    ///
    /// Prints a YAML stream on stdout, or writes one file per object into
    /// --out DIR (`<namespace>/<group>.<kind>-<name>.yaml`), ready for
    /// `kubectl apply -R -f DIR`. Exit status as for check.
    #[command(
        after_help = "Examples:\n  meshplan render examples-repo\n  meshplan render examples-repo --mesh istio --out rendered/\n  meshplan render examples-repo --mesh istio --mesh networkpolicy   # defence in depth\n  meshplan render --format json | jq '.items[].kind'"
    )]
    Render(RenderArgs),
    /// Show what applying the repository would change: against the cluster
    /// (--cluster) or another checkout / rendered directory (--against).
    ///
    /// Per object: create, update (marked drift when the cluster was edited
    /// by hand), prune or refuse (exists, not meshplan's), with a unified
    /// YAML diff of the fields meshplan manages; then what the change means:
    /// access gained and lost, traffic moved, SLOs and rollouts.
    ///
    /// Exit status: 0, or 1 with --exit-code when there are changes; 1 when
    /// the repository does not pass check; 2 on usage, I/O or cluster
    /// errors.
    #[command(
        after_help = "Examples:\n  meshplan diff examples-repo --cluster --context staging\n  meshplan diff . --against ../main-checkout --format markdown > comment.md\n  meshplan diff --cluster --exit-code   # CI: fail when the cluster is not in sync"
    )]
    Diff(DiffArgs),
    /// Apply the repository to a cluster: check, compile, then server-side
    /// apply every object that differs, in dependency order.
    ///
    /// Nothing is applied when check or compile fails. Objects meshplan does
    /// not own are never touched; --prune deletes only objects carrying
    /// meshplan's label and listed in its inventory.
    ///
    /// Exit status: 0 when everything applied; 1 when the repository has
    /// errors or an object was rejected or refused; 2 on usage, I/O or
    /// cluster errors.
    #[command(
        after_help = "Examples:\n  meshplan apply examples-repo --dry-run\n  meshplan apply examples-repo --prune --context prod-eu-west-1\n  meshplan apply --mesh istio --kubeconfig ci.kubeconfig"
    )]
    Apply(ApplyArgs),
    /// Keep a cluster in sync: follow a Git repository (or a local folder),
    /// apply every new revision, undo out-of-band edits.
    ///
    /// Reconciles on every --interval, on a verified POST /hooks/git, on a
    /// change of the local folder, and within a second of an edit to an
    /// object it manages (watched). A revision that does not check or
    /// compile applies nothing: the cluster keeps the last good one, and
    /// `meshplan status` shows why. Serves /metrics, /healthz and /readyz.
    /// Stops cleanly on SIGTERM.
    #[command(
        after_help = "Examples:\n  meshplan run examples-repo --kubeconfig dev.kubeconfig          # a local folder, watched\n  meshplan run --git https://github.com/org/mesh --branch main --git-token-file /var/run/secrets/git/token --prune\n  meshplan run --git ssh://git@git.example.com/org/mesh.git --git-ssh-key /keys/id_ed25519 --git-known-hosts /keys/known_hosts --leader-election"
    )]
    Run(Box<RunArgs>),
    /// Show the last reconcile of `meshplan run`: revision, result, drift,
    /// diagnostics.
    Status(StatusArgs),
    /// Progressive rollouts run by `meshplan run`: see where they stand,
    /// pass a manual gate, pause, resume, abort.
    ///
    /// Commands are queued in the rollout's state and carried out by the
    /// reconciler on its next tick (about a second); the command waits for
    /// the outcome and prints it. Exit status: 0 when carried out, 1 when
    /// refused (e.g. `promote` with no manual gate waiting), 2 on errors or
    /// when no reconciler picked the command up within --wait.
    #[command(
        subcommand,
        after_help = "Examples:\n  meshplan rollout status\n  meshplan rollout status shop/cart --watch\n  meshplan rollout promote shop/cart\n  meshplan rollout abort cart\n  meshplan rollout status --format json | jq '.[].weight'"
    )]
    Rollout(RolloutCommand),
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
    /// Also compile for the repository's targets and validate every object
    /// against the CRD schemas in DIR (e.g. the meshes' upstream CRDs),
    /// offline: types, required fields, enums, patterns, bounds, unknown
    /// fields and x-kubernetes-validations rules (MP4001).
    #[arg(long, value_name = "DIR")]
    pub schemas: Option<PathBuf>,
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

/// What to compile: shared by render, diff and apply.
#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// The repository of intents.
    #[arg(default_value = ".")]
    pub repo: PathBuf,
    /// Compile for this mesh (repeatable; default: meshplan.yaml's targets).
    #[arg(long, value_parser = target_parser())]
    pub mesh: Vec<Target>,
    /// Refuse when check finds warnings too.
    #[arg(long)]
    pub strict: bool,
    /// What a feature the chosen meshes cannot express does: `error`
    /// (nothing is produced) or `warning` (produced without it, and listed).
    /// Default: meshplan.yaml's `unsupported`, else error.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub unsupported: Option<Unsupported>,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub compile: CompileArgs,
    /// Write one file per object below this directory instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RenderFormat::Yaml)]
    pub format: RenderFormat,
}

/// Which cluster, and meshplan's inventory in it.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// The kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the
    /// pod's service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The ConfigMap listing what meshplan applied (what --prune may
    /// delete), as NAMESPACE/NAME.
    #[arg(
        long,
        value_name = "NS/NAME",
        default_value = "meshplan-system/meshplan"
    )]
    pub inventory: meshplan_reconciler::InventoryName,
    /// API requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = meshplan_reconciler::apply::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("base").required(true).args(["cluster", "against"])))]
pub struct DiffArgs {
    #[command(flatten)]
    pub compile: CompileArgs,
    /// Compare with what the cluster has (only the fields meshplan manages).
    #[arg(long)]
    pub cluster: bool,
    /// Compare with a directory: another checkout of the repository (has a
    /// meshplan.yaml; compiled the same way) or rendered YAML (`render --out`).
    #[arg(long, value_name = "DIR")]
    pub against: Option<PathBuf>,
    #[command(flatten)]
    pub target: ClusterArgs,
    /// Exit with 1 when there are changes (for CI).
    #[arg(long)]
    pub exit_code: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// Unified diffs and a summary, for terminals and CI logs.
    Text,
    /// One JSON object: counts, changes with their diffs, summary.
    Json,
    /// For a pull-request comment: summary, table, collapsed diffs.
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub compile: CompileArgs,
    #[command(flatten)]
    pub target: ClusterArgs,
    /// Delete objects the revision no longer has (only those carrying
    /// meshplan's label and listed in its inventory).
    #[arg(long)]
    pub prune: bool,
    /// Send everything as a server-side dry run: the API server validates
    /// every object (schemas, admission) and nothing changes.
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, default_missing_value = "server")]
    pub dry_run: Option<DryRun>,
    /// Give up retrying failed calls after this long (e.g. 90s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// The revision recorded in the inventory (default: the repository's
    /// Git HEAD, when it is a checkout).
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("pin").args(["branch", "tag", "commit"])))]
pub struct RunArgs {
    #[command(flatten)]
    pub compile: CompileArgs,
    /// Follow this Git repository instead of the local folder REPO
    /// (file://, git://, https://, ssh:// or user@host:path).
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// Follow this branch (default: the remote's default branch).
    #[arg(long, requires = "git")]
    pub branch: Option<String>,
    /// Stay on this tag.
    #[arg(long, requires = "git")]
    pub tag: Option<String>,
    /// Stay on this commit.
    #[arg(long, requires = "git")]
    pub commit: Option<String>,
    /// The folder inside the repository holding meshplan.yaml (monorepos).
    #[arg(long, value_name = "DIR", requires = "git")]
    pub path: Option<PathBuf>,
    /// Fetch only the tip of the branch or tag.
    #[arg(long, requires = "git")]
    pub shallow: bool,
    /// HTTP basic-auth user (its password from --git-password-file or
    /// $MESHPLAN_GIT_PASSWORD).
    #[arg(long, value_name = "USER", requires = "git")]
    pub git_username: Option<String>,
    #[arg(long, value_name = "FILE", requires = "git_username")]
    pub git_password_file: Option<PathBuf>,
    /// An access token (GitHub, GitLab…) in a file; or $MESHPLAN_GIT_TOKEN.
    #[arg(long, value_name = "FILE", requires = "git")]
    pub git_token_file: Option<PathBuf>,
    /// SSH private key for ssh:// URLs.
    #[arg(long, value_name = "FILE", requires = "git")]
    pub git_ssh_key: Option<PathBuf>,
    /// Host keys ssh:// servers must present (default ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE", requires = "git")]
    pub git_known_hosts: Option<PathBuf>,
    /// Use only commits SSH-signed by a key of this file (OpenSSH
    /// allowed_signers or authorized_keys format); an unsigned or wrongly
    /// signed head is refused and the last good revision stays applied.
    #[arg(long, value_name = "FILE", requires = "git")]
    pub verify_ssh_signers: Option<PathBuf>,
    /// Use only commits signed by an OpenPGP key of this file
    /// (ASCII-armored public keys, as `gpg --export --armor` writes them);
    /// combines with --verify-ssh-signers.
    #[arg(long, value_name = "FILE", requires = "git")]
    pub verify_gpg_keys: Option<PathBuf>,
    /// Where the checkout lives (default: a folder in the temp dir).
    #[arg(long, value_name = "DIR")]
    pub checkout: Option<PathBuf>,
    /// How often to fetch and resync (e.g. 30s, 1m, 5m).
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    #[command(flatten)]
    pub target: ClusterArgs,
    /// Delete objects the revision no longer has (labelled and in the
    /// inventory only).
    #[arg(long)]
    pub prune: bool,
    /// Undo out-of-band edits (false: report them only).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub self_heal: bool,
    /// Per kind, overriding --self-heal: KIND=true|false (repeatable).
    #[arg(long, value_name = "KIND=BOOL", value_parser = parse_kind_bool)]
    pub self_heal_kind: Vec<(String, bool)>,
    /// Serve /metrics, /healthz, /readyz and POST /hooks/git here.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The shared secret webhooks must prove (file; or
    /// $MESHPLAN_WEBHOOK_SECRET). Without it /hooks/git is off.
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Run with one active replica among several, elected on a Lease.
    #[arg(long)]
    pub leader_election: bool,
    /// The Lease, as NAMESPACE/NAME.
    #[arg(
        long,
        value_name = "NS/NAME",
        default_value = "meshplan-system/meshplan-leader"
    )]
    pub lease: meshplan_reconciler::InventoryName,
    /// This replica's name in the Lease (default: the pod or host name).
    #[arg(long, value_name = "NAME")]
    pub identity: Option<String>,
    /// Give up retrying one apply after this long.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// TLS settings and credentials of outgoing requests (Prometheus,
    /// rollout webhooks), each bound to a URL prefix: CA bundle, client
    /// certificate, bearer token or basic auth from files, extra headers
    /// (docs/rollouts.md, "TLS and credentials"). Or
    /// $MESHPLAN_HTTP_CREDENTIALS.
    #[arg(long, value_name = "FILE")]
    pub http_credentials: Option<PathBuf>,
    /// Announce rollout transitions and reconcile failures: Slack, Teams,
    /// Discord, a JSON sink, GitHub or GitLab commit statuses
    /// (docs/rollouts.md, "Notifications"). Or $MESHPLAN_NOTIFICATIONS.
    #[arg(long, value_name = "FILE")]
    pub notifications: Option<PathBuf>,
    /// `debug` adds the details `info` lines summarise: each of many
    /// rollout transitions at once (a first sync of a large repository
    /// starts every rollout), which `info` counts per kind of move.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
}

/// Leaves `value` to the operating system, which reclaims it when the
/// one-shot command exits a moment later. Freeing a repository's node trees
/// and the compiled objects one allocation at a time is a noticeable part
/// of a check or render (docs/benchmarks.md) and serves nobody.
fn free_at_exit<T>(value: T) {
    std::mem::forget(value);
}

fn parse_kind_bool(s: &str) -> Result<(String, bool), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KIND=true|false"))?;
    let v = v
        .parse::<bool>()
        .map_err(|_| format!("`{v}` is not true or false"))?;
    Ok((k.to_owned(), v))
}

/// How much `meshplan run` logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Info,
    Debug,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: ClusterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Where each rollout stands: phase, step, weights, the last analysis
    /// per check, and what happens next.
    Status(RolloutStatusArgs),
    /// Pass the manual gate the rollout waits at (with --force: promote
    /// now, from any active phase).
    Promote(RolloutPromoteArgs),
    /// Roll back to the stable version now.
    Abort(RolloutArgs),
    /// Hold the rollout at its current weights.
    Pause(RolloutArgs),
    /// Go on after `pause` (or after a pause for inconclusive analyses).
    Resume(RolloutArgs),
    /// Advance on time alone from now on: no more analysis.
    SkipAnalysis(RolloutArgs),
    /// Replay a service's rollout over Prometheus's history, before it
    /// merges: when each stage would have advanced, paused, been
    /// inconclusive or rolled back, and why. Exit 1 when it would have
    /// failed.
    Simulate(RolloutSimulateArgs),
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  meshplan rollout simulate shop/cart --from now-7d\n  meshplan rollout simulate cart --from 2026-11-24T09:00:00Z --to 2026-11-24T17:00:00Z --repo ./intents --format json\n\nThe rollout starts at --from and time advances one analysis interval at a time; each distinct query is one range query over the whole period (chunks of 11,000 points). Webhooks are not called (assumed to say yes); a manual gate ends the replay, since nobody promotes in the past."
)]
pub struct RolloutSimulateArgs {
    /// The service (`namespace/name`, or a name when unique) whose
    /// `rollout` to replay.
    pub service: String,
    /// When the rollout starts: RFC 3339 (`2026-11-24T09:00:00Z`), unix
    /// seconds, `now`, or `now-<duration>` (`now-7d`, `now-90m`).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// When the replay ends (same forms).
    #[arg(long, value_name = "TIME", default_value = "now")]
    pub to: String,
    /// The repository of intents (checked first, as by `check`).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The Prometheus to read (default: meshplan.yaml's `metrics.url`).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Credentials for HTTPS endpoints (see docs/deploy.md; default
    /// $MESHPLAN_HTTP_CREDENTIALS).
    #[arg(long, value_name = "FILE")]
    pub http_credentials: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

#[derive(Debug, clap::Args)]
pub struct RolloutStatusArgs {
    /// A service (`namespace/name`, or a name when unique); default: all.
    pub service: Option<String>,
    #[command(flatten)]
    pub target: ClusterArgs,
    /// Refresh in place every second until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// The service (`namespace/name`, or a name when unique).
    pub service: String,
    #[command(flatten)]
    pub target: ClusterArgs,
    /// How long to wait for the reconciler to carry the command out.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub wait: std::time::Duration,
}

#[derive(Debug, clap::Args)]
pub struct RolloutPromoteArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Promote now, whatever the phase (skips the remaining steps).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// The API server validates and admits, then discards.
    Server,
}

fn parse_duration(
    s: &str,
) -> Result<std::time::Duration, meshplan_policy_lang::intent::duration::InvalidDuration> {
    meshplan_policy_lang::intent::Duration::parse(s)
        .map(|d| std::time::Duration::from_millis(d.as_millis()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Unsupported {
    Error,
    Warning,
}

/// `--mesh`: the intent language's own [`Target`], by the name meshplan.yaml
/// gives it (one enum for the whole project, not a CLI copy of it).
fn target_parser() -> impl clap::builder::TypedValueParser<Value = Target> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let values = Target::ALL.map(|t| {
        let v = PossibleValue::new(t.name());
        match t {
            Target::NetworkPolicy => v.help("Plain Kubernetes NetworkPolicy (L3/L4)"),
            Target::Smi => v.help("SMI TrafficSplit (deprecated)"),
            Target::Istio
            | Target::Linkerd
            | Target::GatewayApi
            | Target::Consul
            | Target::Cilium => v,
        }
    });
    PossibleValuesParser::new(values).map(|name| {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .expect("clap admits only the possible values, each a target's name")
    })
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
        Command::Diff(a) => diff::run(&a, cli.color),
        Command::Apply(a) => apply::run(&a, cli.color),
        Command::Run(a) => run::run(&a),
        Command::Status(a) => run::status(&a),
        Command::Rollout(c) => rollout::run(&c),
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
