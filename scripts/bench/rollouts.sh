#!/usr/bin/env bash
# Progressive delivery benchmark (issue 6), against the real test
# environment (scripts/env/up.sh: kube-apiserver, Prometheus scraping the
# metrics generator every second):
#
#   N concurrent rollouts   one repository of N services (default 100),
#                           each with a canary rollout analysed every
#                           INTERVAL seconds (default 2) from Prometheus;
#                           meshplan run's CPU time and RSS over WINDOW
#                           seconds (default 60) while all of them progress
#   failure → rollback      R more services (default 5), one after the
#                           other, start failing: the time from the
#                           controller's failing verdict (the millisecond
#                           timestamp of its RollingBack log line) to the
#                           rollback's weights in the cluster (a kubectl
#                           watch), and from the error spike itself
#
# Both run twice in one invocation, side by side: Prometheus over plain HTTP,
# then the environment's second Prometheus over HTTPS (basic auth and a
# client certificate, through --http-credentials). MODES=plain or MODES=tls
# runs one.
#
# Run it on a fresh environment (scripts/env/down.sh; scripts/env/up.sh):
# meshplan watches every object wearing its label cluster-wide.
# Prints Markdown for docs/benchmarks.md. Not part of the test suite.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# Cargo's output folder: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
N=${N:-100}
INTERVAL=${INTERVAL:-2}
WINDOW=${WINDOW:-60}
W=${BENCH_DIR:-$TARGET/bench-rollouts}
ENV_JSON=${MESHPLAN_TESTENV:-$TARGET/testenv/env.json}
[ -f "$ENV_JSON" ] || { echo "start the test environment first: scripts/env/up.sh" >&2; exit 2; }
ENV_DIR=$(dirname "$ENV_JSON")
export KUBECONFIG=$ENV_DIR/admin.kubeconfig
SA=$ENV_DIR/sa.kubeconfig
json() { python3 -c "import json,sys; print(json.load(open('$ENV_JSON'))['$1'])"; }
PROM=$(json prometheusUrl)
GEN=$(json metricsUrl)

