//! The cost bound: before an expression runs, an upper bound of the work it
//! will do and of the size of every value it will build, from the sizes of
//! the values bound to it.
//!
//! Why before, and not while it runs: the `cel` interpreter has no hook to
//! stop an evaluation midway, so a rule that would build a 16 GB string or
//! loop 10¹² times must be refused before it starts. The bound counts one
//! step per item or byte read or built, so one budget
//! ([`super::eval::COST_BUDGET`]) bounds both time and memory.
//!
//! Each expression gets an [`Est`]: the steps to evaluate it, and how large
//! its value can be (see the fields). Bound values were measured when they
//! were converted ([`Measure`]), and a field selected from one is measured
//! exactly (`intent.spec.routes` is that list, not the longest list of the
//! intent). Comprehensions are the macros' (`all`, `exists`, `exists_one`,
//! `map`, `filter`, `sortBy`): their accumulator grows by at most a
//! fixed-size step per iteration, which the bound follows (one that grows
//! faster is bounded by "unlimited", so refused).

use super::budget;
use cel::common::ast::{operators, CallExpr, ComprehensionExpr, EntryExpr, Expr, LiteralValue};
use cel::common::types::{CelInt, CelString};
use cel::common::value::Val;
use cel::IdedExpr;

use super::eval::Bindings;
use super::view::{measure, Measure, SharedList, SharedMap};

/// Longest list `lists.range` builds (the interpreter's own limit).
pub const MAX_RANGE: u64 = 1_000_000;

/// An upper bound of the steps `expr` takes with `bindings`, each field
/// an expression selects measured exactly.
pub fn estimate(expr: &IdedExpr, bindings: &Bindings<'_>) -> u64 {
    Estimator {
        bindings,
        coarse: false,
        scope: Vec::new(),
    }
    .est(expr)
    .steps
}

/// A coarser upper bound (never below [`estimate`]'s): each bound value
/// is taken as its measure rounded up to powers of two, and what is
/// selected from it as large as its largest part. It depends on those
/// rounded measures alone, so an expression keeps it for values of the
/// same size ([`super::compile::Compiled::cost`]): only an expression
/// this bound refuses is estimated field by field.
pub fn estimate_coarse(expr: &IdedExpr, bindings: &Bindings<'_>) -> u64 {
    Estimator {
        bindings,
        coarse: true,
        scope: Vec::new(),
    }
    .est(expr)
    .steps
}

/// `m` with each part rounded up to a power of two.
pub fn rounded(m: Measure) -> Measure {
    let up = |x: u64| x.checked_next_power_of_two().unwrap_or(u64::MAX);
    Measure {
        list: up(m.list),
        string: up(m.string),
        total: up(m.total),
        item: up(m.item),
    }
}

/// What a value is known to be; `Any` for what the input holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    List,
    Scalar,
    Any,
}

/// The bound of one expression.
#[derive(Clone, Copy, Debug)]
struct Est<'v> {
    /// Steps to evaluate it.
    steps: u64,
    kind: Kind,
    /// Longest list or map the value is or holds.
    items: u64,
    /// Longest string the value is or holds.
    bytes: u64,
    /// Items and bytes in all: the steps to read or copy the value.
    total: u64,
    /// The largest `total` of one of its items.
    item: u64,
    /// Largest magnitude of an integer the value is or holds.
    num: u64,
    /// The bound value itself, when the expression selects one.
    val: Option<&'v dyn Val>,
}

impl<'v> Est<'v> {
    fn scalar(steps: u64) -> Self {
        Self {
            steps,
            kind: Kind::Scalar,
            items: 0,
            bytes: 0,
            total: 1,
            item: 0,
            num: u64::MAX,
            val: None,
        }
    }

    /// A string of `bytes`, built in as many steps.
    fn string(bytes: u64) -> Self {
        Self {
            kind: Kind::Str,
            bytes,
            total: bytes.max(1),
            num: 0,
            ..Self::scalar(bytes)
        }
    }

