#!/usr/bin/env bash
# Tears the local Kubernetes bed down and leaves nothing behind: the node agent and its pods, the
# control-plane processes, tmpfs volumes and other mounts under .k8s/, the pods' network namespaces
# (rivk8s-*), the bridge, and .k8s/ itself. Safe to run when nothing is up.
#
# The network is cleared only when this checkout has a .k8s/ (it brought the bed up) or
# RIVULET_K8S_FORCE_DOWN=1: another checkout's bed on this machine is left alone otherwise.
set -uo pipefail
# shellcheck source=e2e/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $EUID -eq 0 ]] || die "must run as root"

if [[ ! -d $STATE && ${RIVULET_K8S_FORCE_DOWN:-0} != 1 ]]; then
    log "nothing to do: no $STATE"
    exit 0
fi

# stop PIDFILE [SECONDS]: SIGTERM to the process group (every process was started in its own
# session), SIGKILL after SECONDS (10).
stop() {
    local pidfile=$1 secs=${2:-10} pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    ours "$pid" || return 0
    log "stopping $(basename "$pidfile" .pid) (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $((secs * 10))); do
        ours "$pid" || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
}

# The node agent first, while the API server still answers: it stops its pods gracefully (each
# within its grace period) and unmounts its volumes. Then the control plane, top down.
stop "$STATE/nodes/agent.pid" 60
stop "$PIDS/node-agent.pid" 60

# Whatever still runs in a pod's network namespace is a pod process the agent did not stop.
mapfile -t netnses < <(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NETNS_PREFIX" || true)
for ns in "${netnses[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    if [[ -n ${pids// /} ]]; then
        log "killing pod processes left in netns $ns: $pids"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
done

for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$PIDS/$c.pid"; done

# Mounts under .k8s/ (tmpfs volumes, anything the agent bind-mounted), deepest first.
if [[ -d $STATE ]]; then
    mapfile -t mounts < <(findmnt -rn -o TARGET | awk -v p="$STATE/" 'index($0, p) == 1' | sort -r)
    for m in "${mounts[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" || log "could not unmount $m"
    done
fi

for ns in "${netnses[@]}"; do ip netns delete "$ns" 2>/dev/null || log "could not delete netns $ns"; done
if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link delete "$BRIDGE" || log "could not delete bridge $BRIDGE"
fi

rm -rf "$STATE"
log "down"
