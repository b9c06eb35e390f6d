//! The `meshplan` command. Wiring only: arguments and commands live in the
//! library (`meshplan::cli`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = meshplan::cli::Cli::parse();
    meshplan::cli::run(args)
}
