# The local Kubernetes bed's node agent (e2e/local/node-agent): unit tests of its pure parts
# (env expansion, probe thresholds, hosts file, restart back-off, storage decisions, phases).

NODE_AGENT_DIR := e2e/local/node-agent

DEPS_TARGETS += deps-node-agent
TEST_TARGETS += test-node-agent

.PHONY: deps-node-agent test-node-agent

deps-node-agent: venv
	$(PIP) install --quiet -r $(NODE_AGENT_DIR)/requirements.txt

test-node-agent: deps-node-agent
	$(PY) -m pytest $(NODE_AGENT_DIR)/tests -q

# The agent against a real control plane (brings the bed up, runs bed_tests/, brings it down).
# Needs the bed's binaries (make k8s-build) and ours; not part of `make test` on its own: the
# end-to-end suite (make e2e-local) runs on the same bed.
.PHONY: test-node-agent-bed
test-node-agent-bed: deps-node-agent
	$(CARGO) build --release -p rivulet-broker -p rivulet-coordinator -p rivulet-operator --bins
	RIVULET_BIN_DIR=$(BIN) RIVULET_VENV=$(VENV) e2e/local/up.sh
	source .k8s/env && $(PY) -m pytest $(NODE_AGENT_DIR)/bed_tests -q -x; rc=$$?; e2e/local/down.sh; exit $$rc
