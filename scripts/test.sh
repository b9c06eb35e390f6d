#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Installs what it needs, then: rustfmt, clippy (-D warnings), and every test
# of the workspace, including the bounded property-based fuzzing of
# load + check and the golden diagnostics.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

# Upstream CRD schemas (see ../shared/crds/PROVENANCE.md).
export MESHPLAN_CRDS="${MESHPLAN_CRDS:-$(cd .. && pwd)/shared/crds}"
# Golden tests compare; they never rewrite snapshots here.
export INSTA_UPDATE=no
# Bounded fuzzing: cases per property (see policy-lang/tests/fuzz.rs).
export PROPTEST_CASES="${PROPTEST_CASES:-512}"

step "toolchain"
if ! command -v cargo >/dev/null; then
    echo "error: cargo is not installed: install the Rust toolchain with rustup" >&2
    exit 2
fi
for component in clippy rustfmt; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
cargo --version

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

step "done"
