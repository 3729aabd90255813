# The local Kubernetes bed (issue 11, docs/e2e.md): a control plane built from Go modules
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm; cached under
# ~/.cache/rivulet-k8s/<version>/) and a node agent running pods as processes in three zones.
# Not wired into `make test` yet: e2e-local joins TEST_TARGETS when the end-to-end suite exists.
.PHONY: k8s-build k8s-up k8s-down e2e-local

K8S_LOCAL := e2e/local

# Builds (once per machine and version) the control-plane binaries from the Go module proxy.
k8s-build:
	$(K8S_LOCAL)/build-k8s.sh

# Starts the bed; the node agent runs our binaries, so they are built first.
k8s-up: venv k8s-build
	$(CARGO) build --release -p rivulet-broker -p rivulet-coordinator -p rivulet-operator --bins
	RIVULET_BIN_DIR=$(BIN) RIVULET_VENV=$(VENV) $(K8S_LOCAL)/up.sh

k8s-down:
	$(K8S_LOCAL)/down.sh

# The end-to-end suite when it exists; until then a smoke check of the bed (up, readyz, three Ready
# nodes, RBAC, helm, down).
e2e-local: venv k8s-build
	$(CARGO) build --release -p rivulet-broker -p rivulet-coordinator -p rivulet-operator --bins
	if [ -x $(K8S_LOCAL)/run-e2e.sh ]; then \
		RIVULET_BIN_DIR=$(BIN) RIVULET_VENV=$(VENV) $(K8S_LOCAL)/run-e2e.sh; \
	else \
		RIVULET_BIN_DIR=$(BIN) RIVULET_VENV=$(VENV) $(K8S_LOCAL)/smoke.sh; \
	fi
