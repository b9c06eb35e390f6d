//! The runtime budget of one evaluation: what stops an expression that the
//! static bound ([`super::cost`]) let through but that runs longer than it
//! should.
//!
//! The `cel` interpreter has no hook to stop it midway, but every loop it
//! runs is a comprehension, and every comprehension is a macro expansion.
//! The engine expands the macros itself ([`macros`]), as the standard ones
//! do, with two internal functions added (no expression can name them: `@`
//! is not a character of CEL names):
//!
//! - [`RANGE`] wraps the list a comprehension walks: it charges its length
//!   to the budget before the loop starts, and fails once the budget is
//!   spent;
//! - [`GO`] wraps what the loop evaluates on every item (the condition of
//!   `all`, `exists` and `exists_one`, the predicate of `filter` and of a
//!   three-argument `map`, else the item `map` builds): it fails once the
//!   budget is spent, and looks at the clock every [`CLOCK_EVERY`] items.
//!   A failure there ends the loop at once, where an error in an `all`
//!   step would only be deferred to the next item.
//!
//! Their places keep the shapes the interpreter optimises (a `map` appends
//! to its result in place) and the fast path ([`super::fast`]) recognises;
//! the fast path charges the same budget.
//!
//! # Guarantees
//!
//! - One evaluation walks at most [`MAX_ITERATIONS`] items in all its
//!   comprehensions, nested ones included (a loop is charged in full before
//!   it starts, so a loop that would pass the budget does not start).
//! - No comprehension starts after [`MAX_TIME`] has passed since the
//!   evaluation started.
//! - Once spent, a budget stays spent for the rest of the evaluation: the
//!   interpreter, run after the fast path gave up, cannot start over.
//! - Outside an evaluation ([`Budget::run`]) nothing is charged.

use std::cell::Cell;
use std::time::{Duration, Instant};

use cel::common::ast::{
    operators, CallExpr, ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue,
};
use cel::common::value::CowVal;
use cel::parser::{Macro, MacroExprHelper};
use cel::{ExecutionError, ParseError};

/// Most items one evaluation's comprehensions walk, all together.
pub const MAX_ITERATIONS: u64 = 5_000_000;

/// Longest an evaluation runs before its next comprehension is refused.
pub const MAX_TIME: Duration = Duration::from_secs(2);

/// The internal function every comprehension's range passes through.
pub const RANGE: &str = "@mp_range";

/// The internal function a comprehension passes through on every item.
pub const GO: &str = "@mp_go";

/// How many [`GO`] calls pass between two looks at the clock.
const CLOCK_EVERY: u32 = 1024;

/// The accumulator of the macros' comprehensions, as the `cel` parser
/// names it (the fast path recognises the expansions by it).
const ACCU: &str = "@result";

#[derive(Clone, Copy)]
struct State {
    left: u64,
    until: Instant,
    /// [`GO`] calls until the next look at the clock.
    tick: u32,
    stopped: Option<Stopped>,
}

thread_local! {
    static CURRENT: Cell<Option<State>> = const { Cell::new(None) };
}

/// Why an evaluation was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Its comprehensions would walk more than [`MAX_ITERATIONS`] items.
    Iterations,
    /// It ran longer than [`MAX_TIME`].
    Time,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Iterations => write!(
                f,
                "stopped: its comprehensions would walk more than {MAX_ITERATIONS} items"
            ),
            Stopped::Time => write!(
                f,
                "stopped: still running after {} s",
                MAX_TIME.as_secs_f64()
            ),
        }
    }
}

/// The budget of one evaluation, on this thread.
#[derive(Debug)]
pub struct Budget;

impl Budget {
    /// Runs `f` within a fresh budget, and says whether it was stopped.
    /// Budgets nest: the outer one is restored afterwards.
    pub fn run<T>(f: impl FnOnce() -> T) -> (T, Option<Stopped>) {
        Self::run_within(MAX_ITERATIONS, MAX_TIME, f)
    }

