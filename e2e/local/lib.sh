# shellcheck shell=bash disable=SC2034  # (variables for the scripts that source this)
# Shared settings of up.sh and down.sh (sourced, not run).
# One bed per machine: the bridge name, its address and the ports below are fixed by
# docs/e2e.md.

LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LOCAL_DIR/../.." && pwd)
# shellcheck source=e2e/local/versions.env
source "$LOCAL_DIR/versions.env"
K8S_VERSION=${RIVULET_K8S_VERSION:-$K8S_VERSION}
K8S_BIN=${RIVULET_K8S_CACHE:-$HOME/.cache/rivulet-k8s}/$K8S_VERSION/bin

STATE=$REPO/.k8s
PKI=$STATE/pki
LOGS=$STATE/logs
PIDS=$STATE/pids

BRIDGE=rivk8s0
BRIDGE_ADDR=10.88.0.1
BRIDGE_CIDR=$BRIDGE_ADDR/16
NETNS_PREFIX=rivk8s-
APISERVER_PORT=6443
ETCD_CLIENT_PORT=${RIVULET_K8S_ETCD_PORT:-2379}
ETCD_PEER_PORT=${RIVULET_K8S_ETCD_PEER_PORT:-2380}
KCM_PORT=10257
SCHEDULER_PORT=10259
SERVICE_CIDR=10.96.0.0/16
SA_ISSUER=https://kubernetes.default.svc.cluster.local
ZONES=zone-a,zone-b,zone-c

log() { echo "k8s-bed: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ours PID: PID is a live process of this bed: not a zombie (init reaps orphans a second or so
# after they die) and its command line names this bed's state directory (a recycled pid does not).
ours() {
    local pid=$1 state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    state=$({ sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1; } 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]] || return 1
    local cmd
    # (the process may exit between the two reads)
    cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
    # Absolute paths (up.sh), or paths relative to the repository (an agent started by hand).
    [[ $cmd == *"$STATE"* || ($cmd == *.k8s/* && $(readlink "/proc/$pid/cwd") == "$REPO") ]]
}
# alive PIDFILE: the process named in PIDFILE is a live process of this bed.
alive() { [[ -s $1 ]] && ours "$(cat "$1")"; }
