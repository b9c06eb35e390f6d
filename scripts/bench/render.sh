#!/usr/bin/env bash
# End-to-end render benchmark (issue 3), on one core, the median of
# ROUNDS runs each:
#   meshplan render REPO --mesh M             (check + compile + YAML stream)
#   meshplan render REPO --mesh M --out DIR   (the same, one file per object)
# with the binary meshplan ships (scripts/build-dist.sh: profile `dist` with
# profile-guided optimisation), the YAML stream also with the plain `dist`
# build (what `cargo install` gives; PGO=0 measures that one only),
# beside the peer users run today to build rendered objects from files:
#   kubectl kustomize DIR   (a kustomization listing every rendered file)
# for generated repositories of 1,000 and 10,000 services. Prints a
# Markdown table (seconds, objects/s, peak RSS) for docs/benchmarks.md.
# BASE=PATH also times another build (an earlier commit's, to hold a
# change to "no more than 10 % slower") in the same run, each of its
# medians right after this build's, and prints the ratio. Not part of the test suite.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# Cargo's output folder: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
W=${BENCH_DIR:-$TARGET/bench-render}
# Rendered trees go to tmpfs when there is one: on ext4, creating 50,000
# files in a tree just deleted spends most of its time in the kernel's
# inode allocator (recently_deleted), which measures the disk, not us.
OUT=${BENCH_OUT:-$( [ -d /dev/shm ] && echo /dev/shm/meshplan-bench-render || echo "$W")}
# kubectl kustomize of 10,000 services takes about 15 minutes: only run the
# peer up to this many services.
PEER_MAX=${PEER_MAX:-1000}
SIZES=${SIZES:-"1000 10000"}
MESHES=${MESHES:-"istio gateway-api linkerd"}
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
command -v kubectl >/dev/null || { echo "kubectl is missing: run scripts/env/install.sh" >&2; exit 2; }

cd "$ROOT"
cargo build --profile dist -q -p meshplan-policy-lang --example generate
PLAIN=$(PGO=0 scripts/build-dist.sh)
# BIN=PATH times an already built binary (e.g. target/pgo/meshplan from an
# earlier build-dist.sh) instead of building one.
if [ -z "${BIN:-}" ]; then
    BIN=$PLAIN
    [ "${PGO:-1}" = 0 ] || BIN=$(scripts/build-dist.sh)
fi
GEN=$TARGET/dist/examples/generate
mkdir -p "$W" "$OUT"

# timed CMD...: runs CMD pinned to one core; prints "seconds rss_kib".
timed() {
    /usr/bin/time -o "$W/time.txt" -f '%e %M' taskset -c 0 "$@" >/dev/null 2>&1
    tail -1 "$W/time.txt"
}

# warm REPO BIN: reads the repository's files and the binary into the page
# cache. This VM's kernel evicts cold file pages within a minute even with
# gigabytes free (measured on 2026-11-23: ~25 of the 10,000 intent files a
# second), so an unwarmed run partly measures the virtual disk.
warm() {
    find "$1" -type f -print0 | xargs -0 cat >/dev/null
    cat "$2" >/dev/null
}

# median REPO CMD...: runs CMD ROUNDS times with `timed`, the repository
# warmed before each (a shared VM's runs of one binary vary by up to a
# third); prints the median and the fastest seconds and the largest peak
# RSS.
ROUNDS=${ROUNDS:-5}
median() {
    local repo=$1 s=() rss=0 t r
    shift
    for _ in $(seq "$ROUNDS"); do
        [ -n "${BEFORE:-}" ] && eval "$BEFORE"
        warm "$repo" "$1"
        read -r t r < <(timed "$@")
        s+=("$t")
        [ "$r" -gt "$rss" ] && rss=$r
    done
    printf '%s\n' "${s[@]}" | sort -n | awk -v rss="$rss" '{a[NR] = $1} END {print a[int((NR + 1) / 2)], a[1], rss}'
}

base_rows=()
echo "| services | mesh | objects | render to stdout, median / fastest (s) | objects/s (median) | the same without PGO (s) | render --out, median / fastest (s) | peak RSS (MiB) | kubectl kustomize (s) | kustomize peak RSS (MiB) | ratio (kustomize / --out median) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for n in $SIZES; do
    repo="$W/repo-$n"
    [ -d "$repo" ] || "$GEN" "$n" "$repo" 2>/dev/null
    for mesh in $MESHES; do
        out="$OUT/out-$n-$mesh"
        rm -rf "$out"
        # Warm the page cache once, then measure: the YAML stream to
        # /dev/null (render's default output), and a tree of files.
        "$BIN" render "$repo" --mesh "$mesh" --unsupported warning --out "$out" >/dev/null 2>&1
        read -r s_s s_min s_rss < <(median "$repo" "$BIN" render "$repo" --mesh "$mesh" --unsupported warning)
        plain=—
        if [ "$BIN" != "$PLAIN" ]; then
            read -r p_s p_min _ < <(median "$repo" "$PLAIN" render "$repo" --mesh "$mesh" --unsupported warning)
            plain="$p_s / $p_min"
        fi
        if [ -n "${BASE:-}" ]; then
            read -r b_s b_min _ < <(median "$repo" "$BASE" render "$repo" --mesh "$mesh" --unsupported warning)
            base_rows+=("| $n | $mesh | $s_s / $s_min | $b_s / $b_min | $(awk -v a="$s_s" -v b="$b_s" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') |")
        fi
        read -r m_s m_min m_rss < <(BEFORE="rm -rf '$out'" median "$repo" "$BIN" render "$repo" --mesh "$mesh" --unsupported warning --out "$out")
        objects=$(find "$out" -name '*.yaml' | wc -l)
        files=$(cd "$out" && find . -name '*.yaml' | sort | sed 's|^\./|- |')
        printf 'resources:\n%s\n' "$files" >"$out/kustomization.yaml"
        if [ "$n" -le "$PEER_MAX" ]; then
            kubectl kustomize "$out" >/dev/null
            read -r k_s k_rss < <(timed kubectl kustomize "$out")
        else
            k_s=0 k_rss=0
        fi
        [ "$m_rss" -gt "$s_rss" ] && s_rss=$m_rss
        awk -v n="$n" -v mesh="$mesh" -v o="$objects" -v ss="$s_s" -v sm="$s_min" -v plain="$plain" -v ms="$m_s" -v mm="$m_min" -v mr="$s_rss" -v ks="$k_s" -v kr="$k_rss" 'BEGIN {
            ops = (ss > 0) ? o / ss : 0
            if (ks > 0)
                printf "| %d | %s | %d | %.2f / %.2f | %.0f | %s | %.2f / %.2f | %.0f | %.2f | %.0f | %.1f× |\n", n, mesh, o, ss, sm, ops, plain, ms, mm, mr / 1024, ks, kr / 1024, (ms > 0 ? ks / ms : 0)
            else
                printf "| %d | %s | %d | %.2f / %.2f | %.0f | %s | %.2f / %.2f | %.0f | not run | | |\n", n, mesh, o, ss, sm, ops, plain, ms, mm, mr / 1024
        }'
        rm -rf "$out"
    done
done
if [ -n "${BASE:-}" ]; then
    echo
    echo "| services | mesh | this build, median / fastest (s) | BASE, median / fastest (s) | this / BASE (median) |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${base_rows[@]}"
fi
