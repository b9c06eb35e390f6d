//! meshplan's compiler: checked intents → a mesh-neutral IR → mesh objects.
//!
//! Pure and deterministic: no Kubernetes, no network, no clock. The same
//! repository and options give byte-identical output. The stages are
//! chained, each error tagged with its stage:
//!
//! ```text
//! lower (Repository → Ir) → emit (Ir → objects, per target) → govern
//! (resource-scope CEL rules on every object) → sort
//! ```

pub(crate) mod api;
mod body;
pub mod emit;
pub mod ir;
pub mod lower;
pub mod metrics;
pub mod model;
pub mod object;
pub mod rollout;
pub mod summary;
pub mod validate;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use meshplan_policy_lang::cel::Engine;
use meshplan_policy_lang::check::{Report, Views};
use meshplan_policy_lang::intent::config::UnsupportedSetting;
use meshplan_policy_lang::intent::Target;
use meshplan_policy_lang::parse::{Repository, Sources};
use meshplan_policy_lang::{Diagnostic, Location};

pub use emit::EmitError;
pub use ir::{Ir, Origin, Position, Positions};
pub use lower::LowerError;
pub use object::MeshObject;
pub use summary::Summary;

/// Why compiling stopped, tagged with the stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lower: {0}")]
    Lower(#[source] LowerError),
    #[error("emit: {} problem(s); first: {}", .0.len(), .0[0])]
    Emit(Vec<EmitError>),
    #[error("emit: {}", collision_message(.0))]
    Collision(Box<object::Collision>),
    #[error("the repository has no meshplan.yaml naming its targets, and none were given")]
    NoTargets,
}

/// What to compile for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The meshes to emit; `None`: the repository's `targets`.
    pub targets: Option<Vec<Target>>,
    /// Where rollouts stand (default: none started).
    pub positions: Positions,
    /// Overrides meshplan.yaml's `unsupported`.
    pub unsupported: Option<UnsupportedSetting>,
    /// Leave [`Compiled::summary`] empty: `render` and `check` show no
    /// semantic diff, and the summary grows with the repository: a large
    /// share of a big render's peak heap.
    pub skip_summary: bool,
    /// Called with each namespace's objects as soon as they are emitted,
    /// and with every object once they are merged across targets: how a
    /// caller that holds the objects long changes how they are held before
    /// the next namespace is made (`meshplan run` [packs](object::Body::pack)
    /// their bodies, so the text of every object is never held at once).
    /// It must not change what they say.
    pub on_emitted: Option<fn(&mut [MeshObject])>,
}

/// The compiler's output.
#[derive(Debug)]
pub struct Compiled {
    /// Sorted by kind, group, namespace, name.
    pub objects: Vec<MeshObject>,
    /// Findings of resource-scope rules on the objects.
    pub diagnostics: Vec<Diagnostic>,
    /// Features the targets cannot express, rendered without them (only
    /// when meshplan.yaml sets `unsupported: warning`; otherwise they are
    /// an [`Error::Emit`]).
    pub unsupported: Vec<EmitError>,
    /// What the revision means, for semantic diffs (empty when
    /// [`Options::skip_summary`]).
    pub summary: Summary,
    /// The services with a rollout, as lowered for this revision: what the
    /// rollout engine measures ([`rollout::Subject`]), by key.
    pub rollouts: Vec<rollout::Subject>,
}

/// Reads, parses and checks the repository at `root`: the language's
/// checks ([`meshplan_policy_lang::check`]) and what the targets make of
/// the intents ([`metrics::findings`]). Every command checks through here.
pub fn check_dir(
    root: &std::path::Path,
) -> Result<(Repository, Report), meshplan_policy_lang::Error> {
    let (repo, report) = meshplan_policy_lang::check::check_dir(root)?;
    Ok(with_target_findings(repo, report))
}

/// [`check_dir`] of in-memory sources (tests, fuzzing, benchmarks).
pub fn check_sources(sources: &Sources) -> (Repository, Report) {
    let (repo, report) = meshplan_policy_lang::check::check_sources(sources);
    with_target_findings(repo, report)
}

fn with_target_findings(mut repo: Repository, mut report: Report) -> (Repository, Report) {
    let found = metrics::findings(&repo);
    if !found.is_empty() {
        report.diagnostics.extend(found);
        meshplan_policy_lang::diagnostic::normalize(&mut report.diagnostics);
        // Locating them read their files' trees again: dropped, as check
        // dropped them (they are the largest part of a repository).
        repo.forget_trees();
    }
    (repo, report)
}

