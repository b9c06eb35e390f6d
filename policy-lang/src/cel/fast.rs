//! A fast path for the expressions rules are made of.
//!
//! The `cel` interpreter is general, and on our rules most of its time goes
//! to what the rules do not need: a qualified name joined into a string and
//! looked up scope by scope on every evaluation, error values built before
//! anything failed, a boxed value for every intermediate result. An
//! expression made only of the common nodes — field selection, `has`,
//! indexes, comparisons, `&&` `||` `!` `?:`, int and double arithmetic,
//! `in`, `size`, `lists.range`, `math.isFinite`, `getMilliseconds` on a duration,
//! `duration('…')` of a literal (folded at compile time), list literals
//! and the `all` `exists` `exists_one` `map` `filter` macros — is lowered
//! once more, at compile time, into a [`Plan`] that walks the bound
//! values by reference.
//!
//! A plan answers only when it is sure. On anything out of the ordinary (an
//! error of any kind, a missing field, operands of different types, an
//! overflow, a NaN, a result that is not a scalar) it gives up, and the
//! interpreter evaluates the whole expression from the start: results,
//! errors and their messages stay the interpreter's own. A property test
//! (`fast/tests.rs`) checks that the two agree on random expressions.

use std::cmp::Ordering;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use cel::common::ast::{operators, CallExpr, ComprehensionExpr, Expr, LiteralValue};
use cel::common::types::{CelBool, CelDouble, CelDuration, CelInt, CelString};
use cel::common::value::Val;
use cel::{IdedExpr, Value};

use super::budget::bare;
use super::eval::Bindings;
use super::view::{SharedList, SharedMap};

/// Longest list `lists.range` builds (the interpreter's own limit).
const MAX_RANGE: i64 = 1_000_000;

/// The accumulator the parser's macro expansions name.
const ACCU: &str = "@result";

/// An expression lowered for the fast path.
#[derive(Debug)]
pub struct Plan(Node);

#[derive(Debug)]
enum Node {
    Lit(Lit),
    /// A variable of the bindings.
    Root(Box<str>),
    /// A comprehension variable, counted from the innermost (0).
    Local(usize),
    Select(Box<Node>, Field),
    Has(Box<Node>, Field),
    Not(Box<Node>),
    Neg(Box<Node>),
    Size(Box<Node>),
    Range(Box<Node>),
    Millis(Box<Node>),
    /// `math.isFinite(x)`.
    Finite(Box<Node>),
    Cond(Box<[Node; 3]>),
    Binary(Op, Box<[Node; 2]>),
    List(Vec<Node>),
    Loop(Box<Loop>),
}

/// A field name, and where it was found last time. Rules select the same
/// fields of maps of the same shape (serialized intents) again and again:
/// the entry at the hint is tried before the map is scanned.
#[derive(Debug)]
struct Field {
    name: Box<str>,
    hint: AtomicUsize,
}

impl Field {
    fn of<'m>(&self, m: &'m SharedMap) -> Option<&'m (dyn Val + 'static)> {
        m.field_at(&self.name, &self.hint)
    }
}

#[derive(Debug)]
enum Lit {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Box<str>),
    Duration(chrono::Duration),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    In,
    Index,
}

#[derive(Debug)]
struct Loop {
    range: Node,
    kind: Kind,
}

/// The macros, recognised by the exact shape the parser expands them to.
#[derive(Debug)]
enum Kind {
    All(Node),
    Exists(Node),
    ExistsOne(Node),
    /// `map(x, f)` (no predicate) and `map(x, p, f)`; `filter(x, p)` is
    /// `map(x, p, x)`.
    Map(Option<Node>, Node),
}

