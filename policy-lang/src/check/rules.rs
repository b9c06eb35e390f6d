//! CEL rules: compiled once (built-in pack and the repository's
//! policies), graded by `meshplan.yaml`, evaluated per scope.
//!
//! A rule that cannot be compiled is a diagnostic at the exact position
//! inside its expression. A rule that fails to *evaluate* (missing key, type
//! mismatch, over budget) is reported at the rule, naming the intent it ran
//! on: never a panic, and never a silent pass.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cel::{position, At, Bindings, Bound, Compiled, Engine};
use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::intent::{Policy, RuleSetting, RuleSeverity, Scope, ServiceIntent};
use crate::parse::{Loaded, Repository};
use crate::source::Location;
use crate::yaml::{did_you_mean, Path};

use super::builtin;

/// Variables each scope declares.
pub fn variables(scope: Scope) -> &'static [&'static str] {
    match scope {
        Scope::Intent => &["intent", "config"],
        Scope::Repository => &["intents", "config"],
        Scope::Resource => &["object", "config"],
    }
}

/// A compiled expression and where it is written.
#[derive(Debug)]
pub struct Expr {
    pub compiled: Compiled,
    pub location: Location,
}

#[derive(Debug)]
pub enum Message {
    Static(String),
    Expr(Box<Expr>),
}

#[derive(Debug)]
pub struct CompiledRule {
    /// `MPR…` for built-in rules, `policy/rule` for an organisation's.
    pub code: String,
    pub name: String,
    pub policy: String,
    pub builtin: bool,
    pub scope: Scope,
    pub severity: Severity,
    pub matcher: Option<Expr>,
    pub rule: Expr,
    pub message: Message,
    pub field_path: Option<Path>,
    pub field_path_expr: Option<Expr>,
    pub hint: Option<String>,
    /// One line for listings: the static message, or the rule's name.
    pub description: String,
}

/// All enabled rules, in a stable order (built-in first, then policies by
/// name, rules in file order).
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<CompiledRule>,
}

/// Compiles a scalar at `path` of `doc` with `vars`; compile problems become
/// diagnostics pointing inside the expression.
fn compile_at<T>(
    engine: &Engine,
    doc: &Loaded<T>,
    path: &Path,
    source: &str,
    vars: &[&str],
    severity: Severity,
    diags: &mut Vec<Diagnostic>,
) -> Option<Expr> {
    let node = doc
        .node(path)
        .map(Cow::into_owned)
        .unwrap_or_else(|| doc.root().locate(path).clone());
    let location = Location::new(Arc::clone(&doc.file), position::node_span(&node));
    match engine.compile(source, vars) {
        Ok(compiled) => Some(Expr { compiled, location }),
        Err(issues) => {
            for i in issues {
                let (s, e) = match i.at {
                    At::Chars(s, e) => (s, e),
                    At::LineCol(l, c) => {
                        let s = position::line_col_to_char(source, l, c);
                        (s, s + 1)
                    }
                };
                let span = position::map_chars(&doc.file, &node, s, e);
                let mut d = Diagnostic::new(i.code.as_str(), severity, i.message)
                    .at(Location::new(Arc::clone(&doc.file), span))
                    .maybe_hint(i.hint);
                // A broken expression is an error whatever the rule's grade:
                // the rule could never run.
                d.severity = Severity::Error;
                diags.push(d);
            }
            None
        }
    }
}

