#!/usr/bin/env bash
# Kills the test environment's kube-apiserver (SIGKILL: no graceful
# shutdown), keeps it down for SECONDS, and starts it again with the same
# command line, ports and data (etcd keeps running). For tests of an API
# server lost mid-apply.
#
# Usage: scripts/env/restart-apiserver.sh [SECONDS] [DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# Cargo's output folder: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DOWN=${1:-2}
DIR=${2:-${MESHPLAN_ENV_DIR:-$TARGET/testenv}}
pid_file=$DIR/pids/kube-apiserver.pid
[ -x "$DIR/kube-apiserver.sh" ] || { echo "no environment in $DIR (scripts/env/up.sh)" >&2; exit 2; }
if [ -f "$pid_file" ]; then
    pid=$(cat "$pid_file")
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
fi
sleep "$DOWN"
nohup "$DIR/kube-apiserver.sh" >>"$DIR/logs/kube-apiserver.log" 2>&1 &
echo $! >"$pid_file"
deadline=$(( $(date +%s) + 90 ))
until "$DIR/kube-apiserver-ready.sh" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "kube-apiserver did not come back" >&2; exit 1; }
    sleep 0.2
done
