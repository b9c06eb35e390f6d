#!/usr/bin/env bash
# End-to-end reconcile benchmark (issue 5), against the real test
# apiserver (scripts/env/up.sh), for a generated repository of N services
# (default 1,000; about 5,000 Istio objects):
#
#   first sync     meshplan apply            vs  kubectl apply --server-side -R -f
#                  (same rendered objects, in a second set of namespaces)
#   no-op resync   meshplan run: a reconcile that finds nothing to do
#                  (duration from its metrics; write calls counted on the
#                  apiserver's own request metrics)
#   commit→applied meshplan run on a folder: a saved file until the object
#                  changes in the cluster (seen by a kubectl watch)
#   drift healed   a kubectl patch until the object is back
#   RSS            peak RSS of meshplan run managing the objects
#
# Run it on a fresh environment (scripts/env/down.sh; scripts/env/up.sh):
# meshplan lists the objects wearing its label cluster-wide, so the
# objects of earlier runs would be counted in.
#
# BASE=PATH runs it twice, for that build (an earlier commit's `dist`
# binary) and then for this one, each on a fresh environment it starts
# itself (down.sh, up.sh), and prints both side by side with their ratio
# (this build over BASE); each run's own kubectl is there too, to show how
# much the machine drifted between the runs.
#
# Prints Markdown for docs/benchmarks.md. Not part of the test suite.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# Cargo's output folder: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
N=${N:-1000}
W=${BENCH_DIR:-$TARGET/bench-reconcile}

if [ -n "${BASE:-}" ]; then
    (cd "$ROOT" && cargo build --profile dist -q --bin meshplan)
    mkdir -p "$W"
    for who in base this; do
        bin=$BASE
        [ "$who" = this ] && bin=$TARGET/dist/meshplan
        "$ROOT"/scripts/env/down.sh >/dev/null 2>&1 || true
        "$ROOT"/scripts/env/up.sh >"$W/up-$who.log" 2>&1 || { cat "$W/up-$who.log" >&2; exit 1; }
        echo "== $who: $bin" >&2
        BASE='' MESHPLAN_BIN=$bin "$0" | tee "$W/result-$who.md" >&2
    done
    "$ROOT"/scripts/env/down.sh >/dev/null 2>&1 || true
    grep '^Run:' "$W/result-this.md"
    echo
    echo "| measurement | this build | BASE | this / BASE |"
    echo "|---|---|---|---|"
    # Rows by name: the meshplan column of each run, and the first sync's
    # kubectl column as a row of its own.
    awk -F' [|] ' '
        FNR == 1 { run++ }
        /^[|] / && $2 !~ /^(meshplan|---)/ {
            # Keyed without numbers: a row may name its count of samples.
            name = substr($1, 3); key = name; gsub(/[0-9]+/, "#", key)
            if (run == 1) { base[key] = $2; kb[key] = $3; next }
            ratio = ($2 + 0 > 0 && base[key] + 0 > 0 && $2 ~ /^[0-9.]+$/) ? sprintf("%.2f", $2 / base[key]) : ""
            printf "| %s | %s | %s | %s |\n", name, $2, base[key], ratio
            if (name ~ /^first sync/) printf "| the same run'"'"'s kubectl apply --server-side (s) | %s | %s | %.2f |\n", $3, kb[key], $3 / kb[key]
        }' "$W/result-base.md" "$W/result-this.md"
    exit 0
fi

ENV_JSON=${MESHPLAN_TESTENV:-$TARGET/testenv/env.json}
[ -f "$ENV_JSON" ] || { echo "start the test environment first: scripts/env/up.sh" >&2; exit 2; }
ENV_DIR=$(dirname "$ENV_JSON")
export KUBECONFIG=$ENV_DIR/admin.kubeconfig
SA=$ENV_DIR/sa.kubeconfig
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

cd "$ROOT"
# MESHPLAN_BIN: another build's binary (BASE above).
[ -n "${MESHPLAN_BIN:-}" ] || cargo build --profile dist -q --bin meshplan
cargo build --profile dist -q -p meshplan-policy-lang --example generate
BIN=${MESHPLAN_BIN:-$TARGET/dist/meshplan}
mkdir -p "$W"
repo=$W/repo-$N
rm -rf "$repo" "$W/rendered" "$W/kubectl"
"$TARGET"/dist/examples/generate "$N" "$repo" 2>/dev/null
# Without the rollout blocks (the same 5 objects per service): a canary
# started by `run` moves weights and stores its state, which is the
# rollout benchmark's business (scripts/bench/rollouts.sh), not a resync's.
find "$repo" -path '*/team-*' -name '*.yaml' -exec sh -c \
    'awk "/^  rollout:/ { skip = 1; next } skip && /^  [^ ]/ { skip = 0 } !skip" "$1" >"$1.tmp" && mv "$1.tmp" "$1"' _ {} \;
