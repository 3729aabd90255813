#!/usr/bin/env bash
# `make e2e-local`: the node agent's bed tests and the operator's end-to-end scenario on one local
# Kubernetes bed. Brings the bed up (up.sh builds what is missing), runs both suites with the
# cluster's DNS view (.k8s/exec) and brings it down again, also on failure, unless E2E_KEEP=1.
#
# Environment: RIVULET_BIN_DIR (our binaries, default target/release), RIVULET_VENV (default .venv),
# E2E_KEEP=1 (leave the bed up), E2E_SUITES (default "node-agent/bed_tests suite scenarios").
set -euo pipefail
# shellcheck source=e2e/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VENV=${RIVULET_VENV:-$REPO/.venv}
PY=$VENV/bin/python
"$PY" -m pip install --quiet -r "$LOCAL_DIR/suite/requirements.txt" -r "$LOCAL_DIR/node-agent/requirements.txt"

"$LOCAL_DIR/up.sh"
finish() {
    local rc=$?
    if [[ $rc != 0 ]]; then
        log "FAILED (exit $rc): component logs in .k8s/logs, pod logs in .k8s/nodes/*/pods"
        tail -n 40 "$STATE/logs/node-agent.log" >&2 2>/dev/null || true
        tail -n 40 "$STATE"/nodes/*/pods/rivulet-system_*/operator.log >&2 2>/dev/null || true
    fi
    if [[ ${E2E_KEEP:-0} != 1 ]]; then "$LOCAL_DIR/down.sh" || true; fi
    exit "$rc"
}
trap finish EXIT
# shellcheck source=/dev/null
source "$STATE/env"
cd "$REPO"
for suite in ${E2E_SUITES:-node-agent/bed_tests suite scenarios}; do
    log "suite: e2e/local/$suite"
    "$STATE/exec" env PATH="$PATH" KUBECONFIG="$KUBECONFIG" "$PY" -m pytest "$LOCAL_DIR/$suite" -q -x "$@"
done
log "e2e-local: passed"
