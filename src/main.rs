//! The `meshplan` command. Wiring only: arguments and commands live in the
//! library (`meshplan::cli`).

use std::process::ExitCode;

use clap::Parser;

// Compiling allocates and frees many small JSON trees; glibc's allocator
// spends about 40 % of render time in free() (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = meshplan::cli::Cli::parse();
    meshplan::cli::run(args)
}
