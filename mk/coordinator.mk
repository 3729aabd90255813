# rivulet-coordinator: the ZooKeeper-wire-compatible metadata service.
COORD_BIN ?= $(BIN)/rivulet-coordinator
COORD_PYTEST = cd coordinator/tests/py && RIVULET_COORDINATOR_BIN=$(COORD_BIN) timeout 900 $(PY) -m pytest -q -p no:cacheprovider -rf

DEPS_TARGETS += deps-coordinator
TEST_TARGETS += test-coordinator
BENCH_TARGETS += bench-coordinator

.PHONY: deps-coordinator test-coordinator bench-coordinator run-coordinator

# Apache ZooKeeper 3.8 (reference server and Java CLI) + a JRE; kazoo/pytest in the venv.
deps-coordinator: venv
	scripts/apt-install.sh libzookeeper-java
	command -v java >/dev/null || scripts/apt-install.sh default-jre-headless
	$(PIP) install --quiet -r coordinator/tests/requirements.txt

test-coordinator:
	$(COORD_PYTEST) .

bench-coordinator:
	$(CARGO) build --release -p rivulet-coordinator --examples
	cd coordinator/tests/py && RIVULET_COORDINATOR_BIN=$(COORD_BIN) \
		COORD_BENCH_BIN=$(TARGET_DIR)/release/examples/zkbench $(PY) bench.py

run-coordinator:
	$(CARGO) build --release -p rivulet-coordinator
	mkdir -p data/coordinator
	$(COORD_BIN) --client-addr 127.0.0.1:2181 --admin-addr 127.0.0.1:8081 --data-dir ./data/coordinator
