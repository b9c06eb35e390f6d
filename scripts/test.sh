#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Installs what it needs (Debian packages; kube-apiserver built from Debian's
# source package and cached in ~/.cache/meshplan), starts the test
# environment (scripts/env/up.sh: kube-apiserver + etcd, Prometheus, Git
# servers), then: rustfmt, clippy (-D warnings), and every test of the
# workspace — the tests against the real services included, never skipped —
# and stops the environment, printing its logs if anything failed.
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

# A one-off build gains nothing from incremental caches, which would double
# the disk the build takes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "toolchain"
df -h . | sed 's/^/disk: /'
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

step "install (scripts/env/install.sh)"
scripts/env/install.sh

step "rustfmt"
cargo fmt --all -- --check
# The fuzz crate is its own workspace (fuzz/Cargo.toml).
(cd fuzz && cargo fmt -- --check)

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "start the test environment (scripts/env/up.sh)"
export MESHPLAN_ENV_DIR="${MESHPLAN_ENV_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/testenv}"
MESHPLAN_TESTENV=$(scripts/env/up.sh)
export MESHPLAN_TESTENV
status=1
finish() {
    if [ "$status" != 0 ]; then
        for f in "$MESHPLAN_ENV_DIR"/logs/*.log; do
            [ -f "$f" ] || continue
            printf '\n----- %s (last 40 lines) -----\n' "$f"
            tail -n 40 "$f"
        done
    fi
    scripts/env/down.sh "$MESHPLAN_ENV_DIR"
}
trap finish EXIT

step "tests"
cargo test --workspace --locked

# The binary meshplan ships is built with its own profile (`dist`): its
# panic strategy, among others, is not the tests'. The hostile inputs run
# against it too (issue 27).
step "hostile inputs against the dist binary"
cargo build --profile dist --locked -q --bin meshplan
MESHPLAN_BIN="${CARGO_TARGET_DIR:-$PWD/target}/dist/meshplan" cargo test --locked -q --test hostile

# Coverage-guided fuzzing, each target for a bounded time (docs/testing.md).
step "fuzzing (scripts/fuzz.sh run 20)"
scripts/fuzz.sh run 20

status=0
step "done"