# Namespaces of this run only, so the first sync is a first sync.
tag=b$(date +%s)
find "$repo" -name '*.yaml' -exec sed -i "s/^  namespace: team-/  namespace: $tag-team-/" {} +
(cd "$repo" && git init -q && git add -A && git -c user.name=bench -c user.email=bench@invalid commit -qm bench)
"$BIN" render "$repo" --mesh istio --unsupported warning --out "$W/rendered" 2>/dev/null
objects=$(find "$W/rendered" -name '*.yaml' | wc -l)

# kubectl gets the same objects in namespaces of its own.
cp -r "$W/rendered" "$W/kubectl"
# Without meshplan's ownership label: kubectl's copies are not meshplan's.
find "$W/kubectl" -name '*.yaml' -exec sed -i -e "s/^  namespace: $tag-/  namespace: kb-$tag-/" \
    -e '/^    app.kubernetes.io\/managed-by: meshplan$/d' {} +
namespaces=$(cd "$W/rendered" && ls -d "$tag"-team-* | tr '\n' ' ')
for ns in $namespaces; do printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: kb-%s\n' "$ns" "$ns"; done \
    | kubectl apply --server-side --field-manager=bench -f - >/dev/null

# A kube-apiserver that has just started spends its first minute or two on
# its own work (the OpenAPI of every installed CRD): whichever tool ran
# then would share the cores with it. Neither is timed until the server is
# idle (under a tenth of a core over 5 s).
settle() {
    local pid ticks a b waited=0
    pid=$(cat "$ENV_DIR/pids/kube-apiserver.pid")
    ticks=$(getconf CLK_TCK)
    while [ "$waited" -lt 300 ]; do
        a=$(awk '{ print $14 + $15 }' "/proc/$pid/stat"); sleep 5
        b=$(awk '{ print $14 + $15 }' "/proc/$pid/stat"); waited=$((waited + 5))
        [ $(((b - a) * 100 / ticks)) -lt 50 ] && break
    done
    echo "API server idle after ${waited}s" >&2
}
settle

timed() { /usr/bin/time -o "$W/time.txt" -f '%e %M' "$@" >"$W/out.txt" 2>&1 || { cat "$W/out.txt" >&2; exit 1; }; tail -1 "$W/time.txt"; }
inv=meshplan-system/bench-$N-$RANDOM

read -r k_s k_rss < <(timed kubectl apply --server-side --field-manager=bench -R -f "$W/kubectl")
settle
read -r m_s m_rss < <(timed "$BIN" apply "$repo" --mesh istio --unsupported warning --kubeconfig "$SA" --inventory "$inv")
read -r r_s r_rss < <(timed "$BIN" apply "$repo" --mesh istio --unsupported warning --kubeconfig "$SA" --inventory "$inv")

writes() { kubectl get --raw /metrics | awk '/^apiserver_request_total/ && /verb="(PATCH|POST|PUT|DELETE|APPLY)"/ { s += $NF } END { printf "%d\n", s }'; }

# The API server writes by itself (endpoint and lease upkeep): count its
# writes over an idle window as long as the resync window below.
i0=$(writes); sleep 10.5; i1=$(writes); idle_writes=$((i1 - i0))

# meshplan run on the folder.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" run "$repo" --mesh istio --unsupported warning --kubeconfig "$SA" --inventory "$inv" \
    --interval 2s --listen "127.0.0.1:$port" 2>"$W/run.log" &
