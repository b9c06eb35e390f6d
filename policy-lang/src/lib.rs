//! meshplan's intent language.
//!
//! Everything about *reading* intents, without Kubernetes or a network:
//! the types users write ([`intent`]), span-aware YAML loading ([`yaml`],
//! [`parse`]), diagnostics as data ([`diagnostic`]), the CEL engine
//! ([`cel`]) and the checks run by `meshplan check` ([`check`]).

pub mod cel;
pub mod check;
pub mod diagnostic;
pub mod generate;
pub mod intent;
pub mod parse;
pub mod resolve;
pub mod schema;
pub mod source;
pub mod yaml;

pub use diagnostic::{Code, Diagnostic, Severity};
pub use source::{Location, Pos, SourceFile, Span};

use std::path::PathBuf;

/// Errors that stop the whole run (exit code 2); everything else about the
/// input is a [`Diagnostic`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
}
