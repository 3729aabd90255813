# Cluster mode (issue 6): the fault suite (3 brokers + rivulet-coordinator or Apache ZooKeeper 3.8,
# kill -9 / SIGTERM / network namespaces, checked by a checker of every acknowledged write) and
# the cluster benchmark. Both run against $(BIN)/rivulet-broker and $(BIN)/rivulet-coordinator.

CLUSTER_TEST_DIR := broker/tests/cluster

DEPS_TARGETS += deps-cluster
TEST_TARGETS += test-cluster
BENCH_TARGETS += bench-cluster

.PHONY: deps-cluster test-cluster bench-cluster

# Apache ZooKeeper 3.8 + a JRE (the reference coordinator), iproute2 (network namespaces).
deps-cluster: venv
	scripts/apt-install.sh libzookeeper-java iproute2 openssl
	command -v java >/dev/null || scripts/apt-install.sh default-jre-headless
	$(PIP) install --quiet -r $(CLUSTER_TEST_DIR)/requirements.txt

# Partition tests need root for `ip netns`; elsewhere they skip and say why.
test-cluster:
	RIVULET_BIN_DIR=$(BIN) timeout 1500 $(PY) -m pytest $(CLUSTER_TEST_DIR) -q

# Prints throughput, latency and failover figures (RF=3 acks=all vs RF=1 acks=1); asserts nothing.
bench-cluster:
	$(PY) broker/bench/bench_cluster.py --bin-dir $(BIN)
