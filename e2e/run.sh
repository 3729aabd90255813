#!/usr/bin/env bash
# End-to-end suite on kind: builds the images, installs the chart, applies the dev example and
# waits for the cluster and topic to become Ready. Needs docker, kind, kubectl and helm; skips
# (exit 0, with the reason) where any of them is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in docker kind kubectl helm; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if ! docker info >/dev/null 2>&1; then missing+=("a running Docker daemon"); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "e2e: SKIPPED — missing: ${missing[*]} (install them to run the kind suite)"
  exit 0
fi
TAG=${IMAGE_TAG:-0.1.0}
CLUSTER=${KIND_CLUSTER:-rivulet-e2e}
cleanup() { [ "${KEEP_CLUSTER:-}" = 1 ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; }
trap cleanup EXIT
kind create cluster --name "$CLUSTER" --config e2e/kind.yaml --wait 120s
make images IMAGE_TAG="$TAG"
kind load docker-image --name "$CLUSTER" "rivulet-broker:$TAG" "rivulet-operator:$TAG"
helm install rivulet charts/rivulet-operator --namespace rivulet-system --create-namespace --wait --timeout 3m
# kind nodes are small: the one-broker dev cluster, not the 3x2 example.
kubectl apply -f examples/kafkacluster-dev.yaml
kubectl wait kafkacluster/dev --for=condition=Ready --timeout=600s
kubectl get statefulsets,services,pdb -o wide
kubectl apply -f e2e/topic.yaml
kubectl wait kafkatopic/e2e --for=condition=Ready --timeout=180s
kubectl get kafkatopic/e2e -o jsonpath='{.status.topicId}{"\n"}'
kubectl delete -f e2e/topic.yaml --wait --timeout=120s
kubectl delete -f examples/kafkacluster-dev.yaml --wait --timeout=300s
echo "e2e: passed"
