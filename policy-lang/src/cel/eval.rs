//! Evaluating compiled CEL against bound values.
//!
//! Values are converted to the interpreter's representation once, when an
//! intent is loaded ([`Bound::new`], see [`super::view`]); each evaluation
//! borrows them through a resolver in a child scope of one base context, so
//! nothing is converted or copied per evaluation.

use std::sync::Arc;

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, Value};
use serde::Serialize;

use super::budget::Budget;
use super::compile::Compiled;
use super::view::SharedMap;

/// Most steps one evaluation may take: items and bytes read or built (see
/// [`super::cost`]). At most a few hundred MB and about a second.
pub const COST_BUDGET: u64 = 5_000_000;

/// A value converted once for evaluation (and measured, for the cost
/// bound).
#[derive(Debug)]
pub struct Bound {
    val: Box<dyn Val>,
    /// Its size class, for the cost bound ([`size_class`]).
    class: u32,
}

/// A value's measure rounded to powers of two, packed: the key the cost
/// bound is kept under (see [`super::Compiled::cost`]), taken once per
/// bound value.
fn size_class(v: &dyn Val) -> u32 {
    let m = super::cost::rounded(super::view::measure(v));
    // Each part is a power of two: its exponent fits 7 bits.
    [m.list, m.string, m.total, m.item]
        .iter()
        .fold(0u32, |key, part| (key << 7) | part.trailing_zeros())
}

impl Bound {
    fn of(val: Box<dyn Val>) -> Self {
        let class = size_class(&*val);
        Self { val, class }
    }
}

impl Bound {
    /// Converts a serializable value: `None` fields are dropped, so `has()`
    /// tells whether the user wrote a field, and integers are CEL ints.
    pub fn new<T: Serialize>(value: &T) -> Result<Self, super::ConvertError> {
        let val = super::ser::to_val(value)?;
        Ok(Self::of(
            val.unwrap_or_else(|| Box::new(cel::common::types::CelNull)),
        ))
    }

    pub fn from_value(v: Value) -> Self {
        Self::of(super::view::convert(v))
    }

    /// A list of bound values, sharing them (no copy).
    pub fn list<'a>(items: impl IntoIterator<Item = &'a Bound>) -> Self {
        let items: Vec<Box<dyn Val>> = items.into_iter().map(|b| b.val.clone_as_boxed()).collect();
        Self::of(Box::new(super::view::SharedList::new(items)))
    }
}

/// Named values for one evaluation.
#[derive(Debug, Default)]
pub struct Bindings<'a> {
    vars: Vec<(&'static str, &'a Bound)>,
    extra: Vec<(&'static str, Box<dyn Val>)>,
}

impl<'a> Bindings<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &'static str, value: &'a Bound) -> Self {
        self.vars.push((name, value));
        self
    }

    /// A small value converted on the spot (e.g. a metric's `result`).
    pub fn with_value(mut self, name: &'static str, value: Value) -> Self {
        self.extra.push((name, super::view::convert(value)));
        self
    }

    /// The value bound to `name`.
    pub(super) fn get(&self, name: &str) -> Option<&(dyn Val + 'static)> {
        match self.vars.iter().find(|(n, _)| *n == name) {
            Some((_, b)) => Some(&*b.val),
            None => self
                .extra
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| &**v),
        }
    }
}

impl Bindings<'_> {
    /// The bound values' size classes as one key (for
    /// [`super::Compiled::cost`]); `None` when more values are bound than
    /// a key holds.
    pub(super) fn size_key(&self) -> Option<u64> {
        let classes = self
            .vars
            .iter()
            .map(|(_, b)| b.class)
            .chain(self.extra.iter().map(|(_, v)| size_class(&**v)));
        let mut key = 0u64;
        for (i, class) in classes.enumerate() {
            if i >= 2 {
                return None;
            }
            key = (key << 28) | u64::from(class);
        }
        Some(key)
    }
}

