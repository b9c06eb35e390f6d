//! `meshplan render`: check, then compile to mesh objects; and the
//! check-then-compile step diff and apply share.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use meshplan_compiler::check_dir;
use meshplan_compiler::{
    collision_diagnostic, compile, object, unsupported_diagnostics, Compiled, Options,
};
use meshplan_policy_lang::check::Report;
use meshplan_policy_lang::diagnostic::human;
use meshplan_policy_lang::intent::config::UnsupportedSetting;

use super::output::{colorize, colorize_stderr, print, stderr_colored};
use super::{Color, CompileArgs, RenderArgs, RenderFormat, Unsupported};

/// A repository that passed check, compiled.
pub struct Checked {
    pub repo: meshplan_policy_lang::parse::Repository,
    pub report: Report,
    pub compiled: Compiled,
    /// What it was compiled with (to compile it again, e.g. at the
    /// cluster's rollout positions).
    pub options: Options,
}

/// Checks and compiles `args.repo`, printing diagnostics and warnings on
/// stderr. `Err(code)` when it must not go further (`verb` names what is
/// refused: "render", "apply"…). `summary`: build the semantic summary
/// (`diff` and `apply` show it; `render` does not).
pub fn compile_repo(
    args: &CompileArgs,
    color: Color,
    verb: &str,
    summary: bool,
) -> anyhow::Result<Result<Checked, ExitCode>> {
    let (repo, report) =
        check_dir(&args.repo).with_context(|| format!("cannot read {}", args.repo.display()))?;
    // A repository with errors produces nothing: same exit code as check.
    if !report.passes(args.strict) {
        let mut text = String::new();
        for d in &report.diagnostics {
            text.push_str(&human::render(d));
            text.push('\n');
        }
        text.push_str(&format!(
            "{verb} refused: the repository does not pass check ({})\n",
            human::summary_line(report.summary())
        ));
        eprint!("{}", colorize_stderr(&text, color));
        return Ok(Err(ExitCode::from(report.exit_status(args.strict))));
    }
    let opts = Options {
        targets: (!args.mesh.is_empty()).then(|| args.mesh.clone()),
        unsupported: args.unsupported.map(|u| match u {
            Unsupported::Error => UnsupportedSetting::Error,
            Unsupported::Warning => UnsupportedSetting::Warning,
        }),
        skip_summary: !summary,
        ..Options::default()
    };
    let compiled = match compile(&repo, &report, &opts) {
        Ok(c) => c,
        Err(meshplan_compiler::Error::Emit(errors)) => {
            let mut text: String = unsupported_diagnostics(&repo, &errors, false)
                .iter()
                .map(|d| human::render(d) + "\n")
                .collect();
            text.push_str(&format!(
                "{verb} refused: {} feature(s) the chosen meshes cannot express\n",
                errors.len()
            ));
            eprint!("{}", colorize_stderr(&text, color));
            return Ok(Err(ExitCode::from(1)));
        }
        // Nothing to compile for: a usage error (exit 2), as a missing
        // argument is.
        Err(e @ meshplan_compiler::Error::NoTargets) => {
            eprintln!("error: {e}");
            eprintln!("hint: name the meshes with --mesh, or add a meshplan.yaml with `targets:`");
            return Ok(Err(ExitCode::from(2)));
        }
        Err(e) => {
            match &e {
                meshplan_compiler::Error::Collision(c) => match collision_diagnostic(&repo, c) {
                    Some(d) => eprint!("{}", colorize_stderr(&(human::render(&d) + "\n"), color)),
                    None => eprintln!("error: {e}"),
                },
                _ => eprintln!("error: {e}"),
            }
            eprintln!("{verb} refused: the repository does not compile");
            return Ok(Err(ExitCode::from(1)));
        }
    };
    // Written as they are rendered, not gathered first: a mesh lacking
    // features the repository uses warns for every service using them, so
    // the text grows with the repository.
    let colored = stderr_colored(color);
    let mut stderr = std::io::BufWriter::new(std::io::stderr().lock());
    let mut warn = |d: &meshplan_policy_lang::Diagnostic| {
        let text = human::render(d) + "\n";
        let text = if colored { colorize(&text) } else { text };
        // Like eprint!: a closed stderr is no reason to stop.
        let _ = stderr.write_all(text.as_bytes());
    };
    report
        .diagnostics
        .iter()
        .chain(&compiled.diagnostics)
        .for_each(&mut warn);
    unsupported_diagnostics(&repo, &compiled.unsupported, true)
        .iter()
        .for_each(&mut warn);
    let _ = stderr.flush();
    drop(stderr);
    if compiled.diagnostics.iter().any(|d| d.is_error()) {
        eprintln!("{verb} refused: resource rules failed on the compiled objects");
        return Ok(Err(ExitCode::from(1)));
    }
    Ok(Ok(Checked {
        repo,
        report,
        compiled,
        options: opts,
    }))
}

pub fn run(args: &RenderArgs, color: Color) -> anyhow::Result<ExitCode> {
    let Checked {
        repo,
        report,
        compiled,
        ..
    } = match compile_repo(&args.compile, color, "render", false)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let objects = &compiled.objects;
    match &args.out {
        None => {
            match args.format {
                RenderFormat::Yaml => {
                    // Unbuffered: the stream is written in chunks of whole
                    // documents (`write_yaml_stream`).
                    let mut out = std::io::stdout().lock();
                    // A closed pipe (`meshplan render | head`) is not an
                    // error.
                    match object::write_yaml_stream(objects, &mut out) {
                        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                            return Err(e).context("cannot write to stdout")
                        }
                        _ => {}
                    }
                }
                RenderFormat::Json => print(&object::to_json_list(objects))?,
            }
            // On stderr, so stdout stays a clean stream for pipes.
            eprintln!(
                "rendered {} objects from {} services{}",
                objects.len(),
                report.services,
                match compiled.unsupported.len() {
                    0 => String::new(),
                    n => format!(" ({n} unsupported features not rendered, listed above)"),
                }
            );
        }
        Some(dir) => {
            let w = super::tree::write(dir, objects, args.format)?;
            eprintln!("rendered {} objects into {}", w.files, dir.display());
            if w.removed > 0 {
                eprintln!(
                    "removed {} stale files of objects meshplan no longer renders",
                    w.removed
                );
            }
            if !w.foreign.is_empty() {
                eprintln!("left {} files meshplan did not write:", w.foreign.len());
                for f in w.foreign.iter().take(20) {
                    eprintln!("  {}", f.display().to_string().escape_debug());
                }
                if w.foreign.len() > 20 {
                    eprintln!("  … and {} more", w.foreign.len() - 20);
                }
            }
        }
    }
    super::free_at_exit((repo, report, compiled));
    Ok(ExitCode::SUCCESS)
}