/// Compiles the built-in pack and the repository's policies, applying the
/// configuration's rule settings.
pub fn compile(engine: &Engine, repo: &Repository, diags: &mut Vec<Diagnostic>) -> RuleSet {
    let settings: BTreeMap<&str, RuleSetting> = repo
        .config
        .as_ref()
        .map(|c| {
            c.value
                .rules
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect()
        })
        .unwrap_or_default();
    let mut set = RuleSet::default();
    let mut known: Vec<String> = Vec::new();
    let builtin = builtin::policy();
    let mut policies: Vec<(&Loaded<Policy>, bool)> = builtin.iter().map(|p| (p, true)).collect();
    let mut org: Vec<&Loaded<Policy>> = repo.policies.iter().collect();
    org.sort_by(|a, b| a.value.metadata.name.cmp(&b.value.metadata.name));
    policies.extend(org.into_iter().map(|p| (p, false)));

    for (doc, is_builtin) in policies {
        let pname = doc.value.metadata.name.clone();
        for (i, r) in doc.value.spec.rules.iter().enumerate() {
            let code = if is_builtin {
                builtin::code_of(&r.name).unwrap_or("MPR000").to_string()
            } else {
                format!("{pname}/{}", r.name)
            };
            known.push(code.clone());
            if is_builtin {
                known.push(r.name.clone());
            }
            let setting = settings
                .get(code.as_str())
                .or_else(|| is_builtin.then(|| settings.get(r.name.as_str())).flatten())
                .copied();
            let severity = match (setting, r.severity) {
                (Some(RuleSetting::Off), _) => continue,
                (Some(RuleSetting::Error), _) => Severity::Error,
                (Some(RuleSetting::Warning), _) => Severity::Warning,
                (None, RuleSeverity::Error) => Severity::Error,
                (None, RuleSeverity::Warning) => Severity::Warning,
            };
            let vars = variables(r.scope);
            let base = Path::parse(&format!("spec.rules[{i}]"));
            let before = diags.len();
            let matcher = r.match_expr.as_deref().and_then(|m| {
                compile_at(engine, doc, &base.key("match"), m, vars, severity, diags)
            });
            let rule = compile_at(
                engine,
                doc,
                &base.key("rule"),
                &r.rule,
                vars,
                severity,
                diags,
            );
            let message = match &r.message_expression {
                Some(m) => compile_at(
                    engine,
                    doc,
                    &base.key("messageExpression"),
                    m,
                    vars,
                    severity,
                    diags,
                )
                .map(|e| Message::Expr(Box::new(e))),
                None => {
                    Some(Message::Static(r.message.clone().unwrap_or_else(|| {
                        format!("rule `{code}` is not satisfied")
                    })))
                }
            };
            let field_path_expr = r.field_path_expression.as_deref().and_then(|m| {
                compile_at(
                    engine,
                    doc,
                    &base.key("fieldPathExpression"),
                    m,
                    vars,
                    severity,
                    diags,
                )
            });
            if diags.len() > before {
                continue;
            }
            let (Some(rule), Some(message)) = (rule, message) else {
                continue;
            };
            set.rules.push(CompiledRule {
                description: r
                    .message
                    .clone()
                    .or_else(|| r.hint.clone())
                    .unwrap_or_else(|| r.name.clone()),
                code,
                name: r.name.clone(),
                policy: pname.clone(),
                builtin: is_builtin,
                scope: r.scope,
                severity,
                matcher,
                rule,
                message,
                field_path: r.field_path.as_deref().map(Path::parse),
                field_path_expr,
                hint: r.hint.clone(),
            });
        }
    }
    // Settings naming no rule are mistakes (a typo silently keeping a rule on).
    if let Some(cfg) = &repo.config {
        let candidates: Vec<&str> = known.iter().map(String::as_str).collect();
        for key in cfg.value.rules.keys() {
            if !candidates.contains(&key.as_str()) {
                let loc = cfg.locate_key(&Path::root().key("rules").key(key.clone()));
                diags.push(
                    Diagnostic::error(
                        Code::UnknownReference,
                        format!("`{key}` names no rule: use a built-in code (MPR…), a built-in rule name, or `policy/rule`"),
                    )
                    .at(loc)
                    .maybe_hint(did_you_mean(key, &candidates)),
                );
            }
        }
    }
    set
}

/// The values rules see for one repository, converted once.
#[derive(Debug)]
pub struct Views {
    pub intents: Vec<Bound>,
    pub config: Bound,
}

impl Views {
    pub fn new(repo: &Repository) -> Self {
        let intents = repo.services.iter().map(|s| intent_view(repo, s)).collect();
        Self {
            intents,
            ..Self::config_only(repo)
        }
    }

    /// What `rules` need held at once: every intent's view when a
    /// repository-scope rule sees them all; otherwise only `config`, and
    /// [`RuleSet::eval_intents`] converts each intent as its rules run and
    /// drops it after, so a large repository's views never all exist
    /// together (they are as large as its node trees).
    pub fn for_rules(repo: &Repository, rules: &RuleSet) -> Self {
        if rules.in_scope(Scope::Repository).next().is_some() {
            Self::new(repo)
        } else {
            Self::config_only(repo)
        }
    }

    /// Only `config`, which is all resource-scope rules see: converting
    /// every intent for them would be wasted.
    pub fn config_only(repo: &Repository) -> Self {
        let config = match &repo.config {
            Some(c) => Bound::new(&c.value).unwrap_or_else(|_| Bound::from_value(cel::Value::Null)),
            None => Bound::from_value(cel::Value::Map(cel::objects::Map {
                map: Arc::new(Default::default()),
            })),
        };
        Self {
            intents: Vec::new(),
            config,
        }
    }
}

