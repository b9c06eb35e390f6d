#!/usr/bin/env bash
# `meshplan rollout simulate` benchmark (issue 28), against the real test
# environment's Prometheus (scripts/env/up.sh): DAYS (default 7) of history
# for one service — Istio's request counters and latency histogram of its
# stable and canary versions, a sample every 30 s — backfilled with
# `promtool tsdb create-blocks-from openmetrics`, then one rollout replayed
# over all of it with a 1-minute analysis (volume, success rate and p99
# latency of both versions). Prints the wall time, the analyses replayed
# and the range requests sent, as Markdown for docs/benchmarks.md. Not
# part of the test suite.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# Cargo's output folder: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DAYS=${DAYS:-7}
W=${BENCH_DIR:-$TARGET/bench-simulate}
ENV_JSON=${MESHPLAN_TESTENV:-$TARGET/testenv/env.json}
[ -f "$ENV_JSON" ] || { echo "start the test environment first: scripts/env/up.sh" >&2; exit 2; }
ENV_DIR=$(dirname "$ENV_JSON")
PROM=$(python3 -c "import json; print(json.load(open('$ENV_JSON'))['prometheusUrl'])")
PROMTOOL=${MESHPLAN_PROMTOOL:-promtool}

cd "$ROOT"
cargo build --profile dist -q --bin meshplan
BIN=$TARGET/dist/meshplan
rm -rf "$W"; mkdir -p "$W/repo"
svc=sim-bench-$(date +%s)
now=$(date +%s)
# History from DAYS + 1 hours ago to 1 hour ago, on a minute.
end=$(( (now - 3600) / 60 * 60 ))
start=$(( end - DAYS * 86400 ))

t0=$(date +%s.%N)
python3 - "$svc" "$start" "$end" >"$W/history.om" <<'PY'
import sys
svc, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sel = 'reporter="destination",destination_service_name="%s",destination_service_namespace="shop",destination_version="%s"'
les = ["5", "10", "25", "50", "100", "250", "+Inf"]
# 20 requests a second per version, 0.1 % of them 500, most under 25 ms.
share = {"5": 0.2, "10": 0.5, "25": 0.9, "50": 0.97, "100": 0.99, "250": 0.999, "+Inf": 1.0}
out = sys.stdout
for v in ("v1", "v2"):
    s = sel % (svc, v)
    for code, rate in (("200", 19.98), ("500", 0.02)):
        for i, t in enumerate(range(start, end + 1, 30)):
            out.write(f'istio_requests_total{{{s},response_code="{code}"}} {rate * 30 * i:.2f} {t}\n')
    for le in les:
        for i, t in enumerate(range(start, end + 1, 30)):
            out.write(f'istio_request_duration_milliseconds_bucket{{{s},le="{le}"}} {20 * share[le] * 30 * i:.2f} {t}\n')
out.write("# EOF\n")
PY
mkdir -p "$W/blocks"
"$PROMTOOL" tsdb create-blocks-from openmetrics "$W/history.om" "$W/blocks" >/dev/null
# On the data directory's file system, then renamed in.
data=$ENV_DIR/prometheus/data
staging=$(mktemp -d "$ENV_DIR/bench-blocks.XXXX")
cp -r "$W/blocks/." "$staging/"
for b in "$staging"/*/; do mv "$b" "$data/"; done
rmdir "$staging"
t1=$(date +%s.%N)
probe="sum(istio_requests_total{destination_service_name=\"$svc\"})"
until curl -sf "$PROM/api/v1/query" --data-urlencode "query=$probe" --data-urlencode "time=$((start + 3600))" | grep -q '"value"'; do sleep 2; done
t2=$(date +%s.%N)

cat >"$W/repo/meshplan.yaml" <<EOF
apiVersion: meshplan.dev/v1alpha1
kind: MeshplanConfig
targets: [istio]
defaultNamespace: shop
metrics: { url: "$PROM" }
EOF
cat >"$W/repo/svc.yaml" <<EOF
apiVersion: meshplan.dev/v1alpha1
kind: ServiceIntent
metadata: { name: $svc }
spec:
  ports: [{ name: http, port: 80, protocol: http }]
  versions:
    - { name: v1, labels: { app: $svc, version: v1 } }
    - { name: v2, labels: { app: $svc, version: v2 } }
  rollout:
    stable: v1
    canary: v2
    # Long pauses: the rollout is analysed every minute of the period.
    steps: [{ weight: 10, pause: $((DAYS + 1))d }, { weight: 100 }]
    analysis:
      interval: 1m
      minRequestVolume: 100
      successRate: { min: 99, maxDropVsStable: 0.5 }
      latency: { percentile: 99, max: 500ms, maxRatioVsStable: 1.5 }
EOF
s0=$(date +%s.%N)
"$BIN" rollout simulate "$svc" --repo "$W/repo" --from "$start" --to "$end" --format json >"$W/simulation.json"
s1=$(date +%s.%N)

echo "Run: $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/model name/ { $1=$2=$3=""; print; exit }' /proc/cpuinfo | sed 's/^ *//'), Prometheus $(prometheus --version 2>&1 | awk 'NR == 1 { print $3 }') on loopback; $DAYS days of history (16 series, a sample every 30 s)."
echo
python3 - "$W/simulation.json" "$s0" "$s1" "$t0" "$t1" "$t2" "$DAYS" <<'PY'
import json, sys
sim = json.load(open(sys.argv[1]))
s0, s1, t0, t1, t2, days = map(float, sys.argv[2:])
analyses = sum(e["count"] for e in sim["events"] if e["kind"] == "analyses")
print("| measurement | meshplan | target |")
print("|---|---|---|")
print(f"| `rollout simulate` over {days:.0f} days of 1-minute analysis (s, wall) | {s1 - s0:.2f} | under 5 s |")
print(f"| analyses replayed | {analyses} | {int(days * 1440)} |")
print(f"| range requests to Prometheus (distinct queries) | {sim['requests']} ({len(sim['queries'])}) | |")
print(f"| outcome at the end | {sim['outcome']} (canary at {sim['weight']} %) | Progressing (the pause outlasts the period) |")
print(f"| backfill: promtool blocks made and moved in (s) / until Prometheus loaded them (s) | {t1 - t0:.1f} / {t2 - t1:.1f} | |")
PY
