//! Diagnostics as data.
//!
//! Every problem meshplan finds is a [`Diagnostic`]: a stable code, a
//! severity, a message naming the broken rule, the `file:line:col` of the
//! offending node, and a hint where one helps. Rendering is separate
//! ([`human`], [`json`], [`sarif`]) so the same data serves a terminal, a CI
//! log and code scanning.

pub mod human;
pub mod json;
pub mod sarif;

use std::fmt;

use crate::source::Location;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// meshplan's own diagnostic codes. Rule violations carry their rule's code
/// instead (`MPR…` for built-in rules, `policy/rule` for an organisation's).
///
/// Codes are stable: once released, a code keeps its meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    Io,
    YamlSyntax,
    UnknownField,
    WrongType,
    MissingField,
    UnknownValue,
    InvalidValue,
    DuplicateKey,
    UnknownKind,
    UnsupportedApiVersion,
    DuplicateName,
    UnknownReference,
    InvalidName,
    OutOfRange,
    Conflict,
    CelSyntax,
    CelUnknownVariable,
    CelUnknownFunction,
    CelEvaluation,
    CelNotBool,
    CelBudget,
    SchemaViolation,
    ShadowedRoute,
    RouteOrder,
    MtlsOutsideMesh,
    RedundantAllow,
    NoMetricSource,
    NotABucket,
    TargetUnsupported,
    CiliumL7Widening,
    SelectorOverlap,
    NoMetricsFlavor,
}

