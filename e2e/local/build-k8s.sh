#!/usr/bin/env bash
# Builds the local Kubernetes bed's binaries from Go modules (Go module proxy only) into a cache
# outside the repository: ${RIVULET_K8S_CACHE:-~/.cache/rivulet-k8s}/<k8s-version>/bin/
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm
# Idempotent: a binary is rebuilt only when it is missing or was built from another module version
# (each binary has a <name>.version stamp beside it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/local/versions.env
source "$HERE/versions.env"
K8S_VERSION=${RIVULET_K8S_VERSION:-$K8S_VERSION}
export GOTOOLCHAIN=${GOTOOLCHAIN:-$K8S_GOTOOLCHAIN}
# Wrapper modules resolve their requirements on the fly; the module and build caches stay at Go's
# defaults (outside the repository).
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

CACHE=${RIVULET_K8S_CACHE:-$HOME/.cache/rivulet-k8s}/$K8S_VERSION
BIN=$CACHE/bin
SRC=$CACHE/src
mkdir -p "$BIN" "$SRC"
# One build at a time per version (two make targets, or two checkouts, share the cache).
exec 9>"$CACHE/.build.lock"
flock 9

log() { echo "build-k8s: $*" >&2; }
need_go() { command -v go >/dev/null || { log "go is not on PATH (Go 1.26 is required)"; exit 1; }; }

# stale NAME STAMP: true when $BIN/NAME is missing or its stamp differs.
stale() { [[ ! -x $BIN/$1 || "$(cat "$BIN/$1.version" 2>/dev/null)" != "$2" ]]; }

# install_built TMPDIR STAMP NAME...: move freshly built binaries into place with their stamps, so an
# interrupted build never leaves a half-written binary in bin/.
install_built() {
    local tmp=$1 stamp=$2; shift 2
    local name
    for name in "$@"; do
        mv -f "$tmp/$name" "$BIN/$name"
        echo "$stamp" >"$BIN/$name.version"
    done
}

# new_wrapper DIR: an empty main module in which to require the module we build.
new_wrapper() {
    rm -rf "$1" && mkdir -p "$1"
    (cd "$1" && go mod init rivulet.local/k8s-build >/dev/null 2>&1)
}

build_kubernetes() {
    local names=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
    local stamp="k8s.io/kubernetes@$K8S_VERSION" todo=() n
    for n in "${names[@]}"; do stale "$n" "$stamp" && todo+=("$n"); done
    ((${#todo[@]})) || { log "kubernetes $K8S_VERSION: up to date"; return; }
    log "kubernetes $K8S_VERSION: building ${todo[*]}"

    local staging_version="v0.${K8S_VERSION#v1.}" gomod dir=$SRC/kubernetes
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    new_wrapper "$dir"
    local edits=(-require "k8s.io/kubernetes@$K8S_VERSION")
    # Every module k8s.io/kubernetes replaces with ./staging/src/... is published at v0.Y.Z.
    local mod
    while read -r mod; do
        edits+=(-replace "$mod=$mod@$staging_version")
    done < <(sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?([^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/src/.*#\2#p' "$gomod")
    ((${#edits[@]} > 2)) || { log "no staging replaces found in $gomod"; exit 1; }
    for n in "${todo[@]}"; do edits+=(-tool "k8s.io/kubernetes/cmd/$n"); done
    (cd "$dir" && go mod edit "${edits[@]}" && go mod tidy)

    # The version the binaries report (kubectl version, /version, the emulation version), as
    # hack/lib/version.sh sets it.
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local x=() pkg
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        x+=("-X $pkg.gitVersion=$K8S_VERSION" "-X $pkg.gitMajor=1" "-X $pkg.gitMinor=$minor"
            "-X $pkg.gitTreeState=clean" "-X $pkg.buildDate=1970-01-01T00:00:00Z")
    done
    local pkgs=() tmp=$CACHE/tmp-kubernetes
    for n in "${todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$n"); done
    rm -rf "$tmp" && mkdir -p "$tmp"
    # One invocation: the packages the binaries share compile once.
    (cd "$dir" && go build -trimpath -ldflags="-s -w ${x[*]}" -o "$tmp/" "${pkgs[@]}")
    install_built "$tmp" "$stamp" "${todo[@]}"
    rm -rf "$tmp"
}

# build_single NAME MODULE VERSION PACKAGE [LDFLAGS]
build_single() {
    local name=$1 module=$2 version=$3 pkg=$4 extra=${5:-}
    local stamp="$module@$version"
    stale "$name" "$stamp" || { log "$name $version: up to date"; return; }
    log "$name $version: building"
    local dir=$SRC/$name tmp=$CACHE/tmp-$name
    new_wrapper "$dir"
    (cd "$dir" && go mod edit -require "$module@$version" -tool "$pkg" && go mod tidy)
    rm -rf "$tmp" && mkdir -p "$tmp"
    (cd "$dir" && go build -trimpath -ldflags="-s -w $extra" -o "$tmp/$name" "$pkg")
    install_built "$tmp" "$stamp" "$name"
    rm -rf "$tmp"
}

need_go
start=$SECONDS
build_single etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
build_single helm helm.sh/helm/v4 "$HELM_VERSION" helm.sh/helm/v4/cmd/helm \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
build_kubernetes
log "done in $((SECONDS - start)) s: $BIN"