impl VariableResolver for Bindings<'_> {
    /// The interpreter asks for a qualified name (`intent.spec.rollout`) as
    /// a whole first, then for each shorter prefix, and selects the fields
    /// left on the first that resolves. Answering the whole name here, by
    /// walking our own maps, saves those lookups and selections; a name
    /// that does not walk through (a missing field, a value that is not one
    /// of our maps) is left to the interpreter, which then selects field by
    /// field and reports what is missing, as it would have.
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let (root, fields) = match variable.split_once('.') {
            Some((root, fields)) => (root, Some(fields)),
            None => (variable, None),
        };
        let mut val: &dyn Val = self.get(root)?;
        for field in fields.into_iter().flat_map(|f| f.split('.')) {
            val = val.downcast_ref::<SharedMap>()?.field(field)?;
        }
        Some(CowVal::Borrowed(val))
    }
}

/// Why an evaluation produced no answer.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalError {
    /// The interpreter failed (missing key, no such overload, …).
    Execution(String),
    /// The estimated cost is over [`COST_BUDGET`].
    Budget { estimated: u64 },
    /// The runtime budget stopped it (see [`super::budget`]).
    Stopped(super::budget::Stopped),
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::Execution(m) => f.write_str(m),
            EvalError::Budget { estimated } => write!(
                f,
                "over the evaluation budget: about {estimated} steps on this input (limit {COST_BUDGET})"
            ),
            EvalError::Stopped(why) => write!(f, "over the evaluation budget: {why}"),
        }
    }
}

impl std::error::Error for EvalError {}