    /// [`Budget::run`] with other limits.
    pub fn run_within<T>(
        iterations: u64,
        time: Duration,
        f: impl FnOnce() -> T,
    ) -> (T, Option<Stopped>) {
        let fresh = State {
            left: iterations,
            until: Instant::now() + time,
            tick: CLOCK_EVERY,
            stopped: None,
        };
        let outer = CURRENT.with(|c| c.replace(Some(fresh)));
        // Restores the outer budget even if `f` unwinds.
        struct Restore(Option<State>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let restore = Restore(outer);
        let out = f();
        let state = CURRENT.with(Cell::get);
        drop(restore);
        (out, state.and_then(|s| s.stopped))
    }
}

/// Charges a loop over `items` items; `false` once the budget is spent.
pub fn charge(items: u64) -> bool {
    CURRENT.with(|c| {
        let Some(mut s) = c.get() else {
            return true;
        };
        if s.stopped.is_some() {
            return false;
        }
        if items > s.left {
            s.stopped = Some(Stopped::Iterations);
        } else if Instant::now() >= s.until {
            s.stopped = Some(Stopped::Time);
        } else {
            s.left -= items;
        }
        c.set(Some(s));
        s.stopped.is_none()
    })
}

/// Whether the budget still holds, looking at the clock now and then.
pub fn going() -> bool {
    CURRENT.with(|c| {
        let Some(mut s) = c.get() else {
            return true;
        };
        if s.stopped.is_none() {
            s.tick -= 1;
            if s.tick == 0 {
                s.tick = CLOCK_EVERY;
                if Instant::now() >= s.until {
                    s.stopped = Some(Stopped::Time);
                }
            }
            c.set(Some(s));
        }
        s.stopped.is_none()
    })
}

/// [`GO`]: its argument unchanged, while the budget holds.
pub fn go<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    match args.pop() {
        Some(v) if going() => Ok(v),
        Some(_) => Err(ExecutionError::function_error(
            GO,
            "evaluation budget spent",
        )),
        None => Err(ExecutionError::function_error(GO, "no value")),
    }
}

/// `e` without the budget's wrappers ([`RANGE`], [`GO`]).
pub fn bare(e: &IdedExpr) -> &IdedExpr {
    match &e.expr {
        Expr::Call(call)
            if call.target.is_none()
                && call.args.len() == 1
                && (call.func_name == RANGE || call.func_name == GO) =>
        {
            &call.args[0]
        }
        _ => e,
    }
}

/// [`RANGE`]: its argument unchanged, once its length is charged.
pub fn range<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let Some(range) = args.pop() else {
        return Err(ExecutionError::function_error(RANGE, "no range"));
    };
    let items = range
        .as_sizer()
        .map_or(0, |s| u64::try_from(*s.size().inner()).unwrap_or(0));
    if charge(items) {
        Ok(range)
    } else {
        Err(ExecutionError::function_error(
            RANGE,
            "evaluation budget spent",
        ))
    }
}

/// The standard macros (`has`, `all`, `exists`, `exists_one`/`existsOne`,
/// `map` with two or three arguments, `filter`), expanded as the CEL
/// specification and the `cel` parser do, each comprehension's range
/// passed through [`RANGE`].
pub fn macros() -> Vec<Macro> {
    vec![
        Macro::global("has", 1, |h, _, args| has(h, args).map(Some)),
        Macro::receiver("all", 2, |h, t, a| Ok(Some(fold(h, t, a, Fold::All)?))),
        Macro::receiver("exists", 2, |h, t, a| {
            Ok(Some(fold(h, t, a, Fold::Exists)?))
        }),
        Macro::receiver("exists_one", 2, |h, t, a| {
            Ok(Some(fold(h, t, a, Fold::ExistsOne)?))
        }),
        Macro::receiver("existsOne", 2, |h, t, a| {
            Ok(Some(fold(h, t, a, Fold::ExistsOne)?))
        }),
        Macro::receiver("map", 2, |h, t, a| Ok(Some(fold(h, t, a, Fold::Map)?))),
        Macro::receiver("map", 3, |h, t, a| Ok(Some(fold(h, t, a, Fold::Map)?))),
        Macro::receiver("filter", 2, |h, t, a| {
            Ok(Some(fold(h, t, a, Fold::Filter)?))
        }),
    ]
}

