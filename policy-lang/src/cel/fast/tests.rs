use super::*;
use crate::cel::{Bound, Engine, EvalError};

/// Evaluates `src` on both paths: the fast path's answer (if any) and the
/// interpreter's.
fn both(
    engine: &Engine,
    src: &str,
    bindings: &Bindings<'_>,
) -> (Option<Value>, Result<Value, EvalError>) {
    let compiled = engine
        .compile(src, &["x", "y"])
        .unwrap_or_else(|e| panic!("{src}: {e:?}"));
    let fast = compiled.fast.as_ref().and_then(|p| p.eval(bindings));
    (fast, engine.interpret(&compiled, bindings))
}

fn data() -> Bound {
    Bound::new(&serde_json::json!({
        "n": 7, "d": 2.5, "s": "héllo", "b": true,
        "items": [{"w": 10, "name": "a"}, {"name": "b"}, {"w": 60, "name": "c"}],
        "nums": [3, 1, 2],
        "tags": ["x", "y"],
    }))
    .expect("converts")
}

/// Durations only come from the interpreter's own values.
fn durations() -> Bound {
    let ms = |n| Value::Duration(chrono::Duration::milliseconds(n));
    let map: std::collections::HashMap<cel::objects::Key, Value> = [
        ("timeout".to_string().into(), ms(1500)),
        ("perTry".to_string().into(), ms(500)),
    ]
    .into();
    Bound::from_value(Value::Map(cel::objects::Map { map: Arc::new(map) }))
}

#[test]
fn answers_the_common_expressions_as_the_interpreter() {
    let engine = Engine::new();
    let (x, y) = (data(), durations());
    let b = Bindings::new().with("x", &x).with("y", &y);
    for (src, want) in [
        ("x.items.filter(s, has(s.w))[0].w <= 50", Value::Bool(true)),
        ("x.items.filter(s, has(s.w)).map(s, s.w)[1]", Value::Int(60)),
        ("x.items.exists(s, has(s.w)) && x.n == 7", Value::Bool(true)),
        ("x.items.all(s, s.name != 'z')", Value::Bool(true)),
        ("x.items.exists_one(s, s.name == 'b')", Value::Bool(true)),
        ("x.items.map(s, has(s.w), s.w).size()", Value::Int(2)),
        (
            "lists.range(size(x.nums)).all(i, lists.range(i).all(j, x.nums[j] != x.nums[i]))",
            Value::Bool(true),
        ),
        ("x.d * 2.0 - 1.0", Value::Float(4.0)),
        ("x.n * 3 % 5 - -x.n / 2", Value::Int(4)),
        ("size(x.s) + x.s.size()", Value::Int(10)),
        (
            "'y' in x.tags && 2 in x.nums && 'n' in x",
            Value::Bool(true),
        ),
        ("x.b ? x.s : 'no'", Value::String(Arc::new("héllo".into()))),
        ("[1, 2, 3][2]", Value::Int(3)),
        ("x['items'][2]['name'] < 'd'", Value::Bool(true)),
        (
            "y.perTry.getMilliseconds() * 3 <= y.timeout.getMilliseconds()",
            Value::Bool(true),
        ),
        ("y.perTry < y.timeout", Value::Bool(true)),
        (
            "y.timeout <= duration('1.5s') && !(y.timeout > duration('1m'))",
            Value::Bool(true),
        ),
        ("duration('1h30m').getMilliseconds()", Value::Int(5_400_000)),
        (
            "y.timeout",
            Value::Duration(chrono::Duration::milliseconds(1500)),
        ),
    ] {
        let (fast, slow) = both(&engine, src, &b);
        assert_eq!(fast.as_ref(), Some(&want), "fast path on {src}");
        assert_eq!(slow, Ok(want), "interpreter on {src}");
    }
}