/// Compiles a repository `check` passed (`report` is its report: its
/// compiled rules govern the output).
pub fn compile(repo: &Repository, report: &Report, opts: &Options) -> Result<Compiled, Error> {
    let targets = match &opts.targets {
        Some(t) => t.clone(),
        None => repo
            .config
            .as_ref()
            .map(|c| c.value.targets.clone())
            .ok_or(Error::NoTargets)?,
    };
    let tolerate = opts
        .unsupported
        .or_else(|| repo.config.as_ref().and_then(|c| c.value.unsupported))
        .is_some_and(|u| u == UnsupportedSetting::Warning);
    lower_and_emit(repo, opts, &targets).and_then(|lowered| {
        match lowered.unsupported.is_empty() || tolerate {
            true => Ok(govern(repo, report, lowered)),
            false => Err(Error::Emit(lowered.unsupported)),
        }
    })
}

/// What the lower and emit stages made.
struct Lowered {
    summary: Summary,
    objects: Vec<MeshObject>,
    unsupported: Vec<EmitError>,
    rollouts: Vec<rollout::Subject>,
}

type Emitted = (Vec<MeshObject>, Vec<EmitError>);

/// The lower and emit stages, with the summary of the lowered IR and its
/// rollouts' subjects. When
/// every target is [namespace-local](emit::Emitter::namespace_local), a
/// namespace at a time: only one namespace's IR is ever held (the whole
/// IR grows with the repository, and would be held beside the objects);
/// the result is the same.
fn lower_and_emit(repo: &Repository, opts: &Options, targets: &[Target]) -> Result<Lowered, Error> {
    let targets = sorted_targets(targets);
    let emitters: Vec<Box<dyn emit::Emitter>> = targets.iter().map(|t| emit::emitter(*t)).collect();
    let lowering = lower::Lowering::new(repo, &opts.positions);
    let groups = match emitters.iter().all(|e| e.namespace_local()) {
        true => lowering.by_namespace(),
        false => vec![repo.services.iter().collect()],
    };
    let mut ir = lowering.settings();
    ir.targets = targets.clone();
    let mut summary = Summary::default();
    let mut objects = reserve_objects(repo.services.len(), targets.len());
    let mut errors = Vec::new();
    let mut rollouts = Vec::new();
    for group in groups {
        // The last namespace's IR goes before the next one is made.
        ir.services = Vec::new();
        ir.services = lowering.services(&group).map_err(Error::Lower)?;
        rollouts.extend(
            ir.services
                .iter()
                .filter(|s| s.rollout.is_some())
                .map(|s| rollout::Subject::new(s.clone(), repo)),
        );
        if !opts.skip_summary {
            summary.services.extend(Summary::of(&ir).services);
        }
        let start = objects.len();
        emit_into(&ir, &emitters, &mut objects, &mut errors);
        if let Some(f) = opts.on_emitted {
            f(&mut objects[start..]);
        }
    }
    let (mut objects, errors) = finish(objects, errors)?;
    if let Some(f) = opts.on_emitted {
        // Objects merged across targets were made again.
        f(&mut objects);
    }
    rollouts.sort_by_key(rollout::Subject::key);
    Ok(Lowered {
        summary,
        objects,
        unsupported: errors,
        rollouts,
    })
}

/// Runs each target's emitter; returns the sorted objects and what the
/// targets could not express.
pub fn emit_all(mut ir: Ir, targets: &[Target]) -> Result<Emitted, Error> {
    ir.targets = sorted_targets(targets);
    let emitters: Vec<Box<dyn emit::Emitter>> =
        ir.targets.iter().map(|t| emit::emitter(*t)).collect();
    let mut objects = reserve_objects(ir.services.len(), emitters.len());
    let mut errors = Vec::new();
    emit_into(&ir, &emitters, &mut objects, &mut errors);
    finish(objects, errors)
}

fn sorted_targets(targets: &[Target]) -> Vec<Target> {
    let mut targets = targets.to_vec();
    targets.sort();
    targets.dedup();
    targets
}

fn reserve_objects(services: usize, targets: usize) -> Vec<MeshObject> {
    // Room for 12 objects per service and target (Linkerd makes 9 for a
    // service of three versions with an allow list and SLOs): room
    // reserved but never written costs no memory, while outgrowing it
    // would copy the vector into one twice as large.
    Vec::with_capacity(services * 12 * targets.max(1))
}