fn has(h: &mut MacroExprHelper<'_>, args: &mut Vec<IdedExpr>) -> Result<IdedExpr, ParseError> {
    let arg = args.remove(0);
    match arg.expr {
        Expr::Select(mut select) => {
            select.test = true;
            Ok(h.next_expr(Expr::Select(select)))
        }
        _ => Err(h.new_error(arg.id, "invalid argument to has() macro")),
    }
}

#[derive(Clone, Copy)]
enum Fold {
    All,
    Exists,
    ExistsOne,
    Map,
    Filter,
}

fn call(h: &mut MacroExprHelper<'_>, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
    h.next_expr(Expr::Call(CallExpr {
        func_name: name.to_owned(),
        target: None,
        args,
    }))
}

fn accu(h: &mut MacroExprHelper<'_>) -> IdedExpr {
    h.next_expr(Expr::Ident(ACCU.to_owned()))
}

fn lit(h: &mut MacroExprHelper<'_>, v: LiteralValue) -> IdedExpr {
    h.next_expr(Expr::Literal(v))
}

/// `target.macro(v, …)` as a comprehension: the loop's initial value,
/// condition, step and result per macro, as in the CEL specification.
fn fold(
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
    kind: Fold,
) -> Result<IdedExpr, ParseError> {
    let var = args.remove(0);
    let iter_var = match &var.expr {
        Expr::Ident(name) => name.clone(),
        _ => return Err(h.new_error(var.id, "argument must be a simple name")),
    };
    let Some(target) = target.take() else {
        return Err(h.new_error(var.id, "a macro needs a target"));
    };
    let body = args.pop().unwrap_or_default();
    let (accu_init, loop_cond, loop_step, result) = match kind {
        Fold::All | Fold::Exists => {
            let all = matches!(kind, Fold::All);
            let init = lit(h, LiteralValue::Boolean(all.into()));
            let a = accu(h);
            let a = if all {
                a
            } else {
                call(h, operators::LOGICAL_NOT, vec![a])
            };
            let cond = call(h, operators::NOT_STRICTLY_FALSE, vec![a]);
            let cond = call(h, GO, vec![cond]);
            let a = accu(h);
            let op = if all {
                operators::LOGICAL_AND
            } else {
                operators::LOGICAL_OR
            };
            let step = call(h, op, vec![a, body]);
            (init, cond, step, accu(h))
        }
        Fold::ExistsOne => {
            let init = lit(h, LiteralValue::Int(0.into()));
            let cond = lit(h, LiteralValue::Boolean(true.into()));
            let cond = call(h, GO, vec![cond]);
            let (a, one) = (accu(h), lit(h, LiteralValue::Int(1.into())));
            let plus = call(h, operators::ADD, vec![a, one]);
            let a = accu(h);
            let step = call(h, operators::CONDITIONAL, vec![body, plus, a]);
            let (a, one) = (accu(h), lit(h, LiteralValue::Int(1.into())));
            (init, cond, step, call(h, operators::EQUALS, vec![a, one]))
        }
        Fold::Map | Fold::Filter => {
            let init = h.next_expr(Expr::List(ListExpr::new(Vec::new())));
            let cond = lit(h, LiteralValue::Boolean(true.into()));
            // map(v, p, f) and filter(v, p) append conditionally.
            let (element, filter) = match kind {
                Fold::Filter => (var, Some(body)),
                _ => (body, args.pop()),
            };
            // What the loop evaluates on every item passes through GO.
            let (element, filter) = match filter {
                Some(p) => (element, Some(call(h, GO, vec![p]))),
                None => (call(h, GO, vec![element]), None),
            };
            let a = accu(h);
            let item = h.next_expr(Expr::List(ListExpr::new(vec![element])));
            let step = call(h, operators::ADD, vec![a, item]);
            let step = match filter {
                Some(p) => {
                    let a = accu(h);
                    call(h, operators::CONDITIONAL, vec![p, step, a])
                }
                None => step,
            };
            (init, cond, step, accu(h))
        }
    };
    let iter_range = call(h, RANGE, vec![target]);
    Ok(h.next_expr(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range,
        iter_var,
        iter_var2: None,
        accu_var: ACCU.to_owned(),
        accu_init,
        loop_cond,
        loop_step,
        result,
    }))))
}

#[cfg(test)]
mod tests;