/// A value while a plan runs: scalars by value, the bound maps and lists
/// by reference, lists the expression builds shared.
#[derive(Clone, Debug)]
enum V<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
    Duration(chrono::Duration),
    Map(&'a SharedMap),
    List(&'a [Box<dyn Val>]),
    Built(Rc<[V<'a>]>),
}

impl Plan {
    /// Lowers `expr`; `None` when a node is outside the fast path's subset.
    /// `variables` are the names the bindings will hold.
    pub fn new(expr: &IdedExpr, variables: &[&str]) -> Option<Self> {
        Lower {
            variables,
            locals: Vec::new(),
        }
        .node(expr)
        .map(Self)
    }

    /// The value of the expression, or `None` to let the interpreter
    /// decide.
    pub fn eval(&self, bindings: &Bindings<'_>) -> Option<Value> {
        let run = Run { bindings };
        match run.node(&self.0, None)? {
            V::Bool(b) => Some(Value::Bool(b)),
            V::Int(i) => Some(Value::Int(i)),
            V::Double(d) => Some(Value::Float(d)),
            V::Str(s) => Some(Value::String(Arc::new(s.to_owned()))),
            V::Duration(d) => Some(Value::Duration(d)),
            // Maps and lists are left to the interpreter's conversion.
            V::Map(_) | V::List(_) | V::Built(_) => None,
        }
    }
}

struct Lower<'e> {
    variables: &'e [&'e str],
    locals: Vec<&'e str>,
}

impl<'e> Lower<'e> {
    fn node(&mut self, e: &'e IdedExpr) -> Option<Node> {
        Some(match &e.expr {
            Expr::Literal(l) => Node::Lit(match l {
                LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
                LiteralValue::Int(i) => Lit::Int(*i.inner()),
                LiteralValue::Double(d) => Lit::Double(*d.inner()),
                LiteralValue::String(s) => Lit::Str(s.inner().into()),
                _ => return None,
            }),
            Expr::Ident(name) => self.ident(name)?,
            Expr::Select(s) => {
                let operand = Box::new(self.node(&s.operand)?);
                let field = Field {
                    name: s.field.as_str().into(),
                    hint: AtomicUsize::new(0),
                };
                if s.test {
                    Node::Has(operand, field)
                } else {
                    Node::Select(operand, field)
                }
            }
            Expr::List(l) if l.optional_indices.is_empty() => Node::List(
                l.elements
                    .iter()
                    .map(|x| self.node(x))
                    .collect::<Option<_>>()?,
            ),
            Expr::Call(c) => self.call(c)?,
            Expr::Comprehension(c) => self.comprehension(c)?,
            _ => return None,
        })
    }

    fn ident(&self, name: &str) -> Option<Node> {
        if let Some(at) = self.locals.iter().rposition(|l| *l == name) {
            return Some(Node::Local(self.locals.len() - 1 - at));
        }
        self.variables
            .contains(&name)
            .then(|| Node::Root(name.into()))
    }

    fn call(&mut self, c: &'e CallExpr) -> Option<Node> {
        let name = c.func_name.as_str();
        let args = &c.args;
        let one = |me: &mut Self, e: &'e IdedExpr| me.node(e).map(Box::new);
        match (c.target.as_deref(), args.len()) {
            (None, 1) if name == "duration" => duration_literal(&args[0]).map(Node::Lit),
            (None, 1) => {
                let wrap = match name {
                    operators::LOGICAL_NOT => Node::Not,
                    operators::NEGATE => Node::Neg,
                    "size" => Node::Size,
                    _ => return None,
                };
                Some(wrap(one(self, &args[0])?))
            }
            (None, 2) => {
                let op = match name {
                    operators::LOGICAL_AND => Op::And,
                    operators::LOGICAL_OR => Op::Or,
                    operators::EQUALS => Op::Eq,
                    operators::NOT_EQUALS => Op::Ne,
                    operators::LESS => Op::Lt,
                    operators::LESS_EQUALS => Op::Le,
                    operators::GREATER => Op::Gt,
                    operators::GREATER_EQUALS => Op::Ge,
                    operators::ADD => Op::Add,
                    operators::SUBSTRACT => Op::Sub,
                    operators::MULTIPLY => Op::Mul,
                    operators::DIVIDE => Op::Div,
                    operators::MODULO => Op::Rem,
                    operators::IN => Op::In,
                    operators::INDEX => Op::Index,
                    _ => return None,
                };
                let pair = [self.node(&args[0])?, self.node(&args[1])?];
                Some(Node::Binary(op, Box::new(pair)))
            }
            (None, 3) if name == operators::CONDITIONAL => {
                let [a, b, c] = [&args[0], &args[1], &args[2]];
                Some(Node::Cond(Box::new([
                    self.node(a)?,
                    self.node(b)?,
                    self.node(c)?,
                ])))
            }
            (Some(target), 0) => {
                let wrap = match name {
                    "size" => Node::Size,
                    "getMilliseconds" => Node::Millis,
                    _ => return None,
                };
                Some(wrap(one(self, target)?))
            }
            // `lists.range(n)`, unless `lists` is a variable.
            (Some(target), 1)
                if name == "range"
                    && matches!(&target.expr, Expr::Ident(ns) if ns == "lists")
                    && self.ident("lists").is_none() =>
            {
                Some(Node::Range(one(self, &args[0])?))
            }
            // `math.isFinite(x)`, unless `math` is a variable.
            (Some(target), 1)
                if name == "isFinite"
                    && matches!(&target.expr, Expr::Ident(ns) if ns == "math")
                    && self.ident("math").is_none() =>
            {
                Some(Node::Finite(one(self, &args[0])?))
            }
            _ => None,
        }
    }

    fn comprehension(&mut self, c: &'e ComprehensionExpr) -> Option<Node> {
        if c.iter_var2.is_some() || c.accu_var != ACCU {
            return None;
        }
        let range = self.node(bare(&c.iter_range))?;
        self.locals.push(&c.iter_var);
        let kind = self.kind(c);
        self.locals.pop();
        Some(Node::Loop(Box::new(Loop { range, kind: kind? })))
    }

    /// Which macro `c` is an expansion of (see the `cel` parser's
    /// `macros.rs`), with its predicate and function lowered.
    fn kind(&mut self, c: &'e ComprehensionExpr) -> Option<Kind> {
        if is_bool(&c.accu_init, true) {
            // all: while @not_strictly_false(@result): @result = @result && p
            let cond = call(bare(&c.loop_cond), operators::NOT_STRICTLY_FALSE, 1)?;
            let step = call(&c.loop_step, operators::LOGICAL_AND, 2)?;
            (is_accu(&cond[0]) && is_accu(&step[0]) && is_accu(&c.result)).then_some(())?;
            return self.node(&step[1]).map(Kind::All);
        }
        if is_bool(&c.accu_init, false) {
            // exists: while @not_strictly_false(!@result): @result = @result || p
            let cond = call(bare(&c.loop_cond), operators::NOT_STRICTLY_FALSE, 1)?;
            let not = call(&cond[0], operators::LOGICAL_NOT, 1)?;
            let step = call(&c.loop_step, operators::LOGICAL_OR, 2)?;
            (is_accu(&not[0]) && is_accu(&step[0]) && is_accu(&c.result)).then_some(())?;
            return self.node(&step[1]).map(Kind::Exists);
        }
        if !is_bool(bare(&c.loop_cond), true) {
            return None;
        }
        if is_int(&c.accu_init, 0) {
            // exists_one: @result = p ? @result + 1 : @result; @result == 1
            let step = call(&c.loop_step, operators::CONDITIONAL, 3)?;
            let add = call(&step[1], operators::ADD, 2)?;
            let result = call(&c.result, operators::EQUALS, 2)?;
            let ok = is_accu(&add[0])
                && is_int(&add[1], 1)
                && is_accu(&step[2])
                && is_accu(&result[0])
                && is_int(&result[1], 1);
            ok.then_some(())?;
            return self.node(&step[0]).map(Kind::ExistsOne);
        }
        if !matches!(&c.accu_init.expr, Expr::List(l) if l.elements.is_empty())
            || !is_accu(&c.result)
        {
            return None;
        }
        // map: @result = @result + [f], or with a predicate
        // @result = p ? @result + [f] : @result
        let (pred, append) = match call(&c.loop_step, operators::CONDITIONAL, 3) {
            Some(step) if is_accu(&step[2]) => (Some(&step[0]), &step[1]),
            Some(_) => return None,
            None => (None, &c.loop_step),
        };
        let add = call(append, operators::ADD, 2)?;
        let Expr::List(item) = &add[1].expr else {
            return None;
        };
        if !is_accu(&add[0]) || item.elements.len() != 1 || !item.optional_indices.is_empty() {
            return None;
        }
        let pred = match pred {
            Some(p) => Some(self.node(bare(p))?),
            None => None,
        };
        Some(Kind::Map(pred, self.node(bare(&item.elements[0]))?))
    }
}

/// `duration('30s')` with a literal, folded at compile time by the
/// interpreter itself (so it parses durations exactly as at run time); not
/// folded when the text is not a valid duration, which then fails at run
/// time as it always did.
fn duration_literal(arg: &IdedExpr) -> Option<Lit> {
    let Expr::Literal(LiteralValue::String(text)) = &arg.expr else {
        return None;
    };
    let text = text.inner();
    if text.contains(['"', '\\', '\n', '\r']) {
        return None;
    }
    let program = cel::Program::compile(&format!("duration(\"{text}\")")).ok()?;
    match program.execute(&cel::Context::default()).ok()? {
        Value::Duration(d) => Some(Lit::Duration(d)),
        _ => None,
    }
}

/// The arguments of a global call to `name` with `n` of them.
fn call<'e>(e: &'e IdedExpr, name: &str, n: usize) -> Option<&'e [IdedExpr]> {
    match &e.expr {
        Expr::Call(c) if c.target.is_none() && c.func_name == name && c.args.len() == n => {
            Some(&c.args)
        }
        _ => None,
    }
}

