//! Compiling CEL once, at load, and checking it against its declared
//! environment.
//!
//! The `cel` crate has no type checker, so we check what a program
//! *references*: every identifier must be a declared variable (or bound by a
//! comprehension), and every function one the engine provides. A misspelt
//! name is then a load-time error at its position in the expression, not a
//! surprise at evaluation.

use cel::common::ast::Expr;
use cel::{IdedExpr, Program};

use crate::diagnostic::Code;
use crate::yaml::did_you_mean;

/// Longest expression accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 8 * 1024;
/// Largest expression accepted, in AST nodes.
pub const MAX_NODES: usize = 2_000;
/// Deepest nesting of comprehensions (`all`, `exists`, `map`, `filter`).
pub const MAX_COMPREHENSION_DEPTH: usize = 3;

/// Functions the engine provides: the CEL standard library and the strings,
/// lists and math extensions. Operators (`_+_`, `@in`, …) are always allowed.
/// A unit test proves every name here resolves.
pub const FUNCTIONS: &[&str] = &[
    // standard
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "dyn",
    "type",
    "duration",
    "timestamp",
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
    // strings extension
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "join",
    "strings.quote",
    "reverse",
    // lists extension
    "distinct",
    "flatten",
    "lists.range",
    "slice",
    "sort",
    "sortBy",
    // math extension
    "math.greatest",
    "math.least",
    "math.abs",
    "math.ceil",
    "math.floor",
    "math.round",
    "math.trunc",
    "math.sign",
    "math.sqrt",
    "math.isInf",
    "math.isNaN",
    "math.isFinite",
];

/// Identifiers that name types (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

/// Macro names, expanded by the parser; listed for "did you mean".
const MACROS: &[&str] = &["has", "all", "exists", "exists_one", "map", "filter"];

/// A problem found compiling an expression; offsets are in characters of the
/// expression text.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub code: Code,
    pub message: String,
    pub hint: Option<String>,
    pub at: At,
}

/// Where in the expression an [`Issue`] is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum At {
    /// Character range `[start, end)`.
    Chars(usize, usize),
    /// 1-based line and column, as the parser reports.
    LineCol(usize, usize),
}

pub struct Compiled {
    pub program: Program,
    /// The expression lowered for the fast path, when it can be.
    pub fast: Option<super::fast::Plan>,
    /// Coarse cost bounds by the rounded measures of the bound values.
    costs: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
    /// No comprehension and nothing that builds a value larger than its
    /// operands together: the work is linear in what it reads, never
    /// over budget, so it is not estimated.
    linear: bool,
}

/// Functions whose result can outgrow their operands (chained, they grow
/// exponentially) or that loop over a list.
const GROWING: &[&str] = &[
    "replace",
    "split",
    "join",
    "range",
    "quote",
    "flatten",
    "distinct",
    "sort",
    "@sortByAssociatedKeys",
    "reverse",
    "slice",
    "string",
    "bytes",
];

/// Whether `e` is linear (see [`Compiled::linear`]): no comprehension, no
/// growing function, and at most [`COPIES`] places that copy a value
/// (`+`, items of a list or map literal), so that its values are at most a
/// few times what it reads.
fn linear(e: &IdedExpr) -> bool {
    let mut copies = 0usize;
    linear_within(e, &mut copies) && copies <= COPIES
}

/// Most copying places in a linear expression.
const COPIES: usize = 4;

fn linear_within(e: &IdedExpr, copies: &mut usize) -> bool {
    let entries = |m: &[cel::common::ast::IdedEntryExpr], copies: &mut usize| {
        *copies += m.len();
        m.iter().all(|e| match &e.expr {
            cel::common::ast::EntryExpr::MapEntry(me) => {
                linear_within(&me.key, copies) && linear_within(&me.value, copies)
            }
            cel::common::ast::EntryExpr::StructField(f) => linear_within(&f.value, copies),
        })
    };
    match &e.expr {
        Expr::Comprehension(_) => false,
        Expr::Call(c) => {
            if c.func_name == cel::common::ast::operators::ADD {
                *copies += 1;
            }
            !GROWING.contains(&c.func_name.as_str())
                && c.target.as_deref().is_none_or(|t| linear_within(t, copies))
                && c.args.iter().all(|a| linear_within(a, copies))
        }
        Expr::Select(s) => linear_within(&s.operand, copies),
        Expr::List(l) => {
            *copies += l.elements.len();
            l.elements.iter().all(|x| linear_within(x, copies))
        }
        Expr::Map(m) => entries(&m.entries, copies),
        Expr::Struct(s) => entries(&s.entries, copies),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => true,
    }
}