/// The intent as rules see it: namespace defaulted.
fn intent_view(repo: &Repository, s: &Loaded<ServiceIntent>) -> Bound {
    let bound = if s.value.metadata.namespace.is_some() {
        Bound::new(&s.value)
    } else {
        let mut s = s.value.clone();
        s.metadata.namespace = Some(repo.default_namespace().to_string());
        Bound::new(&s)
    };
    bound.unwrap_or_else(|_| Bound::from_value(cel::Value::Null))
}

enum Outcome {
    Pass,
    Fail,
    Error(String),
}

impl RuleSet {
    fn eval_bool(engine: &Engine, e: &Expr, b: &Bindings<'_>) -> Outcome {
        match engine.eval(&e.compiled, b) {
            Ok(cel::Value::Bool(true)) => Outcome::Pass,
            Ok(cel::Value::Bool(false)) => Outcome::Fail,
            Ok(other) => Outcome::Error(format!("returned {} instead of a boolean", kind(&other))),
            Err(e) => Outcome::Error(e.to_string()),
        }
    }

    fn eval_string(engine: &Engine, e: &Expr, b: &Bindings<'_>) -> Option<String> {
        Self::try_string(engine, e, b).ok()
    }

    /// A string expression's value, or why there is none.
    fn try_string(engine: &Engine, e: &Expr, b: &Bindings<'_>) -> Result<String, NotAString> {
        match engine.eval(&e.compiled, b) {
            Ok(cel::Value::String(s)) => Ok(s.to_string()),
            Ok(other) => Err(NotAString::Returned(kind(&other))),
            Err(e) => Err(NotAString::Failed(e)),
        }
    }