fn is_accu(e: &IdedExpr) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == ACCU)
}

fn is_bool(e: &IdedExpr, want: bool) -> bool {
    matches!(&e.expr, Expr::Literal(LiteralValue::Boolean(b)) if *b.inner() == want)
}

fn is_int(e: &IdedExpr, want: i64) -> bool {
    matches!(&e.expr, Expr::Literal(LiteralValue::Int(i)) if *i.inner() == want)
}

/// The comprehension variables in scope, innermost first.
struct Scope<'s, 'a> {
    val: V<'a>,
    up: Option<&'s Scope<'s, 'a>>,
}

struct Run<'b, 'x> {
    bindings: &'b Bindings<'x>,
}

impl<'a> Run<'a, '_> {
    fn node(&self, n: &'a Node, scope: Option<&Scope<'_, 'a>>) -> Option<V<'a>> {
        match n {
            Node::Lit(l) => Some(match l {
                Lit::Bool(b) => V::Bool(*b),
                Lit::Int(i) => V::Int(*i),
                Lit::Double(d) => V::Double(*d),
                Lit::Str(s) => V::Str(s),
                Lit::Duration(d) => V::Duration(*d),
            }),
            Node::Root(name) => of(self.bindings.get(name)?),
            Node::Local(up) => {
                let mut s = scope?;
                for _ in 0..*up {
                    s = s.up?;
                }
                Some(s.val.clone())
            }
            Node::Select(x, field) => match self.node(x, scope)? {
                V::Map(m) => of(field.of(m)?),
                _ => None,
            },
            Node::Has(x, field) => match self.node(x, scope)? {
                V::Map(m) => Some(V::Bool(field.of(m).is_some())),
                _ => None,
            },
            Node::Not(x) => match self.node(x, scope)? {
                V::Bool(b) => Some(V::Bool(!b)),
                _ => None,
            },
            Node::Neg(x) => match self.node(x, scope)? {
                V::Int(i) => i.checked_neg().map(V::Int),
                V::Double(d) => Some(V::Double(-d)),
                _ => None,
            },
            Node::Size(x) => {
                let n = match self.node(x, scope)? {
                    V::List(l) => l.len(),
                    V::Built(l) => l.len(),
                    V::Map(m) => m.len(),
                    V::Str(s) => s.chars().count(),
                    _ => return None,
                };
                i64::try_from(n).ok().map(V::Int)
            }
            Node::Range(x) => match self.node(x, scope)? {
                V::Int(n) if (0..=MAX_RANGE).contains(&n) => {
                    Some(V::Built((0..n).map(V::Int).collect()))
                }
                _ => None,
            },
            Node::Millis(x) => match self.node(x, scope)? {
                V::Duration(d) => Some(V::Int(d.num_milliseconds())),
                _ => None,
            },
            Node::Finite(x) => match self.node(x, scope)? {
                V::Double(d) => Some(V::Bool(d.is_finite())),
                _ => None,
            },
            Node::Cond(abc) => match self.node(&abc[0], scope)? {
                V::Bool(true) => self.node(&abc[1], scope),
                V::Bool(false) => self.node(&abc[2], scope),
                _ => None,
            },
            Node::Binary(op, ab) => self.binary(*op, &ab[0], &ab[1], scope),
            Node::List(items) => Some(V::Built(
                items
                    .iter()
                    .map(|i| self.node(i, scope))
                    .collect::<Option<_>>()?,
            )),
            Node::Loop(l) => self.comprehension(l, scope),
        }
    }

    fn binary(
        &self,
        op: Op,
        a: &'a Node,
        b: &'a Node,
        scope: Option<&Scope<'_, 'a>>,
    ) -> Option<V<'a>> {
        // `&&` and `||` decide on their left operand when they can.
        let left = self.node(a, scope)?;
        match (op, &left) {
            (Op::And, V::Bool(false)) => return Some(V::Bool(false)),
            (Op::Or, V::Bool(true)) => return Some(V::Bool(true)),
            (Op::And | Op::Or, V::Bool(_)) => {
                return match self.node(b, scope)? {
                    V::Bool(r) => Some(V::Bool(r)),
                    _ => None,
                }
            }
            (Op::And | Op::Or, _) => return None,
            _ => {}
        }
        let right = self.node(b, scope)?;
        let cmp = |want: fn(Ordering) -> bool| compare(&left, &right).map(|o| V::Bool(want(o)));
        match op {
            Op::Eq => equal(&left, &right).map(V::Bool),
            Op::Ne => equal(&left, &right).map(|e| V::Bool(!e)),
            Op::Lt => cmp(Ordering::is_lt),
            Op::Le => cmp(Ordering::is_le),
            Op::Gt => cmp(Ordering::is_gt),
            Op::Ge => cmp(Ordering::is_ge),
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Rem => arithmetic(op, &left, &right),
            Op::In => contains(&right, &left).map(V::Bool),
            Op::Index => index(left, &right),
            Op::And | Op::Or => None,
        }
    }

    fn comprehension(&self, l: &'a Loop, scope: Option<&Scope<'_, 'a>>) -> Option<V<'a>> {
        let range = self.node(&l.range, scope)?;
        let len = match &range {
            V::List(items) => items.len(),
            V::Built(items) => items.len(),
            // Maps iterate in the interpreter's hash order: leave them to it.
            _ => return None,
        };
        // A spent budget leaves the evaluation to the interpreter, which
        // reports it.
        if !super::budget::charge(len as u64) {
            return None;
        }
        let item = |i: usize| match &range {
            V::List(items) => of(&*items[i]),
            V::Built(items) => Some(items[i].clone()),
            _ => None,
        };
        // Evaluates `body` with the `i`th item bound.
        let with = |i: usize, body: &'a Node| {
            let inner = Scope {
                val: item(i)?,
                up: scope,
            };
            self.node(body, Some(&inner))
        };
        let truth = |i: usize, body: &'a Node| match with(i, body)? {
            V::Bool(b) => Some(b),
            _ => None,
        };
        match &l.kind {
            Kind::All(p) => {
                for i in 0..len {
                    if !truth(i, p)? {
                        return Some(V::Bool(false));
                    }
                }
                Some(V::Bool(true))
            }
            Kind::Exists(p) => {
                for i in 0..len {
                    if truth(i, p)? {
                        return Some(V::Bool(true));
                    }
                }
                Some(V::Bool(false))
            }
            Kind::ExistsOne(p) => {
                let mut n = 0;
                for i in 0..len {
                    n += usize::from(truth(i, p)?);
                }
                Some(V::Bool(n == 1))
            }
            Kind::Map(pred, f) => {
                let mut out = Vec::with_capacity(len);
                for i in 0..len {
                    if let Some(p) = pred {
                        if !truth(i, p)? {
                            continue;
                        }
                    }
                    out.push(with(i, f)?);
                }
                Some(V::Built(out.into()))
            }
        }
    }
}