impl Compiled {
    /// An upper bound of the steps an evaluation with `bindings` takes:
    /// the coarse bound, kept per size of the bound values (most
    /// evaluations are of values of a few sizes), and, only when that is
    /// over `budget`, the bound measured field by field.
    pub fn cost(&self, bindings: &super::Bindings<'_>, budget: u64) -> u64 {
        if self.linear {
            return 0;
        }
        let coarse = match bindings.size_key() {
            Some(key) => {
                let cached = self.costs.lock().ok().and_then(|c| c.get(&key).copied());
                cached.unwrap_or_else(|| {
                    let c = super::cost::estimate_coarse(self.program.expression(), bindings);
                    if let Ok(mut costs) = self.costs.lock() {
                        // Sizes come in a few dozen classes; a hostile
                        // spread of them only costs recomputing.
                        if costs.len() >= 4_096 {
                            costs.clear();
                        }
                        costs.insert(key, c);
                    }
                    c
                })
            }
            None => super::cost::estimate_coarse(self.program.expression(), bindings),
        };
        if coarse <= budget {
            return coarse;
        }
        super::cost::estimate(self.program.expression(), bindings)
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("fast", &self.fast.is_some())
            .finish()
    }
}

pub fn compile(env: &cel::Env, source: &str, variables: &[&str]) -> Result<Compiled, Vec<Issue>> {
    if source.len() > MAX_SOURCE_LEN {
        return Err(vec![Issue {
            code: Code::CelBudget,
            message: format!(
                "expression is {} bytes long, over the limit of {MAX_SOURCE_LEN}",
                source.len()
            ),
            hint: Some("split the rule into several smaller ones".into()),
            at: At::Chars(0, 1),
        }]);
    }
    if let Some(issue) = too_nested(source) {
        return Err(vec![issue]);
    }
    // The parser (ANTLR's) and every pass over the tree recurse, with
    // frames of kilobytes in a debug build: on a 2 MiB thread (tokio's, in
    // `meshplan run`) a few dozen nested brackets would overflow the stack,
    // which no `catch_unwind` survives. So an expression is parsed, checked
    // and — when refused — dropped on a thread of its own with room for the
    // nesting `too_nested` lets through; a kept tree is at most
    // `MAX_TREE_DEPTH` deep, which evaluation anywhere can afford.
    let parsed = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, || compile_here(env, source, variables))
            .map(|handle| handle.join())
    });
    match parsed {
        Ok(Ok(result)) => result,
        // A panic in the parser (its message is already on stderr).
        Ok(Err(_)) => Err(vec![Issue {
            code: Code::CelSyntax,
            message: "the CEL parser failed on this expression".into(),
            hint: Some("simplify the expression".into()),
            at: At::Chars(0, 1),
        }]),
        Err(e) => Err(vec![Issue {
            code: Code::CelBudget,
            message: format!("no thread to compile the expression on: {e}"),
            hint: None,
            at: At::Chars(0, 1),
        }]),
    }
}

/// Stack of the thread an expression is compiled on (reserved, not used:
/// pages are touched only as deep as the parser goes).
const COMPILE_STACK: usize = 64 << 20;

/// Deepest nesting of brackets (`(`, `[`, `{`) in an expression's text.
pub const MAX_NESTING: usize = 24;

/// Deepest expression tree kept (`a.b.c…`, `!!!…`, a chain of `?:`).
pub const MAX_TREE_DEPTH: usize = 100;

