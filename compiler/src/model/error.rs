//! Why a model cannot answer.
//!
//! A model reads emitted objects back as the mesh would, so its failures
//! are about those objects: [`ModelError`] names the object and carries a
//! [`Problem`], which says what about it. The readers of one field or one
//! expression do not know which object they read, so they return a bare
//! [`Problem`]; the caller that holds the object names it
//! ([`Problem::of`]), and callers in between say where inside it
//! ([`Problem::at`]).
//!
//! Messages are the ones the models have always given (tests match on
//! some of them), so each variant's text is kept as it was written at the
//! place that detects it. Unlike the CLI's errors, which anyhow prints as
//! a chain, these are read through `Display` alone (the model tests put
//! them in their reports): a variant's text includes its source's.

/// Why a model cannot answer: the objects are not what the mesh accepts,
/// or not what the model knows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{object}: {problem}")]
pub struct ModelError {
    /// `Kind namespace/name` of the object (empty when no object is at
    /// fault, as for a target without a model).
    pub object: String,
    #[source]
    pub problem: Problem,
}

/// What is wrong with an object, or with the model's reading of it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The object is not what the mesh accepts: a field absent, of the
    /// wrong type or outside its values, entries that conflict. The text
    /// says which, in the mesh's own words where it has them.
    #[error("{0}")]
    Invalid(String),
    /// The object is valid, but the mesh's answer depends on what the model
    /// does not know (a JWT, an external authorizer, IP addresses): the
    /// model declines rather than guess.
    #[error("{0}")]
    Unmodelled(String),
    /// A regular expression the mesh's engine rejects; `what` says which
    /// (the field, or the pattern).
    #[error("{what}: {source}")]
    Regex {
        what: String,
        #[source]
        source: regex::Error,
    },
    /// A duration annotation Linkerd's policy controller cannot parse.
    #[error("{0}")]
    Duration(#[from] DurationError),
    /// A Consul subset filter that does not parse, or does not apply to an
    /// instance.
    #[error("{0}")]
    Filter(#[from] FilterError),
    /// A problem inside a part of the object: `at` is where
    /// (`rules[2]`, `spec.ingress[0]`) or which part (`subset "v1"`).
    #[error("{at}: {problem}")]
    At {
        at: String,
        #[source]
        problem: Box<Problem>,
    },
    /// The target has no model (SMI).
    #[error("no model for this target")]
    NoModel,
}

impl Problem {
    pub(crate) fn invalid(message: impl Into<String>) -> Problem {
        Problem::Invalid(message.into())
    }

    pub(crate) fn unmodelled(message: impl Into<String>) -> Problem {
        Problem::Unmodelled(message.into())
    }

    pub(crate) fn regex(what: impl Into<String>, source: regex::Error) -> Problem {
        Problem::Regex {
            what: what.into(),
            source,
        }
    }

    /// This problem, found inside `at`.
    pub(crate) fn at(self, at: impl Into<String>) -> Problem {
        Problem::At {
            at: at.into(),
            problem: Box::new(self),
        }
    }

    /// This problem, found in `object` (`Kind namespace/name`).
    pub(crate) fn of(self, object: impl Into<String>) -> ModelError {
        ModelError {
            object: object.into(),
            problem: self,
        }
    }
}

/// Why a Linkerd duration (`timeout.linkerd.io/*`, `retry.linkerd.io/
/// timeout`) does not parse: `parse_duration` takes one integer and one
/// unit. Each variant holds the annotation's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0} does not contain a duration value")]
    NoValue(String),
    #[error("invalid duration `{0}`")]
    Magnitude(String),
    #[error("invalid duration unit in `{0}`")]
    Unit(String),
    #[error("duration `{0}` overflows")]
    Overflow(String),
}

/// Why a Consul filter expression does not parse, or cannot be evaluated
/// on an instance. Tokens are written as the parser debug-prints them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// `=` or `!` not followed by `=`.
    #[error("expected `{0}=`")]
    Operator(char),
    #[error("unterminated string")]
    Unterminated,
    #[error("expected `)`")]
    Unclosed,
    /// `expected` is what the grammar needs (`a value`, `a selector`, `an
    /// operator`); `found` the token there, if any.
    #[error("expected {expected}, found {found}")]
    Expected {
        expected: &'static str,
        found: String,
    },
    #[error("unknown operator `{0}`")]
    UnknownOperator(String),
    /// A `matches` pattern Go's `regexp` (and the `regex` crate) rejects.
    #[error("{0}")]
    Regex(#[source] regex::Error),
    /// Tokens after a whole expression.
    #[error("unexpected {0}")]
    Trailing(String),
    /// An operator on a selector of another type (`==` on a map).
    #[error("operator not applicable to `{0}`")]
    NotApplicable(String),
    #[error("`{0}` is not a selector of the Health API")]
    UnknownSelector(String),
}
