//! `meshplan diff`: what applying would change, against the cluster or
//! another checkout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use meshplan_compiler::check_dir;
use meshplan_compiler::{compile, Options, Summary};
use meshplan_reconciler::diff::{self, Format, Plan};
use meshplan_reconciler::{live, source, Cluster};
use serde_json::Value;

use super::cluster::{at_cluster_positions, connect_options, runtime};
use super::output::{colorize_diff, print};
use super::render::{compile_repo, Checked};
use super::{ClusterArgs, Color, CompileArgs, DiffArgs, DiffFormat};

pub fn run(args: &DiffArgs, color: Color) -> anyhow::Result<ExitCode> {
    let checked = match compile_repo(&args.compile, color, "diff", true)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut plan = match &args.against {
        Some(dir) => against(dir, &args.compile, &checked.compiled)?,
        None => runtime()?.block_on(against_cluster(&args.target, checked))?,
    };
    plan.revision.id = source::revision_of(&args.compile.repo);
    let format = match args.format {
        DiffFormat::Text => Format::Text,
        DiffFormat::Json => Format::Json,
        DiffFormat::Markdown => Format::Markdown,
    };
    let out = diff::render(&plan, format);
    print(&match (format, color.enabled()) {
        (Format::Text, true) => colorize_diff(&out),
        _ => out,
    })?;
    Ok(if args.exit_code && plan.has_changes() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn against_cluster(target: &ClusterArgs, checked: Checked) -> anyhow::Result<Plan> {
    let cluster = Cluster::connect(&connect_options(target)).await?;
    let compiled = &at_cluster_positions(&cluster, &target.inventory, checked).await?;
    let snapshot = live::read(
        &cluster,
        &compiled.objects,
        &target.inventory,
        target.concurrency,
    )
    .await?;
    let revision = diff::Revision::new(None, std::sync::Arc::new(compiled.summary.clone()));
    Ok(diff::plan(&compiled.objects, &revision, &snapshot))
}

/// Against another checkout (compiled like this one) or rendered files.
fn against(
    dir: &Path,
    args: &CompileArgs,
    compiled: &meshplan_compiler::Compiled,
) -> anyhow::Result<Plan> {
    if !dir.is_dir() {
        anyhow::bail!("--against {}: not a directory", dir.display());
    }
    if dir.join("meshplan.yaml").is_file() {
        let (repo, report) =
            check_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if !report.passes(false) {
            anyhow::bail!(
                "the base {} does not pass check ({}): run `meshplan check {}`",
                dir.display(),
                meshplan_policy_lang::diagnostic::human::summary_line(report.summary()),
                dir.display()
            );
        }
        let opts = Options {
            targets: (!args.mesh.is_empty()).then(|| args.mesh.clone()),
            // The base is compared as it would render, features a mesh
            // cannot express left out rather than refused.
            unsupported: Some(meshplan_policy_lang::intent::config::UnsupportedSetting::Warning),
            ..Options::default()
        };
        let base = compile(&repo, &report, &opts)
            .with_context(|| format!("cannot compile the base {}", dir.display()))?;
        let old: Vec<Value> = base.objects.into_iter().map(|o| o.body.value()).collect();
        return Ok(diff::plan_against(
            &compiled.objects,
            &compiled.summary,
            &old,
            Some(&base.summary),
        ));
    }
    let old = read_objects(dir)?;
    Ok(diff::plan_against(
        &compiled.objects,
        &compiled.summary,
        &old,
        None::<&Summary>,
    ))
}

/// The objects meshplan rendered, in the YAML and JSON files below `dir`.
///
/// Only objects with meshplan's `managed-by` label are compared (so only
/// they can be planned as prunes): a rendered tree may sit beside other
/// manifests, and a file of someone else's — a Secret above all — must
/// never be printed. Symbolic links are not followed (a link loop, or a
/// link to a file outside the tree), and files over the size an intent
/// file may have are refused.
fn read_objects(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let e = e?;
            let (p, kind) = (e.path(), e.file_type()?);
            if kind.is_dir() {
                stack.push(p);
            } else if kind.is_file()
                && p.extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    let mut skipped = 0usize;
    for f in files {
        let len = std::fs::metadata(&f)?.len();
        if len > meshplan_policy_lang::parse::MAX_FILE_BYTES {
            anyhow::bail!(
                "{}: {len} bytes, over the limit of {}",
                f.display(),
                meshplan_policy_lang::parse::MAX_FILE_BYTES
            );
        }
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| anyhow::anyhow!("{}: not Kubernetes YAML: {e}", f.display()))?;
        for d in docs {
            let items = match d.get("kind").and_then(Value::as_str) {
                Some("List") => d["items"].as_array().cloned().unwrap_or_default(),
                Some(_) => vec![d],
                None => Vec::new(),
            };
            for o in items {
                if is_meshplans(&o) {
                    out.push(o);
                } else {
                    skipped += 1;
                }
            }
        }
    }
    if skipped > 0 {
        eprintln!(
            "--against {}: {skipped} objects without meshplan's `{}` label left out",
            dir.display(),
            meshplan_compiler::object::MANAGED_BY
        );
    }
    Ok(out)
}

/// An object meshplan renders: labelled as its own, and never a Secret.
fn is_meshplans(o: &Value) -> bool {
    let label = o
        .pointer("/metadata/labels")
        .and_then(|l| l.get(meshplan_compiler::object::MANAGED_BY))
        .and_then(Value::as_str);
    label == Some(meshplan_compiler::object::MANAGER)
        && o.get("kind").and_then(Value::as_str) != Some("Secret")
}