/// A bound value as the fast path sees it; `None` for the kinds it leaves
/// to the interpreter (null, uint, bytes, timestamps, other maps and lists).
fn of<'a>(v: &'a (dyn Val + 'static)) -> Option<V<'a>> {
    let Some(any) = v.as_any() else {
        // Strings have no `Any` (they may borrow); checked last, as this
        // is a second virtual call.
        return v.downcast_ref::<CelString>().map(|s| V::Str(s.inner()));
    };
    if let Some(m) = any.downcast_ref::<SharedMap>() {
        Some(V::Map(m))
    } else if let Some(i) = any.downcast_ref::<CelInt>() {
        Some(V::Int(*i.inner()))
    } else if let Some(l) = any.downcast_ref::<SharedList>() {
        Some(V::List(l.items()))
    } else if let Some(b) = any.downcast_ref::<CelBool>() {
        Some(V::Bool(*b.inner()))
    } else if let Some(d) = any.downcast_ref::<CelDouble>() {
        Some(V::Double(*d.inner()))
    } else {
        any.downcast_ref::<CelDuration>()
            .map(|d| V::Duration(*d.inner()))
    }
}

/// `a == b` for two values of one scalar type; `None` otherwise (mixed
/// numeric types, maps, lists and NaN follow rules of their own).
fn equal(a: &V<'_>, b: &V<'_>) -> Option<bool> {
    match (a, b) {
        (V::Bool(x), V::Bool(y)) => Some(x == y),
        (V::Int(x), V::Int(y)) => Some(x == y),
        (V::Str(x), V::Str(y)) => Some(x == y),
        (V::Duration(x), V::Duration(y)) => Some(x == y),
        (V::Double(x), V::Double(y)) if !x.is_nan() && !y.is_nan() => Some(x == y),
        _ => None,
    }
}

fn compare(a: &V<'_>, b: &V<'_>) -> Option<Ordering> {
    match (a, b) {
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        (V::Double(x), V::Double(y)) => x.partial_cmp(y),
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::Duration(x), V::Duration(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn arithmetic<'a>(op: Op, a: &V<'a>, b: &V<'a>) -> Option<V<'a>> {
    match (a, b) {
        (V::Int(x), V::Int(y)) => match op {
            Op::Add => x.checked_add(*y),
            Op::Sub => x.checked_sub(*y),
            Op::Mul => x.checked_mul(*y),
            Op::Div => x.checked_div(*y),
            Op::Rem => x.checked_rem(*y),
            _ => None,
        }
        .map(V::Int),
        // IEEE 754, as the interpreter: no errors, no `%`.
        (V::Double(x), V::Double(y)) => match op {
            Op::Add => Some(x + y),
            Op::Sub => Some(x - y),
            Op::Mul => Some(x * y),
            Op::Div => Some(x / y),
            _ => None,
        }
        .map(V::Double),
        _ => None,
    }
}

/// `needle in haystack`, for a list of scalars of the needle's type or a
/// map's string keys.
fn contains(haystack: &V<'_>, needle: &V<'_>) -> Option<bool> {
    let each = |items: &mut dyn Iterator<Item = Option<V<'_>>>| {
        let mut found = false;
        for item in items {
            found |= equal(needle, &item?)?;
        }
        Some(found)
    };
    match (haystack, needle) {
        (V::Map(m), V::Str(k)) => Some(m.field(k).is_some()),
        (V::List(items), _) => each(&mut items.iter().map(|i| of(&**i))),
        (V::Built(items), _) => each(&mut items.iter().cloned().map(Some)),
        _ => None,
    }
}

fn index<'a>(container: V<'a>, at: &V<'a>) -> Option<V<'a>> {
    match (container, at) {
        (V::List(items), V::Int(i)) => of(&**items.get(usize::try_from(*i).ok()?)?),
        (V::Built(items), V::Int(i)) => items.get(usize::try_from(*i).ok()?).cloned(),
        (V::Map(m), V::Str(k)) => of(m.field(k)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
