//! ServiceResolver subset filters: Consul's filter expressions
//! (<https://developer.hashicorp.com/consul/api-docs/features/filtering>)
//! over the selectors of the Health API's service instances ("The filter
//! expression … can filter on the same selectors as the Health API
//! endpoint", service-resolver reference, `Subsets[].Filter`).
//!
//! Grammar: `or`, `and`, `not`, parentheses; matching expressions
//! `<Selector> == <Value>`, `!=`, `is empty`, `is not empty`,
//! `<Value> in <Selector>`, `not in`, `contains`, `not contains`,
//! `matches`, `not matches`. Values are `"quoted"`, `` `raw` `` or bare
//! words (`Service.Meta.version == v1`). Selectors modelled:
//! `Service.Meta[.<key>]`, `Service.Service`, `Service.ID`,
//! `Service.Tags` (none: consul-k8s registers tags only from an
//! annotation the cluster model does not carry). A meta key an instance
//! lacks reads as empty.

use regex::Regex;

use super::Instance;
use crate::model::FilterError;

#[derive(Debug)]
pub(super) struct Filter(Expr);

#[derive(Debug)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match {
        selector: Vec<String>,
        op: Op,
        negate: bool,
    },
}

#[derive(Debug)]
enum Op {
    Equal(String),
    IsEmpty,
    /// `in` / `contains`: a list element, a map key or a substring.
    Contains(String),
    Matches(Regex),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Eq,
    Ne,
    Word(String),
    Quoted(String),
}

fn tokens(s: &str) -> Result<Vec<Tok>, FilterError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' => {
                chars.next();
                out.push(if c == '(' { Tok::Open } else { Tok::Close });
            }
            '=' | '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err(FilterError::Operator(c));
                }
                out.push(if c == '=' { Tok::Eq } else { Tok::Ne });
            }
            '"' | '`' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        None => return Err(FilterError::Unterminated),
                        Some(x) if x == c => break,
                        Some('\\') if c == '"' => v.extend(chars.next()),
                        Some(x) => v.push(x),
                    }
                }
                out.push(Tok::Quoted(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&x) = chars.peek() {
                    if x.is_whitespace() || matches!(x, '(' | ')' | '=' | '!' | '"' | '`') {
                        break;
                    }
                    w.push(x);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

/// What the parser needed, and the token it found instead (`None` at
/// the end), written as the parser's messages always wrote it.
fn expected(what: &'static str, found: Option<Tok>) -> FilterError {
    FilterError::Expected {
        expected: what,
        found: format!("{found:?}"),
    }
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn peek_word(&self, offset: usize, w: &str) -> bool {
        matches!(self.toks.get(self.at + offset), Some(Tok::Word(x)) if x == w)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.and()?;
        while self.peek_word(0, "or") {
            self.at += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.unary()?;
        while self.peek_word(0, "and") {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.peek_word(0, "not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.at += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err(FilterError::Unclosed);
            }
            return Ok(e);
        }
        self.matching()
    }

    fn value(&mut self) -> Result<String, FilterError> {
        match self.next() {
            Some(Tok::Word(w) | Tok::Quoted(w)) => Ok(w),
            t => Err(expected("a value", t)),
        }
    }

    fn selector(&mut self) -> Result<Vec<String>, FilterError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w.split('.').map(str::to_owned).collect()),
            t => Err(expected("a selector", t)),
        }
    }

    fn matching(&mut self) -> Result<Expr, FilterError> {
        // `<Value> [not] in <Selector>`
        let negate_in = self.peek_word(1, "not") && self.peek_word(2, "in");
        if self.peek_word(1, "in") || negate_in {
            let value = self.value()?;
            self.at += if negate_in { 2 } else { 1 };
            let selector = self.selector()?;
            return Ok(Expr::Match {
                selector,
                op: Op::Contains(value),
                negate: negate_in,
            });
        }
        let selector = self.selector()?;
        let (op, negate) = match self.next() {
            Some(Tok::Eq) => (Op::Equal(self.value()?), false),
            Some(Tok::Ne) => (Op::Equal(self.value()?), true),
            Some(Tok::Word(w)) => {
                let negate = w == "not" || (w == "is" && self.peek_word(0, "not"));
                let w = if w == "not" { self.value()? } else { w };
                if negate && w == "is" {
                    self.at += 1;
                }
                match w.as_str() {
                    "is" if self.value()? == "empty" => (Op::IsEmpty, negate),
                    "contains" => (Op::Contains(self.value()?), negate),
                    "matches" => {
                        let re = self.value()?;
                        let re = Regex::new(&re).map_err(FilterError::Regex)?;
                        (Op::Matches(re), negate)
                    }
                    _ => return Err(FilterError::UnknownOperator(w)),
                }
            }
            t => return Err(expected("an operator", t)),
        };
        Ok(Expr::Match {
            selector,
            op,
            negate,
        })
    }
}

/// A selector's value on an instance.
enum Val<'a> {
    Str(Option<&'a str>),
    List(Vec<&'a str>),
    Map(Vec<&'a str>),
}

impl Filter {
    pub(super) fn parse(s: &str) -> Result<Filter, FilterError> {
        let mut p = Parser {
            toks: tokens(s)?,
            at: 0,
        };
        let e = p.or()?;
        if p.at != p.toks.len() {
            return Err(FilterError::Trailing(format!("{:?}", p.toks[p.at])));
        }
        Ok(Filter(e))
    }

    pub(super) fn matches(&self, i: &Instance) -> Result<bool, FilterError> {
        eval(&self.0, i)
    }
}

fn eval(e: &Expr, i: &Instance) -> Result<bool, FilterError> {
    Ok(match e {
        Expr::Or(a, b) => eval(a, i)? || eval(b, i)?,
        Expr::And(a, b) => eval(a, i)? && eval(b, i)?,
        Expr::Not(a) => !eval(a, i)?,
        Expr::Match {
            selector,
            op,
            negate,
        } => {
            let val = resolve(selector, i)?;
            let hit = match (op, &val) {
                (Op::Equal(v), Val::Str(s)) => s.unwrap_or_default() == v,
                (Op::IsEmpty, Val::Str(s)) => s.unwrap_or_default().is_empty(),
                (Op::IsEmpty, Val::List(l) | Val::Map(l)) => l.is_empty(),
                (Op::Contains(v), Val::Str(s)) => s.unwrap_or_default().contains(v.as_str()),
                (Op::Contains(v), Val::List(l) | Val::Map(l)) => l.contains(&v.as_str()),
                (Op::Matches(re), Val::Str(s)) => re.is_match(s.unwrap_or_default()),
                _ => return Err(FilterError::NotApplicable(selector.join("."))),
            };
            hit != *negate
        }
    })
}

fn resolve<'a>(selector: &[String], i: &'a Instance) -> Result<Val<'a>, FilterError> {
    let s: Vec<&str> = selector.iter().map(String::as_str).collect();
    Ok(match s.as_slice() {
        ["Service", "Meta"] => Val::Map(i.meta.keys().map(String::as_str).collect()),
        ["Service", "Meta", key @ ..] => Val::Str(i.meta.get(&key.join(".")).map(String::as_str)),
        ["Service", "Service"] => Val::Str(Some(&i.service)),
        ["Service", "ID"] => Val::Str(Some(&i.pod.id)),
        ["Service", "Tags"] => Val::List(Vec::new()),
        _ => return Err(FilterError::UnknownSelector(s.join("."))),
    })
}
