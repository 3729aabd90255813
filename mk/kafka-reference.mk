# Apache Kafka as the reference (issue 15): the pinned Kafka jars (reference/kafka/pom.xml) in
# ~/.cache/rivulet-kafka/<version>/, the Java client suite compiled there, franz-go in GOMODCACHE.
# The suites run the Java client, franz-go and Kafka's own CLI tools against a 3-broker Rivulet
# cluster and against Apache Kafka's 3-node KRaft cluster, and the cluster fault suite's checker
# against Kafka (it must pass there). `make run-kafka` runs the reference on 127.0.0.1:19092-19094.

KAFKA_REF_DIR := reference/kafka

DEPS_TARGETS += deps-kafka-reference
TEST_TARGETS += test-kafka-reference
BENCH_TARGETS += bench-kafka-reference

.PHONY: deps-kafka-reference test-kafka-reference bench-kafka-reference run-kafka run-kafka-single

deps-kafka-reference: venv
	$(PIP) install --quiet -r broker/tests/cluster/requirements.txt -r $(KAFKA_REF_DIR)/bench/requirements.txt
	bash $(KAFKA_REF_DIR)/install.sh

test-kafka-reference:
	RIVULET_BIN_DIR=$(BIN) timeout 1800 $(PY) -m pytest $(KAFKA_REF_DIR)/tests -q -ra

# Rivulet vs Apache Kafka, same clients, same run: prints figures, writes docs/bench-kafka-*.png.
bench-kafka-reference:
	$(PY) $(KAFKA_REF_DIR)/bench/side_by_side.py --bin-dir $(BIN)

# Apache Kafka on loopback next to `make run` (brokers 19092-19094, KRaft controllers 19192-19194).
run-kafka: deps-kafka-reference
	python3 $(KAFKA_REF_DIR)/kafka_ref.py run cluster

run-kafka-single: deps-kafka-reference
	python3 $(KAFKA_REF_DIR)/kafka_ref.py run single