    /// A list of `items` items of `item` each (and `bytes`), built in `steps`.
    fn list(steps: u64, items: u64, item: u64, bytes: u64) -> Self {
        Self {
            steps,
            kind: Kind::List,
            items,
            bytes,
            total: items.saturating_mul(item.saturating_add(1)).max(1),
            item,
            num: u64::MAX,
            val: None,
        }
    }

    /// A bound value, as measured.
    fn of(v: &'v dyn Val) -> Self {
        // Ours are asked first (see `view::measure`).
        let ours =
            v.downcast_ref::<SharedMap>().is_some() || v.downcast_ref::<SharedList>().is_some();
        if let Some(s) = (!ours).then(|| v.downcast_ref::<CelString>()).flatten() {
            return Self {
                steps: 1,
                ..Self::string(s.inner().len() as u64)
            };
        }
        if let Some(i) = v.downcast_ref::<CelInt>() {
            return Self {
                num: i.inner().unsigned_abs(),
                ..Self::scalar(1)
            };
        }
        let m: Measure = measure(v);
        let kind = if v.downcast_ref::<SharedList>().is_some() {
            Kind::List
        } else if m.total > 1 {
            Kind::Any
        } else {
            Kind::Scalar
        };
        Self {
            steps: 1,
            kind,
            items: m.list,
            bytes: m.string,
            total: m.total,
            item: m.item,
            num: u64::MAX,
            val: Some(v),
        }
    }

    /// Any value of measure `m` (its parts unknown).
    fn measured(m: Measure) -> Self {
        Self {
            steps: 1,
            kind: Kind::Any,
            items: m.list,
            bytes: m.string,
            total: m.total,
            item: m.item,
            num: u64::MAX,
            val: None,
        }
    }

    /// A value that may be either `self` or `other`.
    fn join(self, other: Self) -> Self {
        Self {
            steps: self.steps.saturating_add(other.steps),
            kind: if self.kind == other.kind {
                self.kind
            } else {
                Kind::Any
            },
            items: self.items.max(other.items),
            bytes: self.bytes.max(other.bytes),
            total: self.total.max(other.total),
            item: self.item.max(other.item),
            num: self.num.max(other.num),
            val: None,
        }
    }

    fn plus(self, steps: u64) -> Self {
        Self {
            steps: self.steps.saturating_add(steps),
            ..self
        }
    }

    fn with_steps(self, steps: u64) -> Self {
        Self { steps, ..self }
    }

    /// One item of this list or map.
    fn element(self) -> Self {
        Self {
            steps: 1,
            kind: Kind::Any,
            total: self.item.max(1),
            val: None,
            ..self
        }
    }

    /// How many items a comprehension over this value visits.
    fn len(self) -> u64 {
        if let Some(l) = self.val.and_then(|v| v.downcast_ref::<SharedList>()) {
            return l.items().len() as u64;
        }
        if let Some(m) = self.val.and_then(|v| v.downcast_ref::<SharedMap>()) {
            return m.len() as u64;
        }
        self.items
    }
}

struct Estimator<'b, 'v> {
    bindings: &'b Bindings<'v>,
    /// Bound values taken by their rounded measure (see [`estimate_coarse`]).
    coarse: bool,
    /// Comprehension variables, innermost last.
    scope: Vec<(&'b str, Est<'b>)>,
}

