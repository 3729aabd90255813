# `make run`: a local cluster on loopback — a coordinator and three brokers, one per zone (scripts/run-local.sh).
.PHONY: run-broker

RUN_DATA ?= $(CURDIR)/data

run-broker:
	$(CARGO) build --release -p rivulet-broker -p rivulet-coordinator
	BIN=$(BIN) RUN_DATA=$(RUN_DATA) scripts/run-local.sh

.PHONY: test-readme
TEST_TARGETS += test-readme
test-readme:
	BIN=$(BIN) scripts/check-readme-examples.sh

.PHONY: deps-readme
DEPS_TARGETS += deps-readme
deps-readme:
	scripts/apt-install.sh curl kcat
