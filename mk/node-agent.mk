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