/// Brackets nested deeper than [`MAX_NESTING`], outside string literals:
/// refused before the parser sees them.
fn too_nested(source: &str) -> Option<Issue> {
    let (mut depth, mut quote): (usize, Option<&str>) = (0, None);
    let mut chars = source.char_indices().peekable();
    let mut at = 0;
    while let Some((i, c)) = chars.next() {
        at += 1;
        match quote {
            Some(q) => {
                if c == '\\' {
                    chars.next();
                    at += 1;
                } else if source[i..].starts_with(q) {
                    for _ in 1..q.len() {
                        chars.next();
                        at += 1;
                    }
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => {
                    let triple = if c == '"' { "\"\"\"" } else { "'''" };
                    let q = if source[i..].starts_with(triple) {
                        triple
                    } else {
                        &source[i..i + 1]
                    };
                    for _ in 1..q.len() {
                        chars.next();
                        at += 1;
                    }
                    quote = Some(q);
                }
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Some(Issue {
                            code: Code::CelBudget,
                            message: format!("brackets nested more than {MAX_NESTING} deep"),
                            hint: Some("split the expression into several rules".into()),
                            at: At::Chars(at - 1, at),
                        });
                    }
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    None
}

/// [`compile`] past the checks on its text.
fn compile_here(env: &cel::Env, source: &str, variables: &[&str]) -> Result<Compiled, Vec<Issue>> {
    let program = env.compile(source).map_err(|errs| {
        errs.errors
            .iter()
            .map(|e| Issue {
                code: Code::CelSyntax,
                message: format!("CEL syntax error: {}", tidy_parse_message(&e.msg)),
                hint: None,
                at: At::LineCol(
                    usize::try_from(e.pos.0).unwrap_or(1).max(1),
                    usize::try_from(e.pos.1).unwrap_or(1).max(1),
                ),
            })
            .collect::<Vec<_>>()
    })?;
    let mut checker = Checker {
        program: &program,
        source,
        variables,
        bound: Vec::new(),
        issues: Vec::new(),
        nodes: 0,
        depth: 0,
        max_depth: 0,
        level: 0,
        deepest: 0,
    };
    checker.walk(program.expression());
    let mut issues = checker.issues;
    if checker.nodes > MAX_NODES {
        issues.push(Issue {
            code: Code::CelBudget,
            message: format!(
                "expression has {} nodes, over the limit of {MAX_NODES}",
                checker.nodes
            ),
            hint: Some("split the rule into several smaller ones".into()),
            at: At::Chars(0, 1),
        });
    }
    if checker.deepest > MAX_TREE_DEPTH {
        issues.push(Issue {
            code: Code::CelBudget,
            message: format!(
                "expression is {} levels deep, over the limit of {MAX_TREE_DEPTH}",
                checker.deepest
            ),
            hint: Some("split the expression into several rules".into()),
            at: At::Chars(0, 1),
        });
    }
    if checker.max_depth > MAX_COMPREHENSION_DEPTH {
        issues.push(Issue {
            code: Code::CelBudget,
            message: format!(
                "comprehensions nested {} deep, over the limit of {MAX_COMPREHENSION_DEPTH}",
                checker.max_depth
            ),
            hint: Some("nested all/exists/map/filter multiply the work on large input".into()),
            at: At::Chars(0, 1),
        });
    }
    if !issues.is_empty() {
        issues.sort_by_key(|i| match i.at {
            At::Chars(s, _) => s,
            At::LineCol(l, c) => l * 10_000 + c,
        });
        return Err(issues);
    }
    Ok(Compiled {
        fast: super::fast::Plan::new(program.expression(), variables),
        linear: linear(program.expression()),
        program,
        costs: Default::default(),
    })
}

/// The ANTLR messages list every token the grammar could take; keep the
/// first sentence.
fn tidy_parse_message(msg: &str) -> String {
    let msg = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    let msg = match msg.find(" expecting {") {
        Some(i) => &msg[..i],
        None => msg,
    };
    // The parser's own names for its internal states (`Incomplete
    // `IndexContext`!`, `No `ConditionalAndContextAll`!`) mean nothing to
    // a rule's author.
    if msg.contains("Context") || msg.contains("Error(") {
        return "the expression is incomplete or malformed here".into();
    }
    msg.replace("mismatched input '<EOF>'", "the expression ends too early")
        .replace("missing ')' at '<EOF>'", "a `(` is never closed")
}

struct Checker<'a> {
    program: &'a Program,
    source: &'a str,
    variables: &'a [&'a str],
    bound: Vec<String>,
    issues: Vec<Issue>,
    nodes: usize,
    depth: usize,
    max_depth: usize,
    /// Depth in the tree of the node being walked, and the deepest.
    level: usize,
    deepest: usize,
}

impl Checker<'_> {
    fn range(&self, e: &IdedExpr) -> (usize, usize) {
        match self.program.source_info().offset_for(e.id) {
            Some((s, t)) => (s as usize, (t as usize + 1).max(s as usize + 1)),
            None => (0, 1),
        }
    }

    fn walk(&mut self, e: &IdedExpr) {
        self.level += 1;
        self.deepest = self.deepest.max(self.level);
        self.walk_node(e);
        self.level -= 1;
    }

    fn walk_node(&mut self, e: &IdedExpr) {
        self.nodes += 1;
        match &e.expr {
            Expr::Ident(name) => self.ident(e, name),
            Expr::Call(call) => {
                let namespaced = match call.target.as_deref() {
                    Some(IdedExpr {
                        expr: Expr::Ident(ns),
                        ..
                    }) => {
                        let full = format!("{ns}.{}", call.func_name);
                        (FUNCTIONS.contains(&full.as_str()) && !self.is_variable(ns))
                            .then_some(full)
                    }
                    _ => None,
                };
                if namespaced.is_none() {
                    self.function(e, &call.func_name);
                    if let Some(t) = &call.target {
                        self.walk(t);
                    }
                }
                for a in &call.args {
                    self.walk(a);
                }
            }
            Expr::Select(s) => self.walk(&s.operand),
            Expr::List(l) => l.elements.iter().for_each(|x| self.walk(x)),
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                        self.walk(&me.key);
                        self.walk(&me.value);
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let cel::common::ast::EntryExpr::StructField(f) = &entry.expr {
                        self.walk(&f.value);
                    }
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range);
                self.walk(&c.accu_init);
                self.depth += 1;
                self.max_depth = self.max_depth.max(self.depth);
                let before = self.bound.len();
                self.bound.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.bound.push(v.clone());
                }
                self.bound.push(c.accu_var.clone());
                self.walk(&c.loop_cond);
                self.walk(&c.loop_step);
                self.walk(&c.result);
                self.bound.truncate(before);
                self.depth -= 1;
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn is_variable(&self, name: &str) -> bool {
        self.variables.contains(&name) || self.bound.iter().any(|b| b == name)
    }

    fn ident(&mut self, e: &IdedExpr, name: &str) {
        if name.starts_with('@') || self.is_variable(name) || TYPE_NAMES.contains(&name) {
            return;
        }
        let mut candidates: Vec<&str> = self.variables.to_vec();
        candidates.extend(self.bound.iter().map(String::as_str));
        let (s, t) = self.range(e);
        self.issues.push(Issue {
            code: Code::CelUnknownVariable,
            message: format!(
                "undeclared variable `{name}`: this expression may use {}",
                list(self.variables)
            ),
            hint: did_you_mean(name, &candidates),
            at: At::Chars(s, t),
        });
    }

    fn function(&mut self, e: &IdedExpr, name: &str) {
        // Operators and macro expansions (`math.greatest` → `math.@max`)
        // are internal names.
        let operator = name.starts_with(['_', '@', '!', '-']) || name.contains('@');
        if operator || FUNCTIONS.contains(&name) || MACROS.contains(&name) {
            return;
        }
        // The parser places a call at its `(`; point at the name before it.
        let (open, _) = self.range(e);
        let chars: Vec<char> = self.source.chars().collect();
        let len = name.chars().count();
        // Offsets past the text (the parser counts some characters in
        // bytes) point at its start rather than anywhere.
        let named = open
            .checked_sub(len)
            .and_then(|from| chars.get(from..open))
            .is_some_and(|before| before.iter().copied().eq(name.chars()));
        let at = match (named, open < chars.len()) {
            (true, _) => At::Chars(open - len, open),
            (false, true) => At::Chars(open, open + 1),
            (false, false) => At::Chars(0, 1),
        };
        let mut candidates: Vec<&str> = FUNCTIONS.to_vec();
        candidates.extend(MACROS);
        self.issues.push(Issue {
            code: Code::CelUnknownFunction,
            message: format!("unknown function `{name}`"),
            hint: did_you_mean(name, &candidates),
            at,
        });
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "no variables".into();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