impl<'b> Estimator<'b, '_> {
    fn est(&mut self, e: &'b IdedExpr) -> Est<'b> {
        // The runtime budget's wrappers pass their argument through.
        let inner = budget::bare(e);
        if !std::ptr::eq(inner, e) {
            return self.est(inner).plus(1);
        }
        match &e.expr {
            Expr::Literal(l) => literal(l),
            Expr::Ident(name) => match self.scope.iter().rev().find(|(n, _)| n == name) {
                Some((_, est)) => est.with_steps(1),
                None => match self.bindings.get(name) {
                    Some(v) if self.coarse => Est::measured(rounded(measure(v))),
                    Some(v) => Est::of(v),
                    // Unbound: the interpreter fails at once.
                    None => Est::scalar(1),
                },
            },
            Expr::Select(s) => {
                let operand = self.est(&s.operand);
                if s.test {
                    return Est::scalar(operand.steps.saturating_add(1));
                }
                let field = operand
                    .val
                    .and_then(|v| v.downcast_ref::<SharedMap>())
                    .and_then(|m| m.field(&s.field));
                match field {
                    Some(v) => Est::of(v),
                    None => operand.element(),
                }
                .plus(operand.steps)
            }
            Expr::List(l) => self.collection(l.elements.iter()),
            Expr::Map(m) => self.collection(m.entries.iter().flat_map(entry)),
            Expr::Struct(s) => self.collection(s.entries.iter().flat_map(entry)),
            Expr::Call(call) => self.call(call),
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::Unspecified => Est::scalar(1),
        }
    }

    fn collection(&mut self, items: impl Iterator<Item = &'b IdedExpr>) -> Est<'b> {
        let (mut steps, mut count, mut total) = (1u64, 0u64, 1u64);
        let mut out = Est::list(0, 0, 0, 0);
        for item in items {
            let e = self.est(item);
            steps = steps.saturating_add(e.steps);
            count += 1;
            total = total.saturating_add(e.total);
            out = out.join(e);
        }
        Est {
            steps: steps.saturating_add(count),
            kind: Kind::List,
            items: out.items.max(count),
            total,
            item: out.total,
            ..out
        }
    }

    fn comprehension(&mut self, c: &'b ComprehensionExpr) -> Est<'b> {
        let range = self.est(&c.iter_range);
        let iterations = range.len();
        let init = self.est(&c.accu_init);
        let depth = self.scope.len();
        let var = range.element();
        self.scope.push((&c.iter_var, var));
        if let Some(v) = &c.iter_var2 {
            self.scope.push((v, var));
        }
        // The accumulator after one and two steps tells how it grows.
        let run = |this: &mut Self, accu: Est<'b>| {
            this.scope.push((&c.accu_var, accu.with_steps(0)));
            let cond = this.est(&c.loop_cond);
            let step = this.est(&c.loop_step);
            this.scope.pop();
            (cond, step)
        };
        let (_, once) = run(self, init);
        let (_, twice) = run(self, init.join(once));
        let grow = |a: u64, b: u64, c: u64| {
            let by = b.saturating_sub(a);
            if c.saturating_sub(b) > by {
                u64::MAX
            } else if c <= b {
                b.max(a)
            } else {
                a.saturating_add(iterations.saturating_mul(by))
            }
        };
        let accu = Est {
            steps: 0,
            kind: if init.kind == once.kind {
                init.kind
            } else {
                Kind::Any
            },
            items: grow(init.items, once.items, twice.items),
            bytes: grow(init.bytes, once.bytes, twice.bytes),
            total: grow(init.total, once.total, twice.total),
            item: grow(init.item, once.item, twice.item),
            num: grow(init.num.min(MAX_RANGE), once.num, twice.num),
            val: None,
        };
        let (cond, body) = run(self, accu);
        self.scope.push((&c.accu_var, accu));
        let result = self.est(&c.result);
        self.scope.truncate(depth);
        let per_iteration = cond.steps.saturating_add(body.steps).saturating_add(1);
        Est {
            steps: range
                .steps
                .saturating_add(init.steps)
                .saturating_add(iterations.saturating_mul(per_iteration))
                .saturating_add(result.steps),
            ..result
        }
    }

    fn call(&mut self, call: &'b CallExpr) -> Est<'b> {
        // `lists.range(n)`, `math.greatest(…)`, `strings.quote(s)`: the
        // target names a namespace, not a value.
        let namespace = match call.target.as_deref() {
            Some(IdedExpr {
                expr: Expr::Ident(ns),
                ..
            }) if matches!(ns.as_str(), "lists" | "math" | "strings")
                && !self.scope.iter().any(|(n, _)| n == ns)
                && self.bindings.get(ns).is_none() =>
            {
                Some(ns.as_str())
            }
            _ => None,
        };
        let target = match namespace {
            Some(_) => None,
            None => call.target.as_deref().map(|t| self.est(t)),
        };
        let args: Vec<Est<'b>> = call.args.iter().map(|a| self.est(a)).collect();
        let steps = args
            .iter()
            .chain(&target)
            .fold(0u64, |s, a| s.saturating_add(a.steps));
        let out = match (namespace, target) {
            (Some(ns), _) => namespaced(ns, &call.func_name, &args),
            (None, Some(t)) => member(&call.func_name, t, &args, call.args.first()),
            (None, None) => global(&call.func_name, &args, call),
        };
        out.plus(steps)
    }
}

fn entry(e: &cel::common::ast::IdedEntryExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
        EntryExpr::StructField(f) => vec![&f.value],
    }
}

fn literal<'v>(l: &LiteralValue) -> Est<'v> {
    match l {
        LiteralValue::String(s) => Est::string(s.inner().len() as u64).with_steps(1),
        LiteralValue::Bytes(b) => Est::string(b.inner().len() as u64).with_steps(1),
        LiteralValue::Int(i) => Est {
            num: i.inner().unsigned_abs(),
            ..Est::scalar(1)
        },
        LiteralValue::UInt(u) => Est {
            num: *u.inner(),
            ..Est::scalar(1)
        },
        _ => Est {
            num: 1,
            ..Est::scalar(1)
        },
    }
}

/// `target.name(args…)`.
fn member<'v>(name: &str, t: Est<'v>, args: &[Est<'v>], first: Option<&IdedExpr>) -> Est<'v> {
    let arg = |i: usize| args.get(i).copied().unwrap_or(Est::scalar(0));
    let read = args.iter().fold(t.total, |s, a| s.saturating_add(a.total));
    let sorted = |steps: u64| Est::list(steps, t.items, t.item, t.bytes);
    match name {
        // A new string no longer than the target.
        "lowerAscii" | "upperAscii" | "trim" | "substring" | "charAt" => Est::string(t.bytes),
        "reverse" if t.kind == Kind::Str => Est::string(t.bytes),
        // Every occurrence of the pattern replaced: at worst (an empty
        // pattern) the replacement goes between every two characters.
        "replace" => {
            let new = arg(1).bytes;
            let old = match first.map(|e| &e.expr) {
                Some(Expr::Literal(LiteralValue::String(s))) => s.inner().len() as u64,
                _ => 0,
            };
            let bytes = if old > 0 {
                t.bytes.saturating_mul(new.div_ceil(old).max(1))
            } else {
                t.bytes
                    .saturating_add(1)
                    .saturating_mul(new.saturating_add(1))
            };
            Est::string(bytes).plus(t.bytes)
        }
        "split" => {
            let n = t.bytes.saturating_add(1);
            Est {
                bytes: t.bytes,
                ..Est::list(n.saturating_mul(2), n, t.bytes, t.bytes)
            }
        }
        "join" => Est::string(t.total.saturating_add(t.items.saturating_mul(arg(0).bytes))),
        "indexOf" | "lastIndexOf" => Est {
            num: t.bytes,
            ..Est::scalar(read)
        },
        "size" => Est {
            num: t.items.max(t.bytes),
            ..Est::scalar(1)
        },
        "reverse" | "slice" => sorted(t.total),
        "sort" | "@sortByAssociatedKeys" => {
            let log = u64::from(64 - t.len().leading_zeros());
            sorted(read.saturating_mul(log.max(1)))
        }
        "distinct" => sorted(t.len().saturating_mul(t.total)),
        // The items of the items: no more than the whole list holds.
        "flatten" => Est {
            items: t.total,
            bytes: t.bytes,
            total: t.total,
            ..Est::list(t.total, t.total, t.item, t.bytes)
        },
        // Tests and conversions read their operands once.
        _ => Est {
            num: t.num,
            ..Est::scalar(read.saturating_add(1))
        },
    }
}

/// `lists.range(n)`, `math.greatest(…)`, `strings.quote(s)`.
fn namespaced<'v>(ns: &str, name: &str, args: &[Est<'v>]) -> Est<'v> {
    match (ns, name) {
        ("lists", "range") => {
            let n = args.first().map_or(0, |a| a.num).min(MAX_RANGE);
            Est {
                num: n,
                ..Est::list(n, n, 1, 0)
            }
        }
        // `\u0000` escapes: at most six characters for one.
        ("strings", "quote") => Est::string(
            args.first()
                .map_or(0, |a| a.bytes)
                .saturating_mul(6)
                .saturating_add(2),
        ),
        _ => {
            let read = args.iter().fold(0u64, |s, a| s.saturating_add(a.total));
            let num = args.iter().map(|a| a.num).max().unwrap_or(0);
            Est {
                num,
                ..Est::scalar(read.saturating_add(1))
            }
        }
    }
}

