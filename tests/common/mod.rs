//! Helpers shared by the binary's tests.

use std::process::{Command, Output};

/// Runs the `meshplan` binary from the workspace root, without colour.
pub fn meshplan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshplan"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}
