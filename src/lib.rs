//! The `meshplan` command-line interface: argument parsing and the
//! commands, on top of the library crates (policy-lang → compiler →
//! reconciler).

pub mod cli;
