#!/usr/bin/env bash
# Installs what the test environment needs from Debian's packages, and builds
# kube-apiserver from Debian's `kubernetes` source package (no registry ships
# the binary). Idempotent: installed packages and the cached binary are
# skipped. The binary is cached outside the checkout, keyed by version:
#   ${MESHPLAN_CACHE:-~/.cache/meshplan}/kube-apiserver-<version>
set -euo pipefail

KUBE_VERSION=1.20.2
CACHE="${MESHPLAN_CACHE:-$HOME/.cache/meshplan}"
# The recipe's revision is part of the cache key: a changed recipe rebuilds.
RECIPE=r4
APISERVER="$CACHE/kube-apiserver-$KUBE_VERSION-$RECIPE"
# libssl-dev and pkg-config: git2's HTTPS support builds against them.
# gnupg: the tests sign commits with OpenPGP keys (meshplan itself verifies
# signatures without it).
PACKAGES=(etcd-server prometheus git openssh-server openssh-client openssl curl
          ca-certificates procps python3 libssl-dev pkg-config gnupg)
# kubectl, for drift tests and as the benchmark peer: Debian's
# kubernetes-client (1.20.2) unless the machine already has one (some
# images ship a `kubectl` package that conflicts with it).
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)
BUILD_PACKAGES=(golang-go rsync make dpkg-dev golang-github-modern-go-reflect2-dev
                golang-github-json-iterator-go-dev)

log() { printf '[install] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

apt_updated=
apt_update() {
    if [ -z "$apt_updated" ]; then
        log "apt-get update"
        as_root apt-get update -qq
        apt_updated=1
    fi
}

apt_install() {
    local missing
    missing=$(missing_packages "$@")
    if [ -n "$missing" ]; then
        apt_update
        # Finish any install an earlier run left half-done.
        as_root dpkg --configure -a >/dev/null 2>&1 || true
        log "apt-get install $(echo $missing)"
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
}

# apt-get source needs a deb-src entry; add one with the same URI and keyring
# as the machine's own Debian entry.
ensure_deb_src() {
    local f=/etc/apt/sources.list.d/meshplan-src.sources
    [ -f "$f" ] && return 0
    local uri keyring
    uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
    keyring=$(grep -h '^Signed-By:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
    uri=${uri:-http://deb.debian.org/debian}
    keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
    log "adding deb-src entry ($uri bookworm main)"
    printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: %s\n' \
        "$uri" "$keyring" | as_root tee "$f" >/dev/null
    apt_updated=
}

build_apiserver() {
    if [ -x "$APISERVER" ]; then
        log "kube-apiserver $KUBE_VERSION cached at $APISERVER"
        return 0
    fi
    apt_install "${BUILD_PACKAGES[@]}"
    ensure_deb_src
    apt_update
    local work="$CACHE/build-kubernetes"
    rm -rf "$work"
    mkdir -p "$work"
    log "downloading Debian's kubernetes source package"
    (cd "$work" && apt-get source --download-only kubernetes >/dev/null)
    log "unpacking"
    (cd "$work" && dpkg-source --no-check -x ./*.dsc src >/dev/null)
    local src="$work/src"
    # The vendored reflect2 1.0.1 crashes under Go >= 1.18 at the first watch
    # of a custom resource; Debian's packaged 1.0.2 is fixed, and comes with
    # the json-iterator released with it (1.1.12).
    rm -rf "$src/vendor/github.com/modern-go/reflect2" "$src/vendor/github.com/json-iterator/go"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/json-iterator/go "$src/vendor/github.com/json-iterator/go"
    # go-openapi's type check treats a value as null when
    # reflect.DeepEqual(reflect.Zero(T), reflect.ValueOf(v)) — comparing
    # reflect.Value internals. Under Go >= 1.19 an empty string and
    # reflect.Zero(string) share the runtime's zero buffer, so every "" in a
    # custom resource is rejected as null (a Gateway API parentRef's
    # `group: ""` among them). Under Go 1.15, 1.20's own toolchain, the
    # check only ever matched nil: restore that.
    # (Kubernetes 1.20 validates custom resources with kube-openapi's fork
    # of go-openapi; both copies carry the check.)
    local typego patched=0
    for typego in "$src/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go" \
                  "$src/vendor/github.com/go-openapi/validate/type.go"; do
        if grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' "$typego"; then
            sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$typego"
            patched=$((patched + 1))
        fi
    done
    [ "$patched" = 2 ] || { log "error: expected the zero-value check in 2 vendored type.go files, patched $patched"; exit 1; }
    mkdir -p "$src/.go/src/k8s.io"
    ln -sfn ../../.. "$src/.go/src/k8s.io/kubernetes"
    log "building kube-apiserver (about 5 minutes on 2 cores)"
    (cd "$src/.go/src/k8s.io/kubernetes" && GOPATH="$src/.go" GOFLAGS=-mod=vendor CGO_ENABLED=0 GO111MODULE=off \
        make WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1) || {
        tail -50 "$work/build.log" >&2
        log "error: building kube-apiserver failed (full log: $work/build.log)"
        exit 1
    }
    local bin
    bin=$(find "$src/_output" -type f -name kube-apiserver -perm -u+x | head -1)
    [ -n "$bin" ] || { log "error: build produced no kube-apiserver binary"; exit 1; }
    cp "$bin" "$APISERVER.tmp"
    mv "$APISERVER.tmp" "$APISERVER"
    rm -rf "$work"
    log "kube-apiserver $KUBE_VERSION built and cached at $APISERVER"
}

mkdir -p "$CACHE"
apt_install "${PACKAGES[@]}"
build_apiserver
