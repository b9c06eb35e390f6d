#!/usr/bin/env bash
# Stops every process of a test environment started by up.sh: each PID it
# recorded gets SIGTERM, then SIGKILL after 5 s. Data and logs stay (they
# go when up.sh starts the next environment in the same directory).
# Usage: scripts/env/down.sh [DIR]   (default target/testenv)
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# Cargo's output folder: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DIR="${1:-${MESHPLAN_ENV_DIR:-$TARGET/testenv}}"
[ -d "$DIR/pids" ] || exit 0

pids=()
for f in "$DIR"/pids/*.pid "$DIR"/ssh/sshd.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
    rm -f "$f"
done
for _ in $(seq 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
done
for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
echo "stopped ${#pids[@]} processes of $DIR" >&2
