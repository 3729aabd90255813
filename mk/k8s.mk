# The local Kubernetes bed (issue 11, docs/e2e.md): a control plane built from Go modules
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm; cached under
# ~/.cache/rivulet-k8s/<version>/) and a node agent running pods as processes in three zones.
# `make test` runs e2e-local (the node agent's bed tests, the operator scenario and the storage
# autoscaling scenarios on one bed; e2e/local/run-e2e.sh).
.PHONY: k8s-build k8s-up k8s-down e2e-local

TEST_TARGETS += e2e-local

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

# The end-to-end suites on one bed (up, suites, down; E2E_KEEP=1 leaves it up).
# The binaries are built as test-rust builds them (same features), so after it this is a no-op.
e2e-local: venv k8s-build
	$(CARGO) test --release --workspace --all-targets --no-run
	RIVULET_BIN_DIR=$(BIN) RIVULET_VENV=$(VENV) $(K8S_LOCAL)/run-e2e.sh

# A quick check of the bed alone (up, readyz, three Ready zone nodes, RBAC, helm, down).
.PHONY: k8s-smoke
k8s-smoke: venv k8s-build
	$(CARGO) build --release -p rivulet-broker -p rivulet-coordinator -p rivulet-operator --bins
	RIVULET_BIN_DIR=$(BIN) RIVULET_VENV=$(VENV) $(K8S_LOCAL)/smoke.sh

# Rolls of 3 and 6 brokers on the bed under an acks=all load: prints the duration, the producer's
# p99 and where it waited (BENCH lines; e2e/local/scenarios/test_rolling_restart.py).
.PHONY: bench-k8s-roll
BENCH_TARGETS += bench-k8s-roll
bench-k8s-roll: venv k8s-build
	$(CARGO) build --release -p rivulet-broker -p rivulet-coordinator -p rivulet-operator --bins
	RIVULET_E2E_BENCH=1 E2E_SUITES=scenarios RIVULET_BIN_DIR=$(BIN) RIVULET_VENV=$(VENV) \
		$(K8S_LOCAL)/run-e2e.sh -k rolls -s