/// Operators and global functions.
fn global<'v>(name: &str, args: &[Est<'v>], call: &CallExpr) -> Est<'v> {
    let arg = |i: usize| args.get(i).copied().unwrap_or(Est::scalar(0));
    let (a, b) = (arg(0), arg(1));
    match name {
        operators::ADD => add(a, b, call),
        operators::MULTIPLY => Est {
            num: a.num.saturating_mul(b.num),
            ..Est::scalar(1)
        },
        operators::SUBSTRACT | operators::DIVIDE | operators::MODULO | operators::NEGATE => Est {
            num: a.num.saturating_add(b.num),
            ..Est::scalar(1)
        },
        operators::CONDITIONAL => arg(1).join(arg(2)).with_steps(1),
        operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT => {
            a.element().with_steps(b.total.saturating_add(1))
        }
        // Comparing two values stops at the end of the smaller one.
        operators::EQUALS
        | operators::NOT_EQUALS
        | operators::LESS
        | operators::LESS_EQUALS
        | operators::GREATER
        | operators::GREATER_EQUALS => Est::scalar(a.total.min(b.total).saturating_add(1)),
        // Membership compares the value with every item, each comparison
        // no longer than the item.
        operators::IN => Est::scalar(b.total.saturating_add(1)),
        "size" => Est {
            num: a.items.max(a.bytes),
            ..Est::scalar(1)
        },
        // A number or a time prints in at most 40 characters.
        "string" | "bytes" => Est::string(a.bytes.max(40)).plus(a.total),
        "dyn" => a.with_steps(1),
        _ => {
            let read = args.iter().fold(0u64, |s, a| s.saturating_add(a.total));
            Est::scalar(read.saturating_add(1))
        }
    }
}

/// `a + b`: numbers, strings or lists (what the input holds is taken as
/// either).
fn add<'v>(a: Est<'v>, b: Est<'v>, call: &CallExpr) -> Est<'v> {
    // A macro's `@result + [x]` appends in place (the interpreter's
    // `AppendStep`): only the new items are built.
    let appends = matches!(
        call.args.first().map(|e| &e.expr),
        Some(Expr::Ident(name)) if name.starts_with('@')
    );
    let list = a.kind == Kind::List || b.kind == Kind::List;
    let text = a.kind == Kind::Str || b.kind == Kind::Str;
    let out = Est {
        steps: 0,
        kind: if a.kind == b.kind { a.kind } else { Kind::Any },
        items: if text && !list {
            0
        } else {
            a.items.saturating_add(b.items)
        },
        bytes: if list && !text {
            a.bytes.max(b.bytes)
        } else {
            a.bytes.saturating_add(b.bytes)
        },
        total: a.total.saturating_add(b.total),
        item: a.item.max(b.item),
        num: a.num.saturating_add(b.num),
        val: None,
    };
    let built = if appends { b.total } else { out.total };
    out.plus(built.saturating_add(1))
}

#[cfg(test)]
mod tests;
