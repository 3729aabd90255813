#!/usr/bin/env bash
# The operator's end-to-end suite on the local control plane (`make e2e-local`): brings the bed up
# (building what is missing), runs e2e/local/suite with the cluster's DNS view, and brings the bed
# down again unless E2E_KEEP=1 (or the bed was already up when we started).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-$PWD/.venv/bin/python}
BIN_DIR=${BIN_DIR:-$PWD/target/release}
for b in rivulet-broker rivulet-coordinator rivulet-operator; do
  [ -x "$BIN_DIR/$b" ] || { echo "e2e-local: $BIN_DIR/$b is missing (run: cargo build --release --workspace --bins)" >&2; exit 1; }
done
"$PY" -m pip install --quiet -r e2e/local/suite/requirements.txt

started=0
if [ ! -e .k8s/env ]; then
  BIN_DIR="$BIN_DIR" e2e/local/up.sh
  started=1
fi
finish() {
  rc=$?
  if [ "$rc" != 0 ]; then
    echo "e2e-local: failed; component logs are in .k8s/logs, pod logs under .k8s/nodes/*/pods" >&2
    tail -n 30 .k8s/logs/node-agent.log 2>/dev/null >&2 || true
  fi
  if [ "$started" = 1 ] && [ "${E2E_KEEP:-0}" != 1 ]; then e2e/local/down.sh || true; fi
  exit "$rc"
}
trap finish EXIT
# shellcheck disable=SC1091
source .k8s/env
.k8s/exec env PATH="$PATH" KUBECONFIG="$KUBECONFIG" "$PY" -m pytest e2e/local/suite -q "$@"
