//! YAML with positions: a span-carrying node tree ([`node`]) and a serde
//! deserializer over it ([`de`]).

pub mod de;
mod fast;
pub mod node;

pub use de::{did_you_mean, from_node, DeError, DeErrorKind};
pub use node::{parse, Document, Node, Path, Seg, Style, TreeError, TreeErrorKind, Value};
