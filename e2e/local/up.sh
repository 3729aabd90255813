#!/usr/bin/env bash
# Brings up the local Kubernetes bed (docs/e2e.md): a bridge, a CA and certificates, etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, then the node agent (three zone nodes)
# and e2e/local/manifests/. State goes to .k8s/ at the repository root; `down.sh` removes it.
#
# Environment:
#   RIVULET_BIN_DIR      rivulet-broker / -coordinator / -operator for the node agent (target/release)
#   RIVULET_K8S_NODES=0  control plane only (no node agent, no nodes): for work on the control plane
#   RIVULET_K8S_KEEP_ON_FAIL=1  leave a failed bed running for inspection instead of tearing it down
set -euo pipefail
# shellcheck source=e2e/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN_DIR=${RIVULET_BIN_DIR:-$REPO/target/release}
WANT_NODES=${RIVULET_K8S_NODES:-3}
AGENT=$LOCAL_DIR/node-agent/agent.py
VENV=${RIVULET_VENV:-$REPO/.venv}
[[ $EUID -eq 0 ]] || die "must run as root (bridge, network namespaces, tmpfs volumes)"

# --- refuse a second bed; clear the remains of a dead one -------------------------------------
if [[ -d $STATE ]]; then
    for p in "$PIDS"/*.pid "$STATE/nodes/agent.pid"; do
        alive "$p" && die "the bed is already up (pid $(cat "$p") from $p): run 'make k8s-down' first"
    done
    log "clearing the remains of an earlier bed"
    "$LOCAL_DIR/down.sh"
fi
if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "bridge $BRIDGE exists but this checkout has no .k8s/: another bed is up on this machine (run its down.sh)"
fi

# --- what the nodes need (checked before anything starts) --------------------------------------
if [[ $WANT_NODES != 0 ]]; then
    [[ -f $AGENT ]] || die "node agent $AGENT is missing (RIVULET_K8S_NODES=0 brings up the control plane alone)"
    for b in rivulet-broker rivulet-coordinator rivulet-operator; do
        [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b missing: cargo build --release first (or set RIVULET_BIN_DIR)"
    done
fi

# --- binaries ------------------------------------------------------------------------------
"$LOCAL_DIR/build-k8s.sh"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm; do
    [[ -x $K8S_BIN/$b ]] || die "$K8S_BIN/$b missing after build-k8s.sh"
done
KUBECTL=$K8S_BIN/kubectl

# --- ports ---------------------------------------------------------------------------------
port_free() { # ADDR PORT NAME
    local who
    who=$(ss -Hltnp "sport = :$2" 2>/dev/null | awk -v a="$1:$2" '$4 == a || $4 ~ /^(0\.0\.0\.0|\*|\[::\]):/ {print $NF}')
    [[ -z $who ]] || die "port $1:$2 (for $3) is taken: $who"
}
port_free 127.0.0.1 "$ETCD_CLIENT_PORT" etcd
port_free 127.0.0.1 "$ETCD_PEER_PORT" "etcd peer"
port_free "$BRIDGE_ADDR" "$APISERVER_PORT" kube-apiserver
port_free 127.0.0.1 "$KCM_PORT" kube-controller-manager
port_free 127.0.0.1 "$SCHEDULER_PORT" kube-scheduler

mkdir -p "$PKI" "$LOGS" "$PIDS" "$STATE/etcd" "$STATE/nodes" "$STATE/volumes"
# Volumes live on a shared mount point, so the tmpfs the agent mounts later also appear in the
# namespaces that .k8s/exec makes (their propagation is slave: mounts come in, none go out).
mount --bind "$STATE/volumes" "$STATE/volumes"
mount --make-shared "$STATE/volumes"
chmod 700 "$STATE/etcd"

# From here on a failure tears the bed down (after saving the logs), unless asked to keep it.
on_fail() {
    local rc=$? saved
    ((rc)) || return 0
    trap - EXIT
    saved=$(mktemp -d "${TMPDIR:-/tmp}/rivulet-k8s-logs.XXXXXX")
    cp -a "$LOGS/." "$saved/" 2>/dev/null || true
    log "up failed (exit $rc); component logs saved in $saved"
    if [[ ${RIVULET_K8S_KEEP_ON_FAIL:-0} == 1 ]]; then
        log "RIVULET_K8S_KEEP_ON_FAIL=1: leaving the bed as it is; 'make k8s-down' removes it"
    else
        "$LOCAL_DIR/down.sh" || true
    fi
    exit "$rc"
}
trap on_fail EXIT

# --- network -------------------------------------------------------------------------------
ip link add "$BRIDGE" type bridge
ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
ip link set "$BRIDGE" up

# --- PKI -----------------------------------------------------------------------------------
# ca NAME CN: a self-signed CA.
ca() {
    openssl genrsa -out "$PKI/$1.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 30 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/$1.crt" 2>/dev/null
}
# cert NAME SUBJECT EXTENSIONS [CA]: an RSA key and a certificate signed by CA (the bed's CA).
cert() {
    local signer=${4:-ca}
    openssl genrsa -out "$PKI/$1.key" 2048 2>/dev/null
    openssl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$signer.crt" -CAkey "$PKI/$signer.key" -CAcreateserial \
        -days 30 -sha256 -out "$PKI/$1.crt" -extfile <(printf '%b' "$3") 2>/dev/null
    rm -f "$PKI/$1.csr"
}
ca ca rivulet-k8s-ca
CLIENT_EXT='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
SANS="IP:$BRIDGE_ADDR,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
SANS+=",DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
cert apiserver "/CN=kube-apiserver" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=$SANS\n"
cert admin "/O=system:masters/CN=kubernetes-admin" "$CLIENT_EXT"
# The controller manager and the scheduler use their own identities, so the bootstrap RBAC roles
# (system:kube-controller-manager, system:kube-scheduler) are what they are allowed to do.
cert controller-manager "/CN=system:kube-controller-manager" "$CLIENT_EXT"
cert scheduler "/CN=system:kube-scheduler" "$CLIENT_EXT"
# The aggregation layer's request-header CA and client, as kubeadm sets them up: without them the
# controller manager and the scheduler (which delegate authentication to the API server) log an
# error for the missing requestheader CA bundle every few seconds.
ca front-proxy-ca rivulet-k8s-front-proxy-ca
cert front-proxy-client "/CN=front-proxy-client" "$CLIENT_EXT" front-proxy-ca
# The service-account token signing pair.
openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
chmod 600 "$PKI"/*.key

kubeconfig() { # FILE CERT-NAME USER
    local f=$1
    "$KUBECTL" config --kubeconfig="$f" set-cluster rivulet --server="https://$BRIDGE_ADDR:$APISERVER_PORT" \
        --certificate-authority="$PKI/ca.crt" --embed-certs=true >/dev/null
    "$KUBECTL" config --kubeconfig="$f" set-credentials "$3" --client-certificate="$PKI/$2.crt" \
        --client-key="$PKI/$2.key" --embed-certs=true >/dev/null
    "$KUBECTL" config --kubeconfig="$f" set-context rivulet --cluster=rivulet --user="$3" >/dev/null
    "$KUBECTL" config --kubeconfig="$f" use-context rivulet >/dev/null
    chmod 600 "$f"
}
kubeconfig "$STATE/admin.kubeconfig" admin kubernetes-admin
kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
kubeconfig "$STATE/scheduler.kubeconfig" scheduler system:kube-scheduler

# --- processes -----------------------------------------------------------------------------
# start NAME CMD...: run CMD in its own session (down.sh kills the process group), log to
# .k8s/logs/NAME.log, pid in .k8s/pids/NAME.pid.
start() {
    local name=$1; shift
    log "starting $name"
    # shellcheck disable=SC2016  # expanded by the inner shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDS/$name.pid" "$@" \
        >"$LOGS/$name.log" 2>&1 </dev/null &
    for _ in $(seq 50); do [[ -s $PIDS/$name.pid ]] && return; sleep 0.1; done
    die "$name did not start"
}

# wait_ready NAME SECONDS CHECK...: poll CHECK until it succeeds; fail early if NAME died.
wait_ready() {
    local name=$1 secs=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ! alive "$PIDS/$name.pid"; then
            log "$name exited; last lines of $LOGS/$name.log:"
            tail -n 25 "$LOGS/$name.log" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "$name not ready after ${secs}s; last lines of $LOGS/$name.log:"
            tail -n 25 "$LOGS/$name.log" >&2
            return 1
        fi
        sleep 0.5
    done
    log "$name ready"
}

# The bed is for tests: etcd skips fsync (its data is thrown away by down.sh).
start etcd "$K8S_BIN/etcd" --name rivk8s --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "rivk8s=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync
wait_ready etcd 30 curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

# Default admission plugins (no --enable-admission-plugins): what a stock cluster runs.
start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --bind-address="$BRIDGE_ADDR" --advertise-address="$BRIDGE_ADDR" --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer="$SA_ISSUER" \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true \
    --v=1
APICURL=(curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
wait_ready kube-apiserver 120 "${APICURL[@]}" "https://$BRIDGE_ADDR:$APISERVER_PORT/readyz"

start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --controllers='*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --cluster-name=rivulet \
    --leader-elect=false \
    --v=1
wait_ready kube-controller-manager 60 curl -kfsS "https://127.0.0.1:$KCM_PORT/healthz"

start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false \
    --v=1
wait_ready kube-scheduler 60 curl -kfsS "https://127.0.0.1:$SCHEDULER_PORT/readyz"

export KUBECONFIG=$STATE/admin.kubeconfig

# --- the cluster's DNS view and the user's entry points ----------------------------------------
# The node agent rewrites .k8s/hosts in place (it is bind-mounted); start from the host's view.
cp /etc/hosts "$STATE/hosts"
cat >"$STATE/env" <<EOF
# Source me: kubectl and helm $K8S_VERSION / $HELM_VERSION against the local bed.
export KUBECONFIG=$STATE/admin.kubeconfig
export PATH=$K8S_BIN:\$PATH
export RIVULET_K8S_EXEC=$STATE/exec
EOF
cat >"$STATE/exec" <<EOF
#!/usr/bin/env bash
# Runs a command with the cluster's DNS view: its own mount namespace in which .k8s/hosts
# (pod and Service names -> pod IPs, kept by the node agent) is bind-mounted over /etc/hosts;
# volumes the agent mounts later under .k8s/volumes still show up (slave propagation).
set -euo pipefail
[[ \$# -gt 0 ]] || { echo "usage: .k8s/exec COMMAND [ARGS...]" >&2; exit 2; }
source "$STATE/env"
exec unshare --mount --propagation slave -- \\
    bash -c 'mount --bind "\$0" /etc/hosts && exec "\$@"' "$STATE/hosts" "\$@"
EOF
chmod +x "$STATE/exec"

# --- cluster content and nodes ---------------------------------------------------------------
shopt -s nullglob
manifests=("$LOCAL_DIR"/manifests/*.yaml)
if ((${#manifests[@]})); then
    log "applying ${#manifests[@]} manifest(s) from e2e/local/manifests/"
    for m in "${manifests[@]}"; do "$KUBECTL" apply -f "$m" >>"$LOGS/manifests.log"; done
fi

if [[ $WANT_NODES == 0 ]]; then
    log "RIVULET_K8S_NODES=0: control plane only, no node agent"
else
    if [[ ! -x $VENV/bin/python ]]; then python3 -m venv "$VENV"; fi
    if [[ -f $LOCAL_DIR/node-agent/requirements.txt ]]; then
        "$VENV/bin/pip" install --quiet -r "$LOCAL_DIR/node-agent/requirements.txt"
    fi
    # The agent writes .k8s/nodes/agent.pid itself; the pid file here is the same process.
    start node-agent "$VENV/bin/python" "$AGENT" --kubeconfig "$STATE/admin.kubeconfig" \
        --state-dir "$STATE/nodes" --bin-dir "$BIN_DIR" --zones "$ZONES" --bridge "$BRIDGE" \
        --apiserver-host "$BRIDGE_ADDR" --apiserver-port "$APISERVER_PORT" --ca "$PKI/ca.crt" \
        --hosts-file "$STATE/hosts"
    ready_nodes() {
        [[ $("$KUBECTL" get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
            grep -c '^True$') -ge $WANT_NODES ]]
    }
    wait_ready node-agent 120 ready_nodes
fi

trap - EXIT
log "up: source $STATE/env (kubectl, helm, KUBECONFIG); $STATE/exec CMD runs CMD with the cluster's names"
