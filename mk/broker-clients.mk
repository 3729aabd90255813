# Real-client suites and benchmark for rivulet-broker (kcat, confluent-kafka, kafka-python,
# kafkajs; rivulet-loadgen on librdkafka). They run against $(BIN)/rivulet-broker, which the root
# `build` target produces.

BROKER_CLIENTS_DIR := broker/tests/clients
BROKER_KAFKAJS_DIR := broker/tests/kafkajs

DEPS_TARGETS += deps-broker
TEST_TARGETS += test-broker-clients
BENCH_TARGETS += bench-broker

.PHONY: deps-broker test-broker-clients bench-broker

deps-broker: venv
	bash scripts/apt-install.sh kcat strace openssl libssl-dev pkg-config
	$(PIP) install --quiet -r $(BROKER_CLIENTS_DIR)/requirements.txt
	cd $(BROKER_KAFKAJS_DIR) && (npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error)

# kcat, confluent-kafka, kafka-python and kafkajs (driven from pytest) against a real broker process.
test-broker-clients:
	RIVULET_BROKER_BIN=$(BIN)/rivulet-broker $(PY) -m pytest $(BROKER_CLIENTS_DIR) -q

# Prints throughput, latency, RSS and CPU figures; asserts nothing about speed.
bench-broker:
	$(PY) loadgen/bench/bench_broker.py --broker $(BIN)/rivulet-broker --loadgen $(BIN)/rivulet-loadgen

# Consumer groups: rebalance time of 10 joining members and OffsetCommit cost; prints figures only.
BENCH_TARGETS += bench-groups
.PHONY: bench-groups
bench-groups:
	$(PY) broker/bench/groups_bench.py --broker $(BIN)/rivulet-broker

# Broker-side recompression (topic compression.type): MB/s and CPU-s per GB for each codec pair.
BENCH_TARGETS += bench-recompress
.PHONY: bench-recompress
bench-recompress:
	$(CARGO) run --release -q -p rivulet-storage --example recompress_bench
