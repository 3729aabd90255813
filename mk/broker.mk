# `make run`: a coordinator and a standalone broker on loopback (scripts/run-local.sh).
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