fn emit_into(
    ir: &Ir,
    emitters: &[Box<dyn emit::Emitter>],
    objects: &mut Vec<MeshObject>,
    errors: &mut Vec<EmitError>,
) {
    for e in emitters {
        emit::features::report(e.as_ref(), ir, errors);
        e.emit(ir, objects, errors);
    }
}

/// Sorts what the emitters made, and merges the objects several targets
/// emit alike.
fn finish(mut objects: Vec<MeshObject>, mut errors: Vec<EmitError>) -> Result<Emitted, Error> {
    errors.sort_by(|a, b| {
        (&a.file, a.line, a.emitter, &a.message).cmp(&(&b.file, b.line, b.emitter, &b.message))
    });
    errors.dedup();
    object::sort(&mut objects);
    let objects = object::merge_duplicates(objects).map_err(Error::Collision)?;
    Ok((objects, errors))
}

/// Its name in meshplan.yaml ([`Target::name`]).
pub fn target_name(t: Target) -> &'static str {
    t.name()
}

/// The mesh's own name, for messages.
pub fn target_title(t: Target) -> &'static str {
    match t {
        Target::Istio => "Istio",
        Target::Linkerd => "Linkerd",
        Target::GatewayApi => "Gateway API",
        Target::Consul => "Consul",
        Target::Cilium => "Cilium",
        Target::NetworkPolicy => "NetworkPolicy",
        Target::Smi => "SMI",
    }
}

/// Validates compiled objects against CRD schemas; each violation becomes
/// an MP4001 diagnostic at the intent that produced the object.
pub fn check_schemas(
    repo: &Repository,
    objects: &[MeshObject],
    set: &validate::SchemaSet,
) -> (validate::Report, Vec<Diagnostic>) {
    let report = set.validate(objects);
    let origins = intent_locations(repo);
    let mut diagnostics: Vec<Diagnostic> = report
        .violations
        .iter()
        .map(|v| {
            let d = Diagnostic::error(
                meshplan_policy_lang::diagnostic::Code::SchemaViolation,
                format!(
                    "{} (from the {} emitter) breaks its schema at `{}`: {}",
                    v.object, v.emitter, v.path, v.message
                ),
            )
            .hint("the emitted object would be rejected, or silently changed, by the API server: report it (a compiler bug), or avoid the intent setting that produces it");
            match origins.get(&*v.origin.intent) {
                Some(loc) => d.at(loc.clone()),
                None => d,
            }
        })
        .collect();
    meshplan_policy_lang::diagnostic::normalize(&mut diagnostics);
    (report, diagnostics)
}

/// A collision's message: between two intents, their derived names meet
/// (a port `b-c` of `a` and a port `c` of `a-b` both name `a-b-c`); from
/// one intent, the compiler erred.
fn collision_message(c: &object::Collision) -> String {
    let [a, b] = &c.origins;
    if a.intent == b.intent {
        return format!(
            "targets `{}` and `{}` both emit {} with different content (a compiler bug: please report it)",
            c.emitters[0], c.emitters[1], c.object
        );
    }
    format!(
        "{}: {} is made for both `{}` ({}) and `{}` ({}): the names meshplan derives from them collide",
        c.emitters[1], c.object, a.intent, a.source, b.intent, b.source
    )
}

/// A collision of two intents' derived names, as an MP2001 diagnostic at
/// the second intent (one intent's collision is a compiler bug: `None`).
pub fn collision_diagnostic(repo: &Repository, c: &object::Collision) -> Option<Diagnostic> {
    let [a, b] = &c.origins;
    if a.intent == b.intent {
        return None;
    }
    let at = intent_locations(repo);
    let mut d = Diagnostic::error(
        meshplan_policy_lang::diagnostic::Code::DuplicateName,
        collision_message(c),
    )
    .hint("rename a service, a version or a port so that the derived names differ (names are joined with `-`)");
    if let Some(loc) = at.get(&*b.intent) {
        d = d.at(loc.clone());
    }
    if let Some(loc) = at.get(&*a.intent) {
        d = d.related(loc.clone(), "the other service");
    }
    Some(d)
}

