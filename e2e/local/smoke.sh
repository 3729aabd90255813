#!/usr/bin/env bash
# Smoke check of the local Kubernetes bed until the end-to-end suite exists: up.sh, then the API
# server's /readyz, the expected number of Ready zone nodes, RBAC answering both ways, helm talking
# to the cluster, and down.sh (always, also on failure).
set -euo pipefail
# shellcheck source=e2e/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WANT_NODES=${RIVULET_K8S_NODES:-3}

"$LOCAL_DIR/up.sh"
trap '"$LOCAL_DIR/down.sh"' EXIT
# shellcheck source=/dev/null
source "$STATE/env"

check() { log "check: $*"; }
fail() { log "FAIL: $*"; exit 1; }

check "kubectl get --raw /readyz"
[[ $(kubectl get --raw /readyz) == ok ]] || fail "/readyz is not ok"

check "the API server reports $K8S_VERSION"
kubectl get --raw /version | grep -q "\"gitVersion\": \"$K8S_VERSION\"" || fail "server is not $K8S_VERSION"

check "$WANT_NODES Ready node(s), one per zone"
kubectl get nodes -L topology.kubernetes.io/zone
ready=$(kubectl get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)
[[ $ready -eq $WANT_NODES ]] || fail "$ready Ready node(s), want $WANT_NODES"
if ((WANT_NODES)); then
    zones=$(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.labels.topology\.kubernetes\.io/zone}{"\n"}{end}' | sort -u | paste -sd,)
    [[ $zones == "$ZONES" ]] || fail "node zones are '$zones', want '$ZONES'"
fi

check "RBAC: the admin may create StatefulSets, a namespace's default ServiceAccount may not"
[[ $(kubectl auth can-i create statefulsets.apps --all-namespaces) == yes ]] || fail "admin refused"
if kubectl auth can-i create statefulsets.apps -n default --as=system:serviceaccount:default:default; then
    fail "RBAC let the default ServiceAccount create StatefulSets"
fi

check "the default ServiceAccount exists (service-account controller, token signing)"
for _ in $(seq 60); do kubectl get serviceaccount default -n default >/dev/null 2>&1 && break; sleep 1; done
kubectl create token default -n default --duration=10m >/dev/null || fail "TokenRequest failed"

check "helm $HELM_VERSION reaches the cluster"
helm version --short | grep -q "^${HELM_VERSION}" || fail "helm is not $HELM_VERSION"
helm list --all-namespaces >/dev/null || fail "helm cannot list releases"

log "smoke: all checks passed"
