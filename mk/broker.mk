# `make run`: a local cluster on loopback — a coordinator and three brokers, one per zone (scripts/run-local.sh).
.PHONY: run-broker

RUN_DATA ?= $(CURDIR)/data

run-broker:
	$(CARGO) build --release -p rivulet-broker -p rivulet-coordinator
	BIN=$(BIN) RUN_DATA=$(RUN_DATA) scripts/run-local.sh

# `make run-secure`: the same cluster over SASL_SSL with ACLs (scripts/run-local.sh, RUN_SECURE=1).
.PHONY: run-secure
RUN_SECURE_DATA ?= $(CURDIR)/data-secure
run-secure:
	$(CARGO) build --release -p rivulet-broker -p rivulet-coordinator
	BIN=$(BIN) RUN_SECURE=1 RUN_DATA=$(RUN_SECURE_DATA) scripts/run-local.sh

# `make run-secure` started as a user would, checked with kcat -F data-secure/client.properties.
.PHONY: test-run-secure
TEST_TARGETS += test-run-secure
test-run-secure:
	$(CARGO) build --release -p rivulet-broker -p rivulet-coordinator
	BIN=$(BIN) scripts/check-run-secure.sh

.PHONY: test-readme
TEST_TARGETS += test-readme
test-readme:
	BIN=$(BIN) scripts/check-readme-examples.sh

.PHONY: deps-readme
DEPS_TARGETS += deps-readme
deps-readme:
	scripts/apt-install.sh curl kcat openssl