    /// Evaluates every `intent`-scope rule on every service intent, with
    /// the intent views of `views`, or, when it holds none, each converted
    /// for its own rules (see [`Views::for_rules`]).
    pub fn eval_intents(
        &self,
        engine: &Engine,
        repo: &Repository,
        views: &Views,
    ) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        if self.in_scope(Scope::Intent).next().is_none() {
            return out;
        }
        for (i, s) in repo.services.iter().enumerate() {
            let converted;
            let bound = match views.intents.get(i) {
                Some(bound) => bound,
                None => {
                    converted = intent_view(repo, s);
                    &converted
                }
            };
            let b = Bindings::new()
                .with("intent", bound)
                .with("config", &views.config);
            for r in self.in_scope(Scope::Intent) {
                let subject = || format!("intent `{}`", s.value.metadata.name);
                if let Some(d) =
                    self.eval_rule(engine, r, &b, subject, |path| s.locate(path), Some(s))
                {
                    out.push(d);
                }
            }
        }
        out
    }

    /// Evaluates every `repository`-scope rule once, on the intents of
    /// `views` (built by [`Views::new`]).
    pub fn eval_repository(&self, engine: &Engine, views: &Views) -> Vec<Diagnostic> {
        let rules: Vec<&CompiledRule> = self.in_scope(Scope::Repository).collect();
        if rules.is_empty() {
            return Vec::new();
        }
        let intents = Bound::list(&views.intents);
        let b = Bindings::new()
            .with("intents", &intents)
            .with("config", &views.config);
        rules
            .into_iter()
            .filter_map(|r| {
                let loc = r.rule.location.clone();
                self.eval_rule(
                    engine,
                    r,
                    &b,
                    || "the repository".into(),
                    |_| loc.clone(),
                    None,
                )
            })
            .collect()
    }

    /// Whether any rule runs on compiled objects.
    pub fn has_resource_rules(&self) -> bool {
        self.in_scope(Scope::Resource).next().is_some()
    }

    fn in_scope(&self, scope: Scope) -> impl Iterator<Item = &CompiledRule> {
        self.rules.iter().filter(move |r| r.scope == scope)
    }

    /// Evaluates every `resource`-scope rule on one compiled object (JSON),
    /// produced from the intent at `origin`.
    pub fn eval_resource(
        &self,
        engine: &Engine,
        views: &Views,
        object: &serde_json::Value,
        origin: &Location,
    ) -> Vec<Diagnostic> {
        let rules: Vec<&CompiledRule> = self.in_scope(Scope::Resource).collect();
        if rules.is_empty() {
            return Vec::new();
        }
        let Ok(obj) = Bound::new(object) else {
            return Vec::new();
        };
        let b = Bindings::new()
            .with("object", &obj)
            .with("config", &views.config);
        let name = format!(
            "{} `{}`",
            object["kind"].as_str().unwrap_or("object"),
            object["metadata"]["name"].as_str().unwrap_or("?")
        );
        rules
            .into_iter()
            .filter_map(|r| {
                self.eval_rule(engine, r, &b, || name.clone(), |_| origin.clone(), None)
            })
            .collect()
    }

    fn eval_rule(
        &self,
        engine: &Engine,
        r: &CompiledRule,
        b: &Bindings<'_>,
        subject: impl Fn() -> String,
        locate: impl Fn(&Path) -> Location,
        intent: Option<&Loaded<ServiceIntent>>,
    ) -> Option<Diagnostic> {
        let rule_note = |d: Diagnostic| {
            if r.builtin {
                d
            } else {
                d.related(
                    r.rule.location.clone(),
                    format!("rule `{}` is defined here", r.code),
                )
            }
        };
        if let Some(m) = &r.matcher {
            match Self::eval_bool(engine, m, b) {
                Outcome::Pass => {}
                Outcome::Fail => return None,
                Outcome::Error(msg) => {
                    return Some(self.eval_error(r, m, &msg, &subject(), &locate))
                }
            }
        }
        match Self::eval_bool(engine, &r.rule, b) {
            Outcome::Pass => None,
            Outcome::Error(msg) => Some(self.eval_error(r, &r.rule, &msg, &subject(), &locate)),
            Outcome::Fail => {
                let message = match &r.message {
                    Message::Static(s) => s.clone(),
                    // The rule's verdict stands; why its message is
                    // missing is said, not hidden.
                    Message::Expr(e) => Self::try_string(engine, e, b).unwrap_or_else(|why| {
                        format!(
                            "rule `{}` is not satisfied (its messageExpression failed: {why})",
                            r.code
                        )
                    }),
                };
                let path = r
                    .field_path_expr
                    .as_ref()
                    .and_then(|e| Self::eval_string(engine, e, b))
                    .map(|s| Path::parse(&s))
                    .or_else(|| r.field_path.clone())
                    .unwrap_or_else(|| Path::parse("metadata.name"));
                let mut loc = locate(&path);
                // Point at a key rather than a whole block for mappings.
                if let Some(s) = intent {
                    if s.node(&path).is_some_and(|n| {
                        matches!(
                            n.value,
                            crate::yaml::Value::Map(_) | crate::yaml::Value::Seq(_)
                        )
                    }) {
                        loc = s.locate_key(&path);
                    }
                }
                let d = Diagnostic::new(r.code.clone(), r.severity, message)
                    .at(loc)
                    .maybe_hint(r.hint.clone());
                Some(rule_note(d))
            }
        }
    }

    fn eval_error(
        &self,
        r: &CompiledRule,
        e: &Expr,
        msg: &str,
        subject: &str,
        locate: &impl Fn(&Path) -> Location,
    ) -> Diagnostic {
        let code = if msg.starts_with("over the evaluation budget") {
            Code::CelBudget
        } else if msg.starts_with("returned ") {
            Code::CelNotBool
        } else {
            Code::CelEvaluation
        };
        let d = Diagnostic::new(
            code.as_str(),
            r.severity,
            format!(
                "rule `{}` could not be evaluated on {subject}: {msg}",
                r.code
            ),
        )
        .hint("guard optional fields with has(), and compare values of the same type");
        if r.builtin {
            // The user cannot see the built-in pack: point at the intent.
            d.at(locate(&Path::parse("metadata.name")))
        } else {
            d.at(e.location.clone()).related(
                locate(&Path::parse("metadata.name")),
                format!("while checking {subject}"),
            )
        }
    }
}

/// Why a string expression (a message, a field path) gave no string.
#[derive(Debug, thiserror::Error)]
enum NotAString {
    #[error("returned {0} instead of a string")]
    Returned(&'static str),
    #[error(transparent)]
    Failed(crate::cel::EvalError),
}

fn kind(v: &cel::Value) -> &'static str {
    match v {
        cel::Value::List(_) => "a list",
        cel::Value::Map(_) => "a map",
        cel::Value::Int(_) | cel::Value::UInt(_) => "an integer",
        cel::Value::Float(_) => "a double",
        cel::Value::String(_) => "a string",
        cel::Value::Null => "null",
        _ => "a non-boolean value",
    }
}