/// What the targets cannot express, as MP4002 diagnostics at the intent
/// field that asks for it: errors, or warnings when meshplan.yaml (or the
/// caller) tolerates them.
pub fn unsupported_diagnostics(
    repo: &Repository,
    errors: &[EmitError],
    warning: bool,
) -> Vec<Diagnostic> {
    use meshplan_policy_lang::diagnostic::{Code, Severity};
    use meshplan_policy_lang::yaml::Path;
    let (severity, hint) = if warning {
        (Severity::Warning, "rendered without it (`unsupported: warning`); docs/meshes.md lists what each target expresses")
    } else {
        (Severity::Error, "remove the setting, add a target that expresses it, or set `unsupported: warning` in meshplan.yaml to render without it (docs/meshes.md lists what each target expresses)")
    };
    let intents: HashMap<String, _> = repo
        .services
        .iter()
        .map(|s| (intent_key(repo, s), s))
        .collect();
    // A feature's fields, parsed once (a large render has 60,000 findings
    // of a handful of features).
    let mut feature_paths: HashMap<Option<emit::Feature>, Vec<Path>> = HashMap::new();
    let mut out = Vec::with_capacity(errors.len());
    let mut located = Vec::with_capacity(errors.len());
    for e in errors {
        let d = Diagnostic::new(
            Code::TargetUnsupported.as_str(),
            severity,
            format!("{}: {}", e.emitter, e.message),
        )
        .hint(hint);
        match intents.get(&e.intent) {
            Some(s) => located.push((*s, (e, d))),
            None => out.push(d),
        }
    }
    // Findings come sorted by file: each file is read again once for all
    // of its findings.
    out.extend(repo.in_trees(located, |s, root, (e, d)| {
        let paths = feature_paths.entry(e.feature).or_insert_with(|| {
            let fields = e.feature.map(|f| f.fields()).unwrap_or(&[]);
            fields.iter().map(|f| Path::parse(f)).collect()
        });
        let key = paths
            .iter()
            .find(|p| root.find(p).is_some())
            .map(|p| root.locate_key(p))
            .unwrap_or_else(|| root.locate_key(&Path::parse("metadata.name")));
        d.at(Location::new(Arc::clone(&s.file), key.span))
    }));
    meshplan_policy_lang::diagnostic::normalize(&mut out);
    out
}

/// `namespace/name` of an intent, as `Origin::intent` names it.
fn intent_key(
    repo: &Repository,
    s: &meshplan_policy_lang::parse::Loaded<meshplan_policy_lang::intent::ServiceIntent>,
) -> String {
    format!("{}/{}", repo.namespace_of(&s.value), s.value.metadata.name)
}

fn intent_locations(repo: &Repository) -> BTreeMap<String, Location> {
    repo.services
        .iter()
        .map(|s| {
            let key = intent_key(repo, s);
            (key, Location::new(s.file.clone(), s.span))
        })
        .collect()
}

/// Evaluates the repository's resource-scope rules on every object, at
/// the location of the intent that produced it.
fn govern(repo: &Repository, report: &Report, lowered: Lowered) -> Compiled {
    let Lowered {
        summary,
        objects,
        unsupported,
        rollouts,
    } = lowered;
    let mut diagnostics = Vec::new();
    if !report.rules.has_resource_rules() {
        return Compiled {
            objects,
            diagnostics,
            unsupported,
            summary,
            rollouts,
        };
    }
    let engine = Engine::new();
    let views = Views::config_only(repo);
    let origins = intent_locations(repo);
    for o in &objects {
        if let Some(loc) = origins.get(&*o.origin.intent) {
            diagnostics.extend(
                report
                    .rules
                    .eval_resource(&engine, &views, &o.body.value(), loc),
            );
        }
    }
    meshplan_policy_lang::diagnostic::normalize(&mut diagnostics);
    Compiled {
        objects,
        diagnostics,
        unsupported,
        summary,
        rollouts,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Fixtures for unit tests: intents in memory, checked and lowered.

    use meshplan_policy_lang::check::check_sources;
    use meshplan_policy_lang::parse::Sources;

    use crate::ir::{Ir, Positions};

    /// Checks `files` (name, text), asserts they pass, and lowers them.
    pub fn ir_of(files: &[(&str, &str)], positions: &Positions) -> Ir {
        let (repo, report) = check_sources(&Sources {
            files: files
                .iter()
                .map(|(n, t)| ((*n).into(), (*t).into()))
                .collect(),
        });
        assert!(report.passes(false), "{:?}", report.diagnostics);
        crate::lower::lower(&repo, positions).unwrap()
    }

    /// Service `web` in `shop` with `spec` (indented by two), lowered.
    pub fn lowered(spec: &str) -> crate::ir::Service {
        let intent = format!("apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: web, namespace: shop }}\nspec:\n  {spec}");
        // Not checked: some cases are deliberately ambiguous.
        let (repo, _) = check_sources(&Sources {
            files: vec![("s.yaml".into(), intent)],
        });
        crate::lower::lower(&repo, &Positions::default())
            .unwrap()
            .services
            .remove(0)
    }
}
