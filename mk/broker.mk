# The broker: `make run` starts a standalone broker on loopback.
.PHONY: run-broker

RUN_DATA ?= $(CURDIR)/data

run-broker:
	$(CARGO) build --release -p rivulet-broker
	@mkdir -p $(RUN_DATA)/broker-0
	@echo "rivulet-broker: Kafka on 127.0.0.1:9092, admin http://127.0.0.1:8092/metrics, data in $(RUN_DATA)/broker-0"
	@echo "  produce:  echo 'key1:hello' | kcat -P -b 127.0.0.1:9092 -t demo -K:"
	@echo "  consume:  kcat -C -b 127.0.0.1:9092 -t demo -o beginning -e -f '%k => %s\n'"
	@echo "  metadata: kcat -L -b 127.0.0.1:9092"
	@echo "  stop:     Ctrl-C"
	exec $(BIN)/rivulet-broker --broker-id 0 --listen-addr 127.0.0.1:9092 --admin-addr 127.0.0.1:8092 --data-dir $(RUN_DATA)/broker-0

.PHONY: test-readme
TEST_TARGETS += test-readme
test-readme:
	BIN=$(BIN) scripts/check-readme-examples.sh

.PHONY: deps-readme
DEPS_TARGETS += deps-readme
deps-readme:
	scripts/apt-install.sh curl kcat