cd "$ROOT"
cargo build --profile dist -q --bin meshplan
BIN=$TARGET/dist/meshplan
bench() { # MODE: plain | tls
local mode=$1 url creds=()
M=$W/$mode
rm -rf "$M"; mkdir -p "$M/repo"
if [ "$mode" = tls ]; then
    url=$(python3 -c "import json; print(json.load(open('$ENV_JSON'))['prometheusTls']['url'])")
    python3 - "$ENV_JSON" >"$M/credentials.yaml" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
p, t = e["prometheusTls"], e["tls"]
print(f"""endpoints:
  - url: '{p['url']}'
    basicAuth: {{ username: '{p['username']}', passwordFile: '{p['passwordFile']}' }}
    tls: {{ caFile: '{t['caFile']}', certFile: '{t['clientCertFile']}', keyFile: '{t['clientKeyFile']}' }}""")
PY
    creds=(--http-credentials "$M/credentials.yaml")
else
    url=$PROM
fi
ns=bench-ro-$(date +%s)
kubectl create namespace "$ns" >/dev/null
cat >"$M/repo/meshplan.yaml" <<EOF
apiVersion: meshplan.dev/v1alpha1
kind: MeshplanConfig
targets: [istio]
defaultNamespace: $ns
metrics:
  url: $url
EOF
service() { # name, steps
    cat <<EOF
apiVersion: meshplan.dev/v1alpha1
kind: ServiceIntent
metadata:
  name: $1
spec:
  ports: [{ name: http, port: 80, protocol: http }]
  versions:
    - { name: v1, labels: { app: $1, version: v1 } }
    - { name: v2, labels: { app: $1, version: v2 } }
  rollout:
    stable: v1
    canary: v2
    steps: $2
    analysis:
      interval: ${INTERVAL}s
      failureLimit: 1
      inconclusiveLimit: 1000
      minRequestVolume: 5
      successRate: { min: 99 }
      latency: { percentile: 99, max: 500ms }
EOF
}
workloads="["
for i in $(seq 1 "$N"); do
    # Long pauses: every rollout keeps progressing through the window.
    service "svc-$i" "[{ weight: 10, pause: 2m }, { weight: 50, pause: 1h }, { weight: 100 }]" >"$M/repo/svc-$i.yaml"
    workloads+="{\"service\":\"svc-$i\",\"namespace\":\"$ns\",\"version\":\"v2\",\"rps\":20,\"errorRate\":0},"
done
R=${R:-5}
for k in $(seq 1 "$R"); do
    service "victim-$k" "[{ weight: 30, pause: 1h }, { weight: 100 }]" >"$M/repo/victim-$k.yaml"
    workloads+="{\"service\":\"victim-$k\",\"namespace\":\"$ns\",\"version\":\"v2\",\"rps\":20,\"errorRate\":0},"
done
workloads="${workloads%,}]"
curl -sf -X PUT -H 'content-type: application/json' -d "$workloads" "$GEN/workloads" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
inv=meshplan-system/bench-ro-$RANDOM
"$BIN" run "$M/repo" "${creds[@]}" --kubeconfig "$SA" --inventory "$inv" --interval 5m --listen "127.0.0.1:$port" 2>"$M/run.log" &
run_pid=$!
trap 'kill $run_pid 2>/dev/null || true' EXIT
metric() { curl -s "127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
until [ "$(metric 'meshplan_reconciles_total{result="applied"}' 2>/dev/null || echo 0)" -ge 1 ] 2>/dev/null; do sleep 0.2; done
# Every rollout at its first step before the window opens.
until [ "$(kubectl get vs -n "$ns" -o jsonpath='{range .items[*]}{.spec.http[-1].route[1].weight}{"\n"}{end}' | grep -c '^10$')" -ge "$N" ]; do sleep 0.5; done

cpu() { awk '{ print $14 + $15 }' "/proc/$run_pid/stat"; }
tck=$(getconf CLK_TCK)
a0=$(metric 'meshplan_rollout_analyses_total{service="'"$ns"'/svc-1",verdict="pass"}' || echo 0)
c0=$(cpu); sleep "$WINDOW"; c1=$(cpu)
a1=$(metric 'meshplan_rollout_analyses_total{service="'"$ns"'/svc-1",verdict="pass"}' || echo 0)
cpu_pct=$(awk -v a="$c0" -v b="$c1" -v t="$tck" -v w="$WINDOW" 'BEGIN { printf "%.1f", (b - a) / t / w * 100 }')
rss_now=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$run_pid/status")
rss_peak=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$run_pid/status")
analyses=$(awk -v a="${a0:-0}" -v b="${a1:-0}" 'BEGIN { print b - a }')

# Failure → rollback, R times: watch a victim's canary weight, spike its
# errors; the verdict's time is its transition's log line (milliseconds).
: >"$M/rollbacks.txt"
for k in $(seq 1 "$R"); do
    : >"$M/rolled.txt"
    ( timeout 120 kubectl get vs -n "$ns" "victim-$k" -w -o jsonpath='{.spec.http[-1].route[1].weight}{"\n"}' 2>/dev/null \
        | while read -r w; do if [ "$w" = "0" ] || [ -z "$w" ]; then date +%s.%N >"$M/rolled.txt"; break; fi; done ) &
    sleep 1
    t_spike=$(date +%s.%N)
    curl -sf -X PUT -H 'content-type: application/json' \
        -d "[{\"service\":\"victim-$k\",\"namespace\":\"$ns\",\"version\":\"v2\",\"rps\":20,\"errorRate\":1}]" "$GEN/workloads" >/dev/null
    until [ -s "$M/rolled.txt" ]; do sleep 0.01; done
    t_back=$(cat "$M/rolled.txt")
    sleep 0.5
    t_fail=$(python3 - "$M/run.log" "$ns/victim-$k" <<'PY'
import sys, datetime
for line in open(sys.argv[1]):
    if f"rollout {sys.argv[2]}:" in line and "→ RollingBack" in line:
        print(datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp())
        break
PY
)
    echo "$t_spike $t_fail $t_back" >>"$M/rollbacks.txt"
done
kill -TERM $run_pid; wait $run_pid || true
trap - EXIT
echo "$cpu_pct $rss_now $rss_peak $analyses" >"$M/usage.txt"
# Out of the next mode's watch.
kubectl delete --wait=false -n "$ns" --all virtualservices.networking.istio.io,destinationrules.networking.istio.io >/dev/null 2>&1 || true
}

MODES=${MODES:-plain tls}
rm -rf "$W"; mkdir -p "$W"
for mode in $MODES; do bench "$mode"; done

echo "Run: $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/model name/ { $1=$2=$3=""; print; exit }' /proc/cpuinfo | sed 's/^ *//'), kube-apiserver 1.20.2 + etcd and Prometheus (1 s scrapes) on loopback; analysis interval ${INTERVAL} s; $N concurrent rollouts, $R rollbacks per mode; modes: $MODES."
echo
python3 - "$W" "$INTERVAL" "$N" "$WINDOW" $MODES <<'PY'
import sys, statistics
w, i, n, window, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5:]
names = {"plain": "Prometheus over HTTP", "tls": "over HTTPS (basic auth + client certificate)"}
cols = {}
for m in modes:
    rows = [list(map(float, l.split())) for l in open(f"{w}/{m}/rollbacks.txt") if l.strip()]
    verdict = sorted((b - f) * 1000 for s, f, b in rows)
    spike = sorted((b - s) * 1000 for s, f, b in rows)
    cpu, rss, peak, analyses = open(f"{w}/{m}/usage.txt").read().split()
    cols[m] = [
        f"{statistics.median(verdict):.0f} / {max(verdict):.0f}",
        f"{statistics.median(spike):.0f} / {max(spike):.0f}",
        cpu, f"{rss} / {peak}", analyses,
    ]
print("| measurement | " + " | ".join(names.get(m, m) for m in modes) + " | target |")
print("|---|" + "---|" * len(modes) + "---|")
labels = [
    ("failing verdict (its log line) → rollback weights in the cluster (ms; median / max)", f"within one interval + 1 s ({(i + 1) * 1000} ms)"),
    ("error spike → rollback weights in the cluster (ms; median / max; includes Prometheus scraping the spike and the next analysis)", ""),
    (f"CPU of `meshplan run` with {n} concurrent rollouts, mean over {window} s (% of one core)", ""),
    (f"RSS of `meshplan run` with {n} concurrent rollouts (MiB, now / peak)", ""),
    ("analyses of one rollout in that window", f"{window // i} (one per interval)"),
]
for k, (label, target) in enumerate(labels):
    print(f"| {label} | " + " | ".join(cols[m][k] for m in modes) + f" | {target} |")
PY
