//! The `meshplan` command. Wiring only: arguments and commands live in the
//! library (`meshplan::cli`).

use std::process::ExitCode;

use clap::Parser;

// Compiling allocates and frees many small JSON trees; with glibc's
// allocator, malloc and free were a large share of compile time, and
// mimalloc's are much cheaper (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = meshplan::cli::Cli::parse();
    if matches!(args.command, meshplan::cli::Command::Run(_)) {
        purge_freed_memory_at_once();
    }
    meshplan::cli::run(args)
}

/// mimalloc hands freed pages back to the system a second after they
/// empty, and only when their thread next allocates: right for a command
/// that ends, wrong for `meshplan run`, whose peaks (a compile, a relist)
/// are followed by long idle stretches: with no delay its peak resident
/// memory is noticeably lower (docs/benchmarks.md, "Reconcile"). The
/// option is read from the environment before
/// `main`, so the process starts itself again with it set (same process
/// ID, arguments and descriptors); a value the user set is kept.
fn purge_freed_memory_at_once() {
    use std::os::unix::process::CommandExt as _;
    const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(PURGE_DELAY).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let failed = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(PURGE_DELAY, "0")
        .exec();
    // exec returns only when it failed: run with the default.
    eprintln!("meshplan: could not restart with {PURGE_DELAY}=0 ({failed}); going on without");
}