/// The engine: the environment expressions compile against, and one base
/// context evaluations run in.
pub struct Engine {
    env: Arc<Env>,
    base: Context<'static, 'static>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    pub fn new() -> Self {
        // The standard library with the engine's own expansion of the
        // macros, which charges every loop to the runtime budget.
        let mut env = Env::default().with_stdlib();
        for m in super::budget::macros() {
            let _ = env.add_macro(m);
        }
        let _ = env.add_overload(
            super::budget::RANGE,
            "mp_range_dyn",
            vec![cel::common::types::DYN_TYPE],
            super::budget::range,
        );
        let _ = env.add_overload(
            super::budget::GO,
            "mp_go_dyn",
            vec![cel::common::types::DYN_TYPE],
            super::budget::go,
        );
        // Declared once; failing here is a programming error caught by the
        // unit tests (the macros and functions are exercised there).
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let _ = env.add_extension(cel::extensions::math);
        let env = Arc::new(env);
        let base = Context::with_env(Arc::clone(&env));
        Self { env, base }
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    pub fn compile(
        &self,
        source: &str,
        variables: &[&str],
    ) -> Result<Compiled, Vec<super::compile::Issue>> {
        super::compile::compile(&self.env, source, variables)
    }

    /// Evaluates `expr` with `bindings`, within the cost budget: on the
    /// fast path when it answers (see [`super::fast`]), else in the
    /// interpreter.
    pub fn eval(&self, expr: &Compiled, bindings: &Bindings<'_>) -> Result<Value, EvalError> {
        let estimated = expr.cost(bindings, COST_BUDGET);
        if estimated > COST_BUDGET {
            return Err(EvalError::Budget { estimated });
        }
        let (out, stopped) =
            Budget::run(
                || match expr.fast.as_ref().and_then(|plan| plan.eval(bindings)) {
                    Some(v) => Ok(v),
                    None => self.execute(expr, bindings),
                },
            );
        // A budget error may have been absorbed (`error || true`): the
        // evaluation was stopped all the same.
        match stopped {
            Some(why) => Err(EvalError::Stopped(why)),
            None => out,
        }
    }

    /// Evaluates `expr` in the `cel` interpreter alone (no cost check),
    /// within the runtime budget.
    #[cfg(test)]
    pub(crate) fn interpret(
        &self,
        expr: &Compiled,
        bindings: &Bindings<'_>,
    ) -> Result<Value, EvalError> {
        match Budget::run(|| self.execute(expr, bindings)) {
            (_, Some(why)) => Err(EvalError::Stopped(why)),
            (out, None) => out,
        }
    }

    pub(crate) fn execute(
        &self,
        expr: &Compiled,
        bindings: &Bindings<'_>,
    ) -> Result<Value, EvalError> {
        let mut ctx = self.base.new_inner_scope();
        ctx.set_variable_resolver(bindings);
        expr.program
            .execute(&ctx)
            .map_err(|e| EvalError::Execution(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::compile::{FUNCTIONS, MAX_NESTING};

    #[test]
    fn every_allowed_function_resolves_in_the_engine() {
        let engine = Engine::new();
        for name in FUNCTIONS {
            // Called with no arguments, globally and as a member: a declared
            // function fails on its arguments, an undeclared one on its name.
            let resolves = [
                format!("{name}()"),
                format!("''.{name}()"),
                format!("[2, 1].{name}(x, x)"),
            ]
            .iter()
            .any(|src| {
                // A macro (`sortBy`) rejects a wrong arity when parsing: it exists.
                let compiled = match engine.compile(src, &[]) {
                    Ok(c) => c,
                    Err(issues) => {
                        return issues
                            .iter()
                            .any(|i| i.code == crate::diagnostic::Code::CelSyntax)
                    }
                };
                match engine.eval(&compiled, &Bindings::new()) {
                    Err(EvalError::Execution(msg)) => !msg.starts_with("Undeclared reference"),
                    _ => true,
                }
            });
            assert!(resolves, "`{name}` is allowed but the engine lacks it");
        }
    }

    #[test]
    fn evaluates_rules_against_bound_values() {
        let engine = Engine::new();
        let intent =
            Bound::new(&serde_json::json!({"spec": {"weight": 10u32, "absent": null}})).unwrap();
        let b = Bindings::new().with("intent", &intent);
        let c = engine
            .compile(
                "intent.spec.weight <= 50 && !has(intent.spec.absent)",
                &["intent"],
            )
            .unwrap();
        assert_eq!(engine.eval(&c, &b), Ok(Value::Bool(true)));
    }

    #[test]
    fn missing_keys_are_errors_not_panics() {
        let engine = Engine::new();
        let intent = Bound::new(&serde_json::json!({"spec": {}})).unwrap();
        let b = Bindings::new().with("intent", &intent);
        let c = engine
            .compile("intent.spec.nothing.deeper == 1", &["intent"])
            .unwrap();
        assert!(matches!(engine.eval(&c, &b), Err(EvalError::Execution(_))));
    }

    /// The resolver answers qualified names itself; what it cannot walk
    /// still resolves (or fails) as the interpreter decides.
    #[test]
    fn qualified_names_select_like_fields() {
        let engine = Engine::new();
        let intent = Bound::new(&serde_json::json!({
            "spec": {"steps": [{"weight": 10u32}, {"weight": 60u32}], "name": "a"}
        }))
        .unwrap();
        let b = Bindings::new()
            .with("intent", &intent)
            .with_value("result", Value::Int(7));
        let eval =
            |src: &str| engine.eval(&engine.compile(src, &["intent", "result"]).unwrap(), &b);
        assert_eq!(eval("intent.spec.steps[1].weight"), Ok(Value::Int(60)));
        assert_eq!(
            eval("intent.spec.name + intent.spec.name"),
            Ok(Value::String("aa".to_string().into()))
        );
        assert_eq!(
            eval("has(intent.spec.steps) && !has(intent.spec.gone)"),
            Ok(Value::Bool(true))
        );
        // A comprehension variable shadows a binding of the same name.
        assert_eq!(
            eval("intent.spec.steps.all(intent, intent.weight > 5)"),
            Ok(Value::Bool(true))
        );
        assert_eq!(eval("result + 1"), Ok(Value::Int(8)));
        let Err(EvalError::Execution(missing)) = eval("intent.spec.gone.deeper == 1") else {
            panic!("a missing field must fail");
        };
        assert!(missing.contains("gone"), "{missing}");
    }

    #[test]
    fn rejects_runaway_nested_comprehensions_on_large_input() {
        let engine = Engine::new();
        let big: Vec<u32> = (0..5_000).collect();
        let data = Bound::new(&big).unwrap();
        let b = Bindings::new().with("xs", &data);
        let c = engine
            .compile("xs.all(a, xs.all(b, a + b >= 0))", &["xs"])
            .unwrap();
        assert!(matches!(engine.eval(&c, &b), Err(EvalError::Budget { .. })));
        // The same rule on small input runs.
        let small = Bound::new(&vec![1u32, 2, 3]).unwrap();
        let b = Bindings::new().with("xs", &small);
        assert_eq!(engine.eval(&c, &b), Ok(Value::Bool(true)));
    }

    #[test]
    fn static_limits_bound_expression_size_and_nesting() {
        let engine = Engine::new();
        let long = "1 + ".repeat(3_000) + "1";
        assert!(engine.compile(&long, &[]).is_err());
        let deep = "xs.all(a, xs.all(b, xs.all(c, xs.all(d, true))))";
        let issues = engine.compile(deep, &["xs"]).unwrap_err();
        assert_eq!(issues[0].code, crate::diagnostic::Code::CelBudget);
    }

    /// Nesting that would overflow the stack of the parser, or of any pass
    /// over the tree, is refused with MP3006, on any thread: here one of
    /// 2 MiB, as tokio's are.
    #[test]
    fn deep_expressions_are_refused_not_a_stack_overflow() {
        let run = || {
            let engine = Engine::new();
            let budget = |src: &str| match engine.compile(src, &["xs"]) {
                Err(issues) => issues[0].code == crate::diagnostic::Code::CelBudget,
                Ok(_) => false,
            };
            assert!(budget(&format!(
                "{}true{}",
                "(".repeat(1_000),
                ")".repeat(1_000)
            )));
            assert!(budget(&format!(
                "{}1{} != []",
                "[".repeat(60),
                "]".repeat(60)
            )));
            assert!(budget(&format!(
                "{}'a'{} > 0",
                "size(".repeat(60),
                ")".repeat(60)
            )));
            assert!(budget(&format!("xs{} == 1", ".a".repeat(1_000))));
            assert!(budget(&format!("xs{} == 1", "[0]".repeat(300))));
            // Brackets inside strings do not count; legit nesting compiles.
            assert!(engine
                .compile(&format!("'{}' != ''", "(".repeat(100)), &[])
                .is_ok());
            let nested = format!(
                "{}1{} == 1",
                "(".repeat(MAX_NESTING),
                ")".repeat(MAX_NESTING)
            );
            assert!(engine.compile(&nested, &[]).is_ok());
        };
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    /// Found by the `cel` fuzz target: an unknown function after
    /// non-ASCII text, whose offset lay past the text, panicked.
    #[test]
    fn an_unknown_function_after_non_ascii_text_is_reported_not_a_panic() {
        let input =
            include_bytes!("../../../fuzz/regressions/cel-unknown-function-after-non-ascii");
        let text = String::from_utf8_lossy(input);
        let expr = text.split('\0').next().unwrap_or_default();
        let issues = Engine::new().compile(expr, &["intent"]).unwrap_err();
        assert!(
            issues.iter().all(|i| !i.message.contains("parser failed")),
            "{issues:?}"
        );
    }

    #[test]
    fn parser_states_are_not_shown_as_messages() {
        let engine = Engine::new();
        for src in ["a[", "a ? b"] {
            let issues = engine.compile(src, &["a", "b"]).unwrap_err();
            assert!(
                !issues[0].message.contains("Context"),
                "{}",
                issues[0].message
            );
        }
    }

    #[test]
    fn reports_unknown_names_at_their_position() {
        let engine = Engine::new();
        let issues = engine
            .compile("intent.a && intnet.b", &["intent"])
            .unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].at, crate::cel::At::Chars(12, 18));
        assert_eq!(issues[0].hint.as_deref(), Some("did you mean `intent`?"));
        let issues = engine.compile("lowerAsci('A') == 'a'", &[]).unwrap_err();
        assert_eq!(issues[0].at, crate::cel::At::Chars(0, 9));
    }

    #[test]
    fn comprehension_variables_are_in_scope_only_inside() {
        let engine = Engine::new();
        assert!(engine.compile("xs.all(x, x > 0)", &["xs"]).is_ok());
        assert!(engine
            .compile("xs.all(x, x > 0) && x > 0", &["xs"])
            .is_err());
        assert!(engine.compile("math.greatest([1, 2]) == 2", &[]).is_ok());
    }
}
