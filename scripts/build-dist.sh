#!/usr/bin/env bash
# Builds the release binary: profile `dist` (fat LTO, one codegen unit)
# with profile-guided optimisation (PGO), as deploy/Dockerfile ships it.
#
#   scripts/build-dist.sh            # → target/pgo/meshplan
#   PGO=0 scripts/build-dist.sh      # plain `cargo build --profile dist`
#
# 1. builds an instrumented `dist` binary (target/pgo/gen), which counts
#    how often each branch and call is taken;
# 2. runs it on a training workload: `check` and `render` (YAML, JSON, a
#    tree of files) for every mesh, on `examples-repo`, every test fixture
#    and a generated repository of TRAIN_SERVICES services;
# 3. merges the counts with the `llvm-profdata` of rustc's own LLVM version
#    (rustup's llvm-tools, else Debian's llvm-<major>, installed with
#    apt-get when missing);
# 4. builds `dist` again using them (target/pgo/use): LLVM lays out and
#    inlines for the paths the workload took;
# 5. checks that the optimised binary writes byte for byte what the
#    instrumented one wrote for the whole workload.
#
# Takes about two `dist` builds (~25 minutes on 2 cores). Prints the
# binary's path on stdout (nothing else goes there).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Cargo's output folder: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"

if [ "${PGO:-1}" = 0 ]; then
    cargo build --profile dist --locked -q --bin meshplan >&2
    echo "$TARGET/dist/meshplan"
    exit 0
fi

W=$TARGET/pgo
TRAIN_SERVICES=${TRAIN_SERVICES:-1000}
# Build for the host triple explicitly: RUSTFLAGS then apply to the binary
# only, not to build scripts and proc macros (which would be instrumented
# too, and write profiles of themselves while compiling).
HOST=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')

# llvm-profdata must read the profile format of rustc's LLVM: rustup's
# llvm-tools, else Debian's llvm-<major> (installed when missing), else
# rustup's llvm-tools installed.
profdata() {
    local tools=$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata
    local debian=/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata
    [ -x "$tools" ] && { echo "$tools"; return; }
    [ -x "$debian" ] && { echo "$debian"; return; }
    if command -v apt-get >/dev/null; then
        echo "installing llvm-$LLVM_MAJOR (llvm-profdata for rustc's LLVM $LLVM_MAJOR)" >&2
        apt-cache show "llvm-$LLVM_MAJOR" >/dev/null 2>&1 || apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "llvm-$LLVM_MAJOR" >&2 || true
        [ -x "$debian" ] && { echo "$debian"; return; }
    fi
    if command -v rustup >/dev/null && rustup component add llvm-tools >&2; then
        echo "$tools"
        return
    fi
    echo "error: no llvm-profdata for LLVM $LLVM_MAJOR: run \`rustup component add llvm-tools\`, or PGO=0 for a build without PGO" >&2
    exit 2
}
PROFDATA=$(profdata)

step() { printf '== %s\n' "$1" >&2; }

step "instrumented build (target/pgo/gen)"
rm -rf "$W/profiles"
mkdir -p "$W/profiles" "$W/train"
RUSTFLAGS="-Cprofile-generate=$W/profiles" CARGO_TARGET_DIR="$W/gen" \
    cargo build --profile dist --locked -q --target "$HOST" --bin meshplan >&2
cargo build --profile dist --locked -q -p meshplan-policy-lang --example generate >&2

# train BIN OUT: the workload, each command's stdout (and the files of
# `--out`) under OUT. Failing commands are part of it (fixtures with
# errors): their exit codes are recorded, not fatal.
train() {
    local bin=$1 out=$2 n=0 repo mesh
    rm -rf "$out"
    mkdir -p "$out"
    run() {
        n=$((n + 1))
        { "$bin" "$@" >"$out/$n.out" 2>/dev/null && echo 0 || echo $?; } >"$out/$n.rc"
    }
    local generated=$W/train/repo-$TRAIN_SERVICES
    [ -d "$generated" ] || "$TARGET/dist/examples/generate" "$TRAIN_SERVICES" "$generated" 2>/dev/null
    for repo in "$generated" examples-repo; do
        run check "$repo"
        run check "$repo" --format json
        run check "$repo" --format sarif
        for mesh in istio gateway-api linkerd; do
            run render "$repo" --mesh "$mesh" --unsupported warning
            run render "$repo" --mesh "$mesh" --unsupported warning --format json
            run render "$repo" --mesh "$mesh" --unsupported warning --out "$out/tree-$n"
        done
    done
    for repo in tests/fixtures/*/; do
        run check "$repo" --format json
        run render "$repo"
    done
}

step "training run ($TRAIN_SERVICES generated services, examples-repo, tests/fixtures)"
train "$W/gen/$HOST/dist/meshplan" "$W/train/expected"
"$PROFDATA" merge -o "$W/merged.profdata" "$W/profiles"
# Named by its content: cargo rebuilds when RUSTFLAGS change, not when a
# file they name does, so a new profile gets a new name.
profile=$W/profile-$(sha256sum "$W/merged.profdata" | cut -c1-16).profdata
rm -f "$W"/profile-*.profdata
mv "$W/merged.profdata" "$profile"

step "optimised build (target/pgo/use)"
RUSTFLAGS="-Cprofile-use=$profile" CARGO_TARGET_DIR="$W/use" \
    cargo build --profile dist --locked -q --target "$HOST" --bin meshplan >&2

step "same output as the instrumented binary"
train "$W/use/$HOST/dist/meshplan" "$W/train/actual"
diff -r -q "$W/train/expected" "$W/train/actual" >&2 || {
    echo "error: the PGO binary's output differs from the instrumented binary's (see diff -r $W/train/expected $W/train/actual)" >&2
    exit 1
}
cp "$W/use/$HOST/dist/meshplan" "$W/meshplan"
echo "$W/meshplan"
