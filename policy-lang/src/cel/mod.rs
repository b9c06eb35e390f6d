//! The CEL engine, on the `cel` crate.
//!
//! - [`compile`]: compile once at load; check references against the
//!   declared variables and the engine's functions; static size limits.
//! - [`budget`]: the runtime budget that stops what the bound let through.
//! - [`cost`]: the bound of an evaluation's work and memory, before it runs.
//! - [`eval`]: evaluate against values converted once, within a cost budget.
//! - [`fast`]: the common expressions evaluated without the interpreter.
//! - [`position`]: map a position inside an expression to `file:line:col`.

pub mod budget;
pub mod compile;
pub mod cost;
pub mod eval;
pub(crate) mod fast;
pub mod position;
pub(crate) mod ser;
pub(crate) mod view;

pub use compile::{At, Compiled, Issue};
pub use eval::{Bindings, Bound, Engine, EvalError};
pub use ser::Error as ConvertError;