#[test]
fn leaves_the_unusual_to_the_interpreter() {
    let engine = Engine::new();
    let x = data();
    let b = Bindings::new().with("x", &x);
    for src in [
        // errors of every kind
        "x.missing == 1",
        "x.items[1].w > 0",
        "x.nums[3] == 0",
        "x.n / 0 == 1",
        "9223372036854775807 + x.n > 0",
        "x.n < 'a'",
        // mixed numeric types follow their own rules
        "x.n == 7.0",
        "x.d > 2",
        // results that are not scalars
        "x.items",
        "x.nums.map(v, v * 2)",
        // maps iterate in the interpreter's order
        "x.all(k, k != '')",
        // an error `||` forgives on its right
        "x.missing || true",
    ] {
        let (fast, slow) = both(&engine, src, &b);
        assert_eq!(
            fast, None,
            "{src} must go to the interpreter (it says {slow:?})"
        );
    }
    // Outside the subset altogether: no plan.
    for src in [
        "string(x.n) == '7'",
        "x.s.startsWith('h')",
        "x.n == uint(7)",
        // not a duration: fails at run time, in the interpreter
        "duration('soon') > duration('1s')",
        "duration(x.s) > duration('1s')",
    ] {
        let c = engine.compile(src, &["x"]).unwrap();
        assert!(c.fast.is_none(), "{src}");
    }
}

#[test]
fn every_builtin_rule_takes_the_fast_path() {
    let engine = Engine::new();
    let pack = crate::check::builtin::policy().expect("the pack parses");
    for rule in &pack.value.spec.rules {
        for src in rule.match_expr.iter().chain([&rule.rule]) {
            let c = engine.compile(src, &["intent", "config"]).unwrap();
            assert!(c.fast.is_some(), "{}: {src}", rule.name);
        }
    }
}

/// Random expressions over random data: whenever the fast path answers,
/// the interpreter gives the same value.
#[test]
fn agrees_with_the_interpreter_on_random_expressions() {
    let engine = Engine::new();
    let mut answered = 0;
    const CASES: u64 = 3_000;
    for seed in 0..CASES {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let x = Bound::new(&g.data()).expect("converts");
        let b = Bindings::new().with("x", &x);
        let src = match g.below(3) {
            0 => g.int(3),
            1 => g.double(3),
            _ => g.boolean(3),
        };
        let (fast, slow) = both(&engine, &src, &b);
        if let Some(fast) = fast {
            answered += 1;
            // `{:?}` so that a NaN equals a NaN.
            assert_eq!(
                format!("{:?}", Ok::<_, EvalError>(fast)),
                format!("{slow:?}"),
                "seed {seed}: {src}"
            );
        }
    }
    // Most generated expressions are well typed: the test must exercise
    // the fast path, not only its refusals.
    assert!(answered > CASES / 2, "only {answered} of {CASES} answered");
}

/// The coarse cost bound, kept per size of the bound values, is never
/// below the bound measured field by field (so skipping the latter when
/// the former is within budget is sound), on random expressions and data.
#[test]
fn the_coarse_cost_bound_is_never_below_the_measured_one() {
    let engine = Engine::new();
    for seed in 0..2_000u64 {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let x = Bound::new(&g.data()).expect("converts");
        let b = Bindings::new().with("x", &x);
        let src = match g.below(3) {
            0 => g.int(3),
            1 => g.double(3),
            _ => g.boolean(3),
        };
        let compiled = engine.compile(&src, &["x", "y"]).expect("compiles");
        let e = compiled.program.expression();
        let (coarse, exact) = (
            crate::cel::cost::estimate_coarse(e, &b),
            crate::cel::cost::estimate(e, &b),
        );
        assert!(coarse >= exact, "seed {seed}: {src}: {coarse} < {exact}");
    }
}