run_pid=$!
trap 'kill $run_pid 2>/dev/null || true' EXIT
metric() { curl -s "127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
until [ "$(metric 'meshplan_reconciles_total{result="unchanged"}' 2>/dev/null || echo 0)" -ge 1 ] 2>/dev/null; do sleep 0.2; done
# No-op resyncs: five intervals, reconcile durations from the histogram.
c0=$(metric meshplan_reconcile_duration_seconds_count); s0=$(metric meshplan_reconcile_duration_seconds_sum); w0=$(writes)
sleep 10.5
c1=$(metric meshplan_reconcile_duration_seconds_count); s1=$(metric meshplan_reconcile_duration_seconds_sum); w1=$(writes)
noop_ms=$(awk -v a="$s0" -v b="$s1" -v c="$c0" -v d="$c1" 'BEGIN { printf "%.0f", (b - a) / (d - c) * 1000 }')
noop_n=$((c1 - c0))
noop_writes=$((w1 - w0))

# Commit (a saved file) to applied, and drift healed: each the median of
# ROUNDS edits (a single edit's latency varies by a fifth from run to run).
ROUNDS=${LATENCY_ROUNDS:-5}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ms_since() { awk -v a="$1" -v b="$(cat "$2")" 'BEGIN { printf "%.0f\n", (b - a) * 1000 }'; }
f=$repo/team-1/svc-1.yaml
ns=$(awk '/namespace:/ { print $2; exit }' "$f")
timeout_of() { kubectl get vs -n "$ns" svc-1 -o jsonpath='{.spec.http[0].timeout}'; }
# Writes the time to $1 once the watch shows the timeout $3 (after $2,
# when given). A watch prints every change at once; it is left to its
# timeout.
watch_for() {
    : >"$1"
    ( timeout 60 kubectl get vs -n "$ns" svc-1 -w -o jsonpath='{.spec.http[0].timeout}{"\n"}' 2>/dev/null \
        | while read -r line; do
            if [ -n "$2" ] && [ "$line" = "$2" ]; then seen=1; continue; fi
            if [ "$line" = "$3" ] && { [ -z "$2" ] || [ "${seen:-}" = 1 ]; }; then date +%s.%N >"$1"; break; fi
          done ) &
    sleep 1
}
cur=$(timeout_of)
commits=() heals=()
for i in $(seq "$ROUNDS"); do
    next="$((6 + i))s"
    watch_for "$W/applied.txt" "" "$next"
    t0=$(date +%s.%N)
    sed -i "s/timeout: $cur/timeout: $next/" "$f"
    until [ -s "$W/applied.txt" ]; do sleep 0.01; done
    commits+=("$(ms_since "$t0" "$W/applied.txt")")
    cur=$next
    # Drift: the timeout edited by hand until meshplan puts it back.
    watch_for "$W/healed.txt" 99s "$cur"
    t0=$(date +%s.%N)
    kubectl patch vs -n "$ns" svc-1 --type=json -p '[{"op":"replace","path":"/spec/http/0/timeout","value":"99s"}]' >/dev/null
    until [ -s "$W/healed.txt" ]; do sleep 0.01; done
    heals+=("$(ms_since "$t0" "$W/healed.txt")")
done
commit_ms=$(printf '%s\n' "${commits[@]}" | median)
heal_ms=$(printf '%s\n' "${heals[@]}" | median)
rss_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$run_pid/status")
kill -TERM $run_pid; wait $run_pid || true

echo "Run: $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/model name/ { $1=$2=$3=""; print; exit }' /proc/cpuinfo | sed 's/^ *//'), $N services, $objects Istio objects, kube-apiserver 1.20.2 + etcd on loopback."
echo
echo "| measurement | meshplan | kubectl apply --server-side | ratio |"
echo "|---|---|---|---|"
awk -v m="$m_s" -v k="$k_s" -v mr="$m_rss" -v kr="$k_rss" 'BEGIN { printf "| first sync of %s objects (s) | %.2f | %.2f | %.1f× faster |\n| peak RSS of that run (MiB) | %.0f | %.0f | |\n", "'"$objects"'", m, k, k / m, mr / 1024, kr / 1024 }'
awk -v r="$r_s" 'BEGIN { printf "| no-op `meshplan apply` (whole process: check, compile, list, plan) (s) | %.2f | | |\n", r }'
echo "| no-op resync in \`meshplan run\` (ms, mean of $noop_n) | $noop_ms | | |"
echo "| write calls the API server saw during those resyncs (and in as long an idle window, without meshplan) | $noop_writes ($idle_writes idle) | | |"
echo "| saved file → applied, local watch (ms, median of $ROUNDS) | $commit_ms | | |"
echo "| kubectl edit → healed (ms, median of $ROUNDS) | $heal_ms | | |"
awk -v r="$rss_kib" 'BEGIN { printf "| peak RSS of `meshplan run` managing them (MiB) | %.0f | | |\n", r / 1024 }'
