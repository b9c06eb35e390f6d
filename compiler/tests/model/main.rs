//! The equivalence property: for every golden case, examples-repo and
//! generated repositories, each target's behavioural model over that
//! target's own output gives the intents' answer (`model::intent`) to
//! every request worth asking — or the target reported the feature as
//! unsupported (MP4002). A divergence fails, naming the request.
//!
//! `MESHPLAN_MODEL_TARGETS=istio,linkerd` limits the targets (while a
//! model or an emitter is being worked on); CI runs them all.

#[path = "../common/mod.rs"]
mod common;
mod compare;
mod features;
mod generated;
mod requests;

use std::collections::BTreeMap;

use meshplan_compiler::model::{self, Cluster};
use meshplan_compiler::{check_dir, check_sources};
use meshplan_compiler::{compile, Options, Positions};
use meshplan_policy_lang::check::Report;
use meshplan_policy_lang::intent::config::UnsupportedSetting;
use meshplan_policy_lang::intent::{workloads, Target};
use meshplan_policy_lang::parse::{Repository, Sources};

/// The targets with a model (SMI, deprecated, has none).
fn targets() -> Vec<Target> {
    let only = std::env::var("MESHPLAN_MODEL_TARGETS").ok();
    Target::ALL
        .into_iter()
        .filter(|t| *t != Target::Smi)
        .filter(|t| {
            only.as_deref().is_none_or(|o| {
                o.split(',')
                    .any(|x| x.trim() == meshplan_compiler::target_name(*t))
            })
        })
        .collect()
}

/// Every divergence of every target on `repo`, as `target: request: …`.
pub fn divergences(repo: &Repository, report: &Report, positions: &Positions) -> Vec<String> {
    divergences_on(repo, report, positions, &targets())
}

/// Every divergence of `targets` on `repo`.
pub fn divergences_on(
    repo: &Repository,
    report: &Report,
    positions: &Positions,
    targets: &[Target],
) -> Vec<String> {
    let cluster = Cluster::of(repo);
    let requests = requests::requests(repo, &cluster);
    let mut out = Vec::new();
    for &target in targets {
        let name = meshplan_compiler::target_name(target);
        let opts = Options {
            targets: Some(vec![target]),
            positions: positions.clone(),
            unsupported: Some(UnsupportedSetting::Warning),
            skip_summary: true,
            on_emitted: None,
        };
        let compiled = match compile(repo, report, &opts) {
            Ok(c) => c,
            Err(e) => {
                out.push(format!("{name}: does not compile: {e}"));
                continue;
            }
        };
        let mut excused: BTreeMap<String, compare::Excused> = BTreeMap::new();
        for u in &compiled.unsupported {
            let e = excused.entry(u.intent.clone()).or_default();
            match u.feature {
                Some(f) => {
                    e.features.insert(f);
                }
                None => e.all = true,
            }
        }
        let m = model::of(target);
        for request in &requests {
            let mut want = model::intent::answer(repo, positions, &cluster, request);
            // Routing is what meshed callers see (a caller without a
            // sidecar is not routed by the mesh).
            if matches!(request.source, model::Source::Unauthenticated { .. }) {
                want.routing = None;
            }
            let got = match m.answer(&compiled.objects, &cluster, request) {
                Ok(a) => a,
                Err(e) => {
                    out.push(format!("{name}: {request}: the model cannot answer: {e}"));
                    continue;
                }
            };
            let (mut want, mut got) = (want, got);
            for a in [&mut want, &mut got] {
                unrewritten(a, request);
            }
            let key = intent_key(repo, &request.namespace, &request.service);
            let none = compare::Excused::default();
            let ex = excused.get(&key).unwrap_or(&none);
            for d in compare::differences(&want, &got, ex) {
                out.push(format!("{name}: {request}: {d}"));
            }
        }
    }
    out
}

/// A rewrite that leaves the path or host as it was is no rewrite.
fn unrewritten(a: &mut model::Answer, r: &model::Request) {
    if let Some(model::Routing::Forward(f)) = &mut a.routing {
        if f.rewritten_path.as_deref() == Some(r.path.as_str()) {
            f.rewritten_path = None;
        }
    }
}

fn intent_key(repo: &Repository, namespace: &str, host: &str) -> String {
    repo.services
        .iter()
        .map(|l| &l.value)
        .find(|s| repo.namespace_of(s) == namespace && workloads::host(s) == host)
        .map(|s| format!("{namespace}/{}", s.metadata.name))
        .unwrap_or_default()
}

fn fail_on(what: &str, d: &[String]) {
    if d.is_empty() {
        return;
    }
    let limit = std::env::var("MESHPLAN_MODEL_SHOW")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    let shown: Vec<String> = d.iter().take(limit).map(|s| format!("  {s}")).collect();
    panic!(
        "{what}: {} divergence(s) between the intents and the targets' behaviour:\n{}",
        d.len(),
        shown.join("\n")
    );
}

#[test]
fn every_case_means_on_every_target_what_its_intents_say() {
    let mut all = Vec::new();
    for dir in common::case_dirs() {
        let (repo, report) = check_dir(&dir).unwrap();
        assert!(
            report.passes(false),
            "{}: {:?}",
            dir.display(),
            report.diagnostics
        );
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for d in divergences(&repo, &report, &common::positions(&dir)) {
            all.push(format!("{name}: {d}"));
        }
    }
    fail_on("golden cases", &all);
}

/// Checks and holds one generated repository; `None` when `check`
/// refuses it (the generator aims at valid intents, not always).
pub fn generated_divergences(files: Vec<(String, String)>) -> Option<Vec<String>> {
    let (repo, report) = check_sources(&Sources { files });
    if !report.passes(false) {
        return None;
    }
    Some(divergences(&repo, &report, &Positions::default()))
}
