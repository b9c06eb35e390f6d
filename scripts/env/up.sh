#!/usr/bin/env bash
# Starts meshplan's test environment on random loopback ports:
#   etcd + kube-apiserver 1.20.2 (RBAC, static admin token, ServiceAccount
#   tokens), the upstream CRDs from $MESHPLAN_CRDS, deploy/rbac.yaml and a
#   token for its ServiceAccount; the metrics generator and Prometheus
#   scraping it every second, and a second Prometheus scraping it too,
#   served over TLS under /prometheus with basic auth and client
#   certificates required; a webhook receiver over TLS (scripts/env/hooks.py);
#   Git over git:// (git daemon), smart HTTP (git http-backend behind an
#   auth-checking server) and ssh:// (sshd, key auth, known_hosts).
#
# Usage: scripts/env/up.sh            (state in target/testenv)
#        MESHPLAN_ENV_DIR=DIR scripts/env/up.sh
# Prints the path of env.json, which tests find through MESHPLAN_TESTENV.
# Stop with scripts/env/down.sh [DIR]. Run scripts/env/install.sh first.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# Cargo's output folder: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DIR="${MESHPLAN_ENV_DIR:-$TARGET/testenv}"
CACHE="${MESHPLAN_CACHE:-$HOME/.cache/meshplan}"
APISERVER="$CACHE/kube-apiserver-1.20.2-r4"
CRDS="${MESHPLAN_CRDS:-$(cd "$ROOT/.." && pwd)/shared/crds}"
HELPER="$TARGET/debug/meshplan-testenv"
started=$(date +%s)

log() { printf '[env %3ss] %s\n' "$(( $(date +%s) - started ))" "$*" >&2; }