/// Compiles every analysis metric's `successCondition` (variable `result`),
/// so a typo fails the check, not the rollout.
pub fn check_metric_conditions(engine: &Engine, repo: &Repository, diags: &mut Vec<Diagnostic>) {
    for s in &repo.services {
        let Some(a) = s
            .value
            .spec
            .rollout
            .as_ref()
            .and_then(|r| r.analysis.as_ref())
        else {
            continue;
        };
        for (i, m) in a.metrics.iter().enumerate() {
            let path = Path::parse(&format!(
                "spec.rollout.analysis.metrics[{i}].successCondition"
            ));
            let _ = compile_at(
                engine,
                s,
                &path,
                &m.success_condition,
                &["result"],
                Severity::Error,
                diags,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, Sources};

    const POLICY: &str = "apiVersion: meshplan.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: org\nspec:\n  rules:\n    - name: no-wildcard-hosts\n      scope: resource\n      match: object.kind == 'VirtualService'\n      rule: \"!object.spec.hosts.exists(h, h == '*')\"\n      message: a VirtualService must not capture every host\n";

    #[test]
    fn resource_rules_run_on_compiled_objects() {
        let (repo, diags) = parse(&Sources {
            files: vec![("p.yaml".into(), POLICY.into())],
        });
        assert!(diags.is_empty(), "{diags:?}");
        let engine = Engine::new();
        let mut diags = Vec::new();
        let set = compile(&engine, &repo, &mut diags);
        assert!(diags.is_empty(), "{diags:?}");
        let views = Views::new(&repo);
        let origin = Location::new(
            crate::SourceFile::new("svc.yaml", "x"),
            crate::Span::default(),
        );
        let bad = serde_json::json!({"kind": "VirtualService", "metadata": {"name": "web"}, "spec": {"hosts": ["*"]}});
        let good = serde_json::json!({"kind": "VirtualService", "metadata": {"name": "web"}, "spec": {"hosts": ["web"]}});
        let other =
            serde_json::json!({"kind": "DestinationRule", "metadata": {"name": "web"}, "spec": {}});
        let found = set.eval_resource(&engine, &views, &bad, &origin);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].code, "org/no-wildcard-hosts");
        assert_eq!(found[0].location.as_ref().unwrap().file.name, "svc.yaml");
        assert!(set
            .eval_resource(&engine, &views, &good, &origin)
            .is_empty());
        assert!(set
            .eval_resource(&engine, &views, &other, &origin)
            .is_empty());
    }

    #[test]
    fn resource_rules_are_not_run_on_intents() {
        let svc = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: web\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n";
        let sources = Sources {
            files: vec![
                ("p.yaml".into(), POLICY.into()),
                ("s.yaml".into(), svc.into()),
            ],
        };
        let (_, report) = crate::check::check_sources(&sources);
        assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    }

    /// Intent views are held at once only for repository-scope rules; the
    /// same intent rule finds the same failure either way.
    #[test]
    fn intent_views_are_converted_one_at_a_time_without_repository_rules() {
        let policy = |scope: &str, rule: &str| {
            format!(
                "apiVersion: meshplan.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: org\nspec:\n  rules:\n    - name: owner\n      rule: intent.metadata.name != 'web'\n      message: not web\n    - name: other\n      scope: {scope}\n      rule: {rule}\n      message: other\n"
            )
        };
        let svc = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: web\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n";
        let mut found = Vec::new();
        for (scope, rule, held) in [
            ("repository", "size(intents) < 100", 1),
            ("resource", "has(object.kind)", 0),
        ] {
            let (repo, diags) = parse(&Sources {
                files: vec![
                    ("p.yaml".into(), policy(scope, rule)),
                    ("s.yaml".into(), svc.into()),
                ],
            });
            assert!(diags.is_empty(), "{diags:?}");
            let engine = Engine::new();
            let mut diags = Vec::new();
            let set = compile(&engine, &repo, &mut diags);
            assert!(diags.is_empty(), "{diags:?}");
            let views = Views::for_rules(&repo, &set);
            assert_eq!(views.intents.len(), held, "{scope}");
            let failures: Vec<String> = set
                .eval_intents(&engine, &repo, &views)
                .into_iter()
                .map(|d| format!("{} {}", d.code, d.message))
                .collect();
            found.push(failures);
        }
        assert_eq!(found[0].len(), 1, "{found:?}");
        assert_eq!(found[0], found[1]);
    }
}