impl Code {
    pub const ALL: [Code; 32] = [
        Code::Io,
        Code::YamlSyntax,
        Code::UnknownField,
        Code::WrongType,
        Code::MissingField,
        Code::UnknownValue,
        Code::InvalidValue,
        Code::DuplicateKey,
        Code::UnknownKind,
        Code::UnsupportedApiVersion,
        Code::DuplicateName,
        Code::UnknownReference,
        Code::InvalidName,
        Code::OutOfRange,
        Code::Conflict,
        Code::CelSyntax,
        Code::CelUnknownVariable,
        Code::CelUnknownFunction,
        Code::CelEvaluation,
        Code::CelNotBool,
        Code::CelBudget,
        Code::SchemaViolation,
        Code::ShadowedRoute,
        Code::RouteOrder,
        Code::MtlsOutsideMesh,
        Code::RedundantAllow,
        Code::NoMetricSource,
        Code::NotABucket,
        Code::TargetUnsupported,
        Code::CiliumL7Widening,
        Code::SelectorOverlap,
        Code::NoMetricsFlavor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "MP1000",
            Code::YamlSyntax => "MP1001",
            Code::UnknownField => "MP1002",
            Code::WrongType => "MP1003",
            Code::MissingField => "MP1004",
            Code::UnknownValue => "MP1005",
            Code::InvalidValue => "MP1006",
            Code::DuplicateKey => "MP1007",
            Code::UnknownKind => "MP1008",
            Code::UnsupportedApiVersion => "MP1009",
            Code::DuplicateName => "MP2001",
            Code::UnknownReference => "MP2002",
            Code::InvalidName => "MP2003",
            Code::OutOfRange => "MP2004",
            Code::Conflict => "MP2005",
            Code::CelSyntax => "MP3001",
            Code::CelUnknownVariable => "MP3002",
            Code::CelUnknownFunction => "MP3003",
            Code::CelEvaluation => "MP3004",
            Code::CelNotBool => "MP3005",
            Code::CelBudget => "MP3006",
            Code::SchemaViolation => "MP4001",
            Code::ShadowedRoute => "MP2006",
            Code::RouteOrder => "MP2007",
            Code::MtlsOutsideMesh => "MP2008",
            Code::RedundantAllow => "MP2009",
            Code::NoMetricSource => "MP2010",
            Code::NotABucket => "MP2011",
            Code::TargetUnsupported => "MP4002",
            Code::CiliumL7Widening => "MP2012",
            Code::SelectorOverlap => "MP2013",
            Code::NoMetricsFlavor => "MP2014",
        }
    }

    /// One line saying what the code means (SARIF rule descriptions, docs).
    pub fn title(self) -> &'static str {
        match self {
            Code::Io => "a file or directory could not be read",
            Code::YamlSyntax => "the file is not valid YAML",
            Code::UnknownField => "a field that the intent language does not have",
            Code::WrongType => "a value of the wrong type",
            Code::MissingField => "a required field is missing",
            Code::UnknownValue => "a value outside the field's allowed set",
            Code::InvalidValue => "a value that cannot be read (duration, quantity, …)",
            Code::DuplicateKey => "the same key twice in one mapping",
            Code::UnknownKind => "a document that is not a meshplan kind",
            Code::UnsupportedApiVersion => "an apiVersion meshplan does not support",
            Code::DuplicateName => "two objects or items with the same name",
            Code::UnknownReference => "a reference to something that exists nowhere",
            Code::InvalidName => "a name that is not a valid Kubernetes name",
            Code::OutOfRange => "a number outside its allowed range",
            Code::Conflict => "settings that contradict each other",
            Code::CelSyntax => "a CEL expression that does not parse",
            Code::CelUnknownVariable => "a CEL expression naming an undeclared variable",
            Code::CelUnknownFunction => "a CEL expression calling an unknown function",
            Code::CelEvaluation => "a CEL rule that failed to evaluate",
            Code::CelNotBool => "a CEL rule or match that did not return a boolean",
            Code::CelBudget => "a CEL expression over its size or cost budget",
            Code::SchemaViolation => "an emitted object breaks its CRD's schema",
            Code::ShadowedRoute => "a route an earlier route always matches first",
            Code::RouteOrder => {
                "a route the meshes order differently (first match versus most specific)"
            }
            Code::MtlsOutsideMesh => {
                "STRICT mTLS with a caller namespace that may be outside the mesh"
            }
            Code::RedundantAllow => "an allow rule that grants nothing new",
            Code::NoMetricSource => "rollout analysis with no metrics source",
            Code::NotABucket => "a latency SLO threshold that is not a histogram bucket bound",
            Code::TargetUnsupported => "a feature a chosen target cannot express",
            Code::CiliumL7Widening => {
                "an L7 allow rule that Cilium's per-port merge with an L4-only rule voids"
            }
            Code::SelectorOverlap => {
                "a pod selector that may also select another service's or version's pods"
            }
            Code::NoMetricsFlavor => "rollout analysis with no known metric names",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secondary location, e.g. the rule that an intent broke.
#[derive(Clone, Debug, PartialEq)]
pub struct Related {
    pub location: Location,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: String,
    pub severity: Severity,
    pub message: String,
    pub location: Option<Location>,
    /// Short text under the caret.
    pub label: Option<String>,
    pub hint: Option<String>,
    pub related: Vec<Related>,
}

/// Longest message, hint or label a diagnostic keeps: a message that
/// quotes what it is about (a 10 MB scalar) stays readable, and output
/// stays proportional to the number of findings, not to the input.
pub const MAX_TEXT: usize = 1_000;

/// `text`, cut at [`MAX_TEXT`] characters with what was cut said.
fn capped(text: String) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        None => text,
        Some((at, _)) => format!("{}… ({} more bytes)", &text[..at], text.len() - at),
    }
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Self::new(code.as_str(), Severity::Error, message)
    }

    pub fn new(code: impl Into<String>, severity: Severity, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            severity,
            message: capped(message.into()),
            location: None,
            label: None,
            hint: None,
            related: Vec::new(),
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(capped(label.into()));
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(capped(hint.into()));
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint.map(capped);
        self
    }

    pub fn related(mut self, location: Location, message: impl Into<String>) -> Self {
        self.related.push(Related {
            location,
            message: capped(message.into()),
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn sort_key(&self) -> (&str, u32, u32, &str, &str) {
        let (file, line, col) = match &self.location {
            Some(l) => (l.file.name.as_str(), l.span.start.line, l.span.start.col),
            None => ("", 0, 0),
        };
        (file, line, col, &self.code, &self.message)
    }
}

/// Sorts by file, position, code and message, and drops exact duplicates, so
/// output is the same whatever order files were read in.
pub fn normalize(diags: &mut Vec<Diagnostic>) {
    // Keys borrowed, not copied (60,000 warnings in a large render), and
    // a stable sort: what comes nearly sorted (by file, as compiling
    // reports it) is sorted in about one pass.
    diags.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diags.dedup();
}

/// Counts of errors and warnings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
}

impl Summary {
    pub fn of(diags: &[Diagnostic]) -> Self {
        let errors = diags.iter().filter(|d| d.is_error()).count();
        Self {
            errors,
            warnings: diags.len() - errors,
        }
    }
}
