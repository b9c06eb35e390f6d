#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of what reads a
# repository: the YAML reader, load + check, CEL compile + evaluate,
# render, and `diff --against` input (fuzz/fuzz_targets/).
#
#   scripts/fuzz.sh seed            # (re)writes the seed corpus, fuzz/corpus/
#   scripts/fuzz.sh run [SECONDS]   # each target for SECONDS (default 60)
#   scripts/fuzz.sh run 20 yaml cel # only these targets
#
# `run` builds with `--sanitizer none`, which works on the stable toolchain
# (safe Rust needs no AddressSanitizer; panics, hangs, stack overflows and
# memory blow-ups are what is looked for: -timeout and -rss_limit_mb turn
# the last two into failures). Each target starts from the committed seeds
# plus what earlier runs found (target/fuzz-corpus/, not committed) and
# prints its executions; any crash fails the script, its input kept under
# fuzz/artifacts/ — make it a regression test (tests/hostile.rs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Cargo's output folder: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TARGETS_ALL="yaml check cel render diff_against"

seed() {
    local c=$ROOT/fuzz/corpus
    rm -rf "$c"
    mkdir -p "$c"/{yaml,check,cel,render,diff_against}
    local n=0 f
    # Every YAML file of the project, alone.
    while IFS= read -r f; do
        n=$((n + 1))
        cp "$f" "$c/yaml/$n"
    done < <(cd "$ROOT" && find examples-repo tests/fixtures compiler/tests/cases -name '*.yaml' | sort)
    # Repositories: examples-repo whole, and each fixture folder.
    repo_seed() { # DIR OUT: meshplan.yaml, then name\0text pairs
        local dir=$1 out=$2
        { cat "$dir/meshplan.yaml" 2>/dev/null || true
          (cd "$dir" && find . -name '*.yaml' ! -path ./meshplan.yaml | sort) | while IFS= read -r f; do
              printf '\0%s\0' "${f#./}"
              cat "$dir/$f"
          done; } > "$out"
    }
    repo_seed "$ROOT/examples-repo" "$c/check/examples-repo"
    cp "$c/check/examples-repo" "$c/render/examples-repo"
    for d in "$ROOT"/tests/fixtures/*/ "$ROOT"/compiler/tests/cases/*/; do
        [ -d "$d" ] || continue
        repo_seed "$d" "$c/check/$(basename "$d")"
        cp "$c/check/$(basename "$d")" "$c/render/$(basename "$d")"
    done
    # Inputs that crashed or exhausted meshplan once (issue 27).
    printf '"\\' > "$c/yaml/crash-backslash"
    printf '"a\\' > "$c/yaml/crash-quoted-backslash"
    printf '{!,' > "$c/yaml/crash-tag-map"
    printf '[!,' > "$c/yaml/crash-tag-seq"
    printf '{!a,' > "$c/yaml/crash-named-tag"
    head -c 300 /dev/zero | tr '\0' '[' > "$c/yaml/deep-brackets"
    printf 'a: &a [1, 2]\nb: [*a, *a, *a]\n' > "$c/yaml/aliases"
    # CEL: each rule of the example policies, on each example intent.
    local rules intent i=0
    rules=$(cd "$ROOT" && grep -h -E '^\s+(rule|match): ' examples-repo/policies/*.yaml | sed -E 's/^\s+(rule|match): //')
    intent=$(cat "$ROOT/examples-repo/bookinfo/reviews.yaml")
    while IFS= read -r r; do
        i=$((i + 1))
        printf '%s\0%s' "$r" "$intent" > "$c/cel/rule-$i"
    done <<< "$rules"
    printf '%s\0%s' "lists.range(1000000).all(a, lists.range(1000000).all(b, a + b >= 0))" "$intent" > "$c/cel/budget-ranges"
    printf '%s\0%s' "intent.metadata.name.replace('e', 'eeeeeeeeee').replace('e', 'eeeeeeeeee') != ''" "$intent" > "$c/cel/budget-replace"
    printf '%s\0%s' "$(head -c 60 /dev/zero | tr '\0' '(')true$(head -c 60 /dev/zero | tr '\0' ')')" "$intent" > "$c/cel/deep-parens"
    # diff --against: a rendered tree's objects.
    (cd "$ROOT" && cargo run -q --bin meshplan -- render examples-repo --mesh istio) > "$c/diff_against/istio"
    (cd "$ROOT" && cargo run -q --bin meshplan -- render examples-repo --mesh linkerd --format json) > "$c/diff_against/linkerd-json"
    echo "seeds: $(find "$c" -type f | wc -l) files in fuzz/corpus/" >&2
}

run() {
    local seconds=${1:-60}
    shift || true
    local targets=${*:-$TARGETS_ALL}
    if ! cargo fuzz --version >/dev/null 2>&1; then
        cargo install --locked cargo-fuzz
    fi
    cd "$ROOT/fuzz"
    local failed=0 t
    for t in $targets; do
        local corpus=$TARGET/fuzz-corpus/$t
        mkdir -p "$corpus" "$ROOT/fuzz/artifacts/$t"
        printf '== %s: %ss\n' "$t" "$seconds" >&2
        if ! CARGO_TARGET_DIR=$TARGET/fuzz cargo fuzz run --sanitizer none -O "$t" \
            "$corpus" "$ROOT/fuzz/corpus/$t" -- \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -max_len=262144 -print_final_stats=1 2> "$TARGET/fuzz-$t.log"; then
            failed=1
            tail -n 40 "$TARGET/fuzz-$t.log" >&2
        fi
        grep -E 'stat::number_of_executed_units|^Done' "$TARGET/fuzz-$t.log" | sed "s/^/$t: /" >&2 || true
    done
    return "$failed"
}

case "${1:-}" in
    seed) seed ;;
    run) shift; run "$@" ;;
    *) echo "usage: scripts/fuzz.sh seed | run [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