/// A small deterministic generator (splitmix64) of data and expressions.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'s>(&mut self, options: &[&'s str]) -> &'s str {
        options[self.below(options.len() as u64) as usize]
    }

    fn data(&mut self) -> serde_json::Value {
        let items: Vec<serde_json::Value> = (0..self.below(4))
            .map(|_| {
                let mut item = serde_json::json!({
                    "name": self.pick(&["a", "b", "é"]),
                    "ok": self.below(2) == 0,
                });
                if self.below(3) > 0 {
                    item["w"] = (self.below(120) as i64 - 10).into();
                }
                item
            })
            .collect();
        let nums: Vec<i64> = (0..self.below(5))
            .map(|_| self.below(10) as i64 - 3)
            .collect();
        let m = [0, 1, -1, i64::MAX, i64::MIN][self.below(5) as usize];
        let d = [0.0, 1.5, -2.25, 99.9, 1e308][self.below(5) as usize];
        serde_json::json!({
            "n": self.below(20) as i64 - 5,
            "m": m,
            "d": d,
            "s": self.pick(&["", "a", "héllo"]),
            "b": self.below(2) == 0,
            "items": items,
            "nums": nums,
            "tags": ["a", "b"],
        })
    }

    fn int(&mut self, depth: u32) -> String {
        let leaf = depth == 0 || self.below(3) == 0;
        if leaf {
            return match self.below(8) {
                0 => self.pick(&["x.n", "x.m", "x.items.size()"]).into(),
                1 => format!("x.nums[{}]", self.below(4)),
                2 => format!("x.items[{}].w", self.below(3)),
                3 => "size(x.s)".into(),
                4 => "x.d".into(),
                _ => (self.below(12) as i64 - 2).to_string(),
            };
        }
        let d = depth - 1;
        match self.below(6) {
            0 => format!("-({})", self.int(d)),
            1 => format!("({} ? {} : {})", self.boolean(d), self.int(d), self.int(d)),
            2 => format!("x.nums.filter(v, {}).size()", self.boolean_on("v", d)),
            3 => format!("lists.range({}).size()", self.below(4)),
            _ => {
                let op = self.pick(&["+", "-", "*", "/", "%"]);
                format!("({} {op} {})", self.int(d), self.int(d))
            }
        }
    }

    fn double(&mut self, depth: u32) -> String {
        if depth == 0 || self.below(3) == 0 {
            return self.pick(&["x.d", "0.0", "2.5", "-1.0", "x.n"]).into();
        }
        let op = self.pick(&["+", "-", "*", "/"]);
        format!(
            "({} {op} {})",
            self.double(depth - 1),
            self.double(depth - 1)
        )
    }

    fn string(&mut self) -> String {
        match self.below(4) {
            0 => "x.s".into(),
            1 => format!("x.items[{}].name", self.below(3)),
            2 => format!("x.tags[{}]", self.below(3)),
            _ => self.pick(&["'a'", "''", "'é'", "'héllo'"]).into(),
        }
    }

    fn boolean(&mut self, depth: u32) -> String {
        if depth == 0 || self.below(4) == 0 {
            return match self.below(4) {
                0 => self.pick(&["x.b", "true", "false"]).into(),
                1 => format!("has(x.items[{}].w)", self.below(3)),
                2 => self.pick(&["has(x.n)", "has(x.zz)", "'n' in x"]).into(),
                _ => format!("{} == {}", self.string(), self.string()),
            };
        }
        let d = depth - 1;
        match self.below(10) {
            0 => format!("!({})", self.boolean(d)),
            1 | 2 => {
                let op = self.pick(&["&&", "||"]);
                format!("({} {op} {})", self.boolean(d), self.boolean(d))
            }
            3 => {
                let op = self.pick(&["<", "<=", ">", ">=", "==", "!="]);
                format!("{} {op} {}", self.int(d), self.int(d))
            }
            4 => {
                let op = self.pick(&["<", ">=", "==", "!="]);
                format!("{} {op} {}", self.double(d), self.double(d))
            }
            5 => {
                let op = self.pick(&["<", "==", "!="]);
                format!("{} {op} {}", self.string(), self.string())
            }
            6 => {
                let m = self.pick(&["all", "exists", "exists_one"]);
                format!("x.items.{m}(i, {})", self.boolean_on("i", d))
            }
            7 => format!("{} in x.nums", self.int(d)),
            8 => format!("{} in x.tags", self.string()),
            _ => format!(
                "x.items.filter(i, {}).map(i, i.name).exists(n, n == {})",
                self.boolean_on("i", d),
                self.string()
            ),
        }
    }

    /// A condition on the comprehension variable `v` (an item or a number).
    fn boolean_on(&mut self, v: &str, depth: u32) -> String {
        let own = match (v, self.below(4)) {
            ("i", 0) => format!("has({v}.w)"),
            ("i", 1) => format!("{v}.w > {}", self.below(60)),
            ("i", 2) => format!("{v}.name == {}", self.string()),
            ("i", _) => format!("{v}.ok"),
            (_, 0) => format!("{v} % 2 == 0"),
            (_, _) => format!("{v} > {}", self.int(0)),
        };
        match self.below(3) {
            0 => own,
            1 => format!("({own} && {})", self.boolean(depth)),
            _ => format!("({own} || {})", self.boolean(depth)),
        }
    }
}