fail() {
    log "error: $*"
    for f in "$DIR"/logs/*.log; do
        [ -f "$f" ] || continue
        printf '\n----- %s (last 30 lines) -----\n' "$f" >&2
        tail -n 30 "$f" >&2
    done
    "$ROOT/scripts/env/down.sh" "$DIR" >&2 || true
    exit 1
}

[ -x "$APISERVER" ] || fail "kube-apiserver is not built: run scripts/env/install.sh"
[ -f "$CRDS/istio.yaml" ] || fail "no upstream CRDs in $CRDS: set MESHPLAN_CRDS (see ../shared/crds/PROVENANCE.md)"
for tool in etcd prometheus git openssl curl python3 ssh-keygen /usr/sbin/sshd; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/env/install.sh"
done

# A previous environment in the same directory is stopped first.
"$ROOT/scripts/env/down.sh" "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"/{pids,logs,certs,etcd,prometheus,prometheus-tls,hooks,git/repos,ssh}

log "building the helper (meshplan-testenv)"
(cd "$ROOT" && cargo build -q -p meshplan-testenv --bin meshplan-testenv) || fail "cannot build meshplan-testenv"

# All ports at once, each socket held until every port is chosen, so no two
# are the same.
read -r P_ETCD P_PEER P_API P_PROM P_METRICS P_GITD P_GITHTTP P_SSH P_PROM_TLS P_HOOKS < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(10):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

# start NAME CMD...: runs CMD in the background, logs and PID in $DIR.
start() {
    local name=$1
    shift
    "$@" >"$DIR/logs/$name.log" 2>&1 &
    echo $! >"$DIR/pids/$name.pid"
}

# wait_until WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_until() {
    local what=$1 secs=$2
    shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$what not ready after ${secs}s"
        sleep 0.2
    done
}

# --- certificates and credentials ---------------------------------------
C="$DIR/certs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/ca.key" -out "$C/ca.crt" -days 7 \
    -subj /CN=meshplan-test-ca -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$C/apiserver.key" -out "$C/apiserver.csr" \
    -subj /CN=kube-apiserver 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$C/apiserver.ext"
openssl x509 -req -in "$C/apiserver.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" -CAcreateserial \
    -out "$C/apiserver.crt" -days 7 -extfile "$C/apiserver.ext" 2>/dev/null
openssl genrsa -out "$C/sa.key" 2048 2>/dev/null
openssl rsa -in "$C/sa.key" -pubout -out "$C/sa.pub" 2>/dev/null
# The TLS services' certificate, and a client certificate, of the same CA.
tls_cert() { # NAME CN EXTENDED-KEY-USAGE
    openssl req -newkey rsa:2048 -nodes -keyout "$C/$1.key" -out "$C/$1.csr" -subj "/CN=$2" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' "$3" >"$C/$1.ext"
    openssl x509 -req -in "$C/$1.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" -CAcreateserial \
        -out "$C/$1.crt" -days 7 -extfile "$C/$1.ext" 2>/dev/null
}
tls_cert tls-server meshplan-test-server serverAuth
tls_cert tls-client meshplan-test-client clientAuth
# A CA of nobody's: what a client that trusts it must refuse.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/other-ca.key" -out "$C/other-ca.crt" -days 7 \
    -subj /CN=meshplan-other-ca -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
ADMIN_TOKEN=$(openssl rand -hex 24)
printf '%s,meshplan-admin,meshplan-admin,"system:masters"\n' "$ADMIN_TOKEN" >"$C/tokens.csv"
chmod 600 "$C"/*.key "$C/tokens.csv"

# --- etcd and kube-apiserver ---------------------------------------------
log "starting etcd on 127.0.0.1:$P_ETCD"
start etcd etcd --name meshplan-test --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$P_ETCD" --advertise-client-urls "http://127.0.0.1:$P_ETCD" \
    --listen-peer-urls "http://127.0.0.1:$P_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$P_PEER" \
    --initial-cluster "meshplan-test=http://127.0.0.1:$P_PEER" --log-level warn
wait_until "etcd" 30 curl -sf "http://127.0.0.1:$P_ETCD/health"

log "starting kube-apiserver 1.20.2 on 127.0.0.1:$P_API"
# Its command line is kept in a script, so scripts/env/restart-apiserver.sh
# can kill it and start it again the same way (tests of an apiserver lost
# mid-apply).
API_ARGS=(
    --etcd-servers "http://127.0.0.1:$P_ETCD"
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$P_API" --insecure-port 0
    --cert-dir "$C" --tls-cert-file "$C/apiserver.crt" --tls-private-key-file "$C/apiserver.key"
    --token-auth-file "$C/tokens.csv" --authorization-mode RBAC
    --service-account-key-file "$C/sa.pub" --service-account-signing-key-file "$C/sa.key"
    --service-account-issuer https://kubernetes.default.svc.cluster.local
    --api-audiences https://kubernetes.default.svc.cluster.local
    --service-cluster-ip-range 10.96.0.0/16
    --enable-priority-and-fairness=false --profiling=false --v=1
)
{
    echo '#!/usr/bin/env bash'
    printf 'exec %q' "$APISERVER"
    printf ' %q' "${API_ARGS[@]}"
    echo
} >"$DIR/kube-apiserver.sh"
chmod +x "$DIR/kube-apiserver.sh"
{
    echo '#!/usr/bin/env bash'
    printf 'exec curl -sf --cacert %q -H %q %q\n' "$C/ca.crt" "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$P_API/readyz"
} >"$DIR/kube-apiserver-ready.sh"
chmod +x "$DIR/kube-apiserver-ready.sh"
start kube-apiserver "$DIR/kube-apiserver.sh"
wait_until "kube-apiserver" 90 "$DIR/kube-apiserver-ready.sh"

kubeconfig() { # FILE USER TOKEN
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: meshplan-test
    cluster:
      server: https://127.0.0.1:$P_API
      certificate-authority: $C/ca.crt
users:
  - name: $2
    user:
      token: $3
contexts:
  - name: meshplan-test
    context:
      cluster: meshplan-test
      user: $2
current-context: meshplan-test
EOF
    chmod 600 "$1"
}
kubeconfig "$DIR/admin.kubeconfig" meshplan-admin "$ADMIN_TOKEN"

log "installing the upstream CRDs from $CRDS"
"$HELPER" install-crds --kubeconfig "$DIR/admin.kubeconfig" "$CRDS" 2>>"$DIR/logs/setup.log" \
    || fail "installing CRDs failed (see setup.log)"
"$HELPER" install-crds --kubeconfig "$DIR/admin.kubeconfig" "$ROOT/deploy/crds" 2>>"$DIR/logs/setup.log" \
    || fail "installing meshplan's own CRDs (deploy/crds) failed (see setup.log)"
log "applying deploy/rbac.yaml and requesting the meshplan ServiceAccount's token"
"$HELPER" apply --kubeconfig "$DIR/admin.kubeconfig" "$ROOT/deploy/rbac.yaml" 2>>"$DIR/logs/setup.log" \
    || fail "applying deploy/rbac.yaml failed (see setup.log)"
SA_TOKEN=$("$HELPER" sa-token --kubeconfig "$DIR/admin.kubeconfig" --namespace meshplan-system --name meshplan 2>>"$DIR/logs/setup.log") \
    || fail "requesting a ServiceAccount token failed (see setup.log)"
kubeconfig "$DIR/sa.kubeconfig" system:serviceaccount:meshplan-system:meshplan "$SA_TOKEN"

# --- metrics generator and Prometheus -------------------------------------
log "starting the metrics generator on 127.0.0.1:$P_METRICS and Prometheus on 127.0.0.1:$P_PROM"
start metrics-gen "$HELPER" metrics-gen --listen "127.0.0.1:$P_METRICS"
cat >"$DIR/prometheus/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: mesh
    static_configs:
      - targets: ['127.0.0.1:$P_METRICS']
EOF
start prometheus prometheus --config.file "$DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path "$DIR/prometheus/data" --web.listen-address "127.0.0.1:$P_PROM" \
    --web.enable-lifecycle --log.level warn
wait_until "metrics generator" 30 curl -sf "http://127.0.0.1:$P_METRICS/healthz"
wait_until "Prometheus" 60 curl -sf "http://127.0.0.1:$P_PROM/-/ready"

# The same metrics from a Prometheus as managed ones are reached: HTTPS,
# a path prefix, basic auth and a client certificate. The password's bcrypt
# hash at the lowest cost, as Prometheus checks it on every request.
PT="$DIR/prometheus-tls"
log "starting Prometheus over TLS on 127.0.0.1:$P_PROM_TLS/prometheus"
openssl rand -hex 12 >"$PT/password"
chmod 600 "$PT/password"
HASH=$(python3 -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))' \
    "$(cat "$PT/password")" 2>/dev/null) || fail "python3 cannot make a bcrypt hash (its crypt module)"
case "$HASH" in \$2*) ;; *) fail "python3 made no bcrypt hash: $HASH" ;; esac
cat >"$PT/web.yml" <<EOF
tls_server_config:
  cert_file: $C/tls-server.crt
  key_file: $C/tls-server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: $C/ca.crt
basic_auth_users:
  meshplan: '$HASH'
EOF
start prometheus-tls prometheus --config.file "$DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path "$PT/data" --web.listen-address "127.0.0.1:$P_PROM_TLS" \
    --web.config.file "$PT/web.yml" --web.route-prefix /prometheus \
    --web.external-url "https://127.0.0.1:$P_PROM_TLS/prometheus" --log.level warn
wait_until "Prometheus over TLS" 60 curl -sf --cacert "$C/ca.crt" --cert "$C/tls-client.crt" \
    --key "$C/tls-client.key" -u "meshplan:$(cat "$PT/password")" \
    "https://127.0.0.1:$P_PROM_TLS/prometheus/-/ready"

# --- webhook receiver --------------------------------------------------------
H="$DIR/hooks"
log "starting the webhook receiver on https://127.0.0.1:$P_HOOKS"
: >"$H/authorizations"
start hooks python3 "$ROOT/scripts/env/hooks.py" --listen "127.0.0.1:$P_HOOKS" \
    --cert "$C/tls-server.crt" --key "$C/tls-server.key" \
    --authorizations "$H/authorizations" --log "$H/requests.jsonl"
wait_until "webhook receiver" 20 curl -sf --cacert "$C/ca.crt" "https://127.0.0.1:$P_HOOKS/healthz"

# --- Git servers -----------------------------------------------------------
G="$DIR/git"
log "starting git daemon ($P_GITD), smart HTTP ($P_GITHTTP) and sshd ($P_SSH)"
start git-daemon git daemon --reuseaddr --export-all --enable=receive-pack --informative-errors \
    --base-path="$G/repos" --listen=127.0.0.1 --port="$P_GITD" "$G/repos"
openssl rand -hex 12 >"$G/http-password"
openssl rand -hex 20 >"$G/http-token"
chmod 600 "$G/http-password" "$G/http-token"
start git-http "$HELPER" git-http --listen "127.0.0.1:$P_GITHTTP" --root "$G/repos" \
    --user meshplan --password-file "$G/http-password" --token-file "$G/http-token"

S="$DIR/ssh"
ssh-keygen -q -t ed25519 -N '' -C meshplan-test-host -f "$S/host_key"
ssh-keygen -q -t ed25519 -N '' -C meshplan-test-other-host -f "$S/other_host_key"
ssh-keygen -q -t ed25519 -N '' -C meshplan-test-client -f "$S/client_key"
ssh-keygen -q -t ed25519 -N '' -C meshplan-test-wrong-client -f "$S/wrong_client_key"
cp "$S/client_key.pub" "$S/authorized_keys"
printf '[127.0.0.1]:%s %s\n' "$P_SSH" "$(cut -d' ' -f1,2 "$S/host_key.pub")" >"$S/known_hosts"
printf '[127.0.0.1]:%s %s\n' "$P_SSH" "$(cut -d' ' -f1,2 "$S/other_host_key.pub")" >"$S/wrong_known_hosts"
SSH_USER=$(id -un)
cat >"$S/sshd_config" <<EOF
Port $P_SSH
ListenAddress 127.0.0.1
HostKey $S/host_key
PidFile $S/sshd.pid
AuthorizedKeysFile $S/authorized_keys
AllowUsers $SSH_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel VERBOSE
EOF
# sshd needs its privilege-separation directory.
[ -d /run/sshd ] || mkdir -p /run/sshd
start sshd /usr/sbin/sshd -D -e -f "$S/sshd_config"

git init -q --bare -b main "$G/repos/probe.git"
wait_until "git daemon" 20 git ls-remote "git://127.0.0.1:$P_GITD/probe.git"
wait_until "git smart HTTP" 20 git ls-remote \
    "http://meshplan:$(cat "$G/http-password")@127.0.0.1:$P_GITHTTP/probe.git"
wait_until "sshd" 20 env GIT_SSH_COMMAND="ssh -i $S/client_key -o IdentitiesOnly=yes -o UserKnownHostsFile=$S/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes" \
    git ls-remote "ssh://$SSH_USER@127.0.0.1:$P_SSH$G/repos/probe.git"

# --- env.json ----------------------------------------------------------------
cat >"$DIR/env.json" <<EOF
{
  "dir": "$DIR",
  "kubeconfig": "$DIR/admin.kubeconfig",
  "saKubeconfig": "$DIR/sa.kubeconfig",
  "crds": "$CRDS",
  "prometheusUrl": "http://127.0.0.1:$P_PROM",
  "metricsUrl": "http://127.0.0.1:$P_METRICS",
  "tls": {
    "caFile": "$C/ca.crt",
    "otherCaFile": "$C/other-ca.crt",
    "clientCertFile": "$C/tls-client.crt",
    "clientKeyFile": "$C/tls-client.key"
  },
  "prometheusTls": {
    "url": "https://127.0.0.1:$P_PROM_TLS/prometheus",
    "username": "meshplan",
    "passwordFile": "$PT/password"
  },
  "hooks": {
    "url": "https://127.0.0.1:$P_HOOKS",
    "authorizations": "$H/authorizations",
    "log": "$H/requests.jsonl"
  },
  "git": {
    "root": "$G/repos",
    "daemonUrl": "git://127.0.0.1:$P_GITD",
    "httpUrl": "http://127.0.0.1:$P_GITHTTP",
    "httpUser": "meshplan",
    "httpPassword": "$(cat "$G/http-password")",
    "httpToken": "$(cat "$G/http-token")",
    "sshUrl": "ssh://$SSH_USER@127.0.0.1:$P_SSH",
    "sshKey": "$S/client_key",
    "sshPublicKey": "$S/client_key.pub",
    "sshWrongKey": "$S/wrong_client_key",
    "knownHosts": "$S/known_hosts",
    "wrongKnownHosts": "$S/wrong_known_hosts"
  }
}
EOF
log "ready: export MESHPLAN_TESTENV=$DIR/env.json"
echo "$DIR/env.json"
