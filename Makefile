# Rivulet's front door. Component-specific targets live in mk/<component>.mk;
# each one appends to DEPS_TARGETS / TEST_TARGETS / BENCH_TARGETS.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export CARGO_TERM_COLOR ?= never

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/release

DEPS_TARGETS :=
TEST_TARGETS :=
BENCH_TARGETS :=

include $(sort $(wildcard mk/*.mk))

.PHONY: help run test bench deps venv build lint test-rust

help:
	@echo "make run     start a local Rivulet on 127.0.0.1 (no Kubernetes needed)"
	@echo "make test    install test tools, build, lint and run every test suite"
	@echo "make bench   run the benchmarks and print figures"
	@echo "make crds    regenerate crds/ from the Rust types"
	@echo "make images  build the container images (needs Docker)"
	@echo "make e2e     run the kind suite (needs Docker, kind, kubectl, helm)"

# A Python virtualenv shared by all client test suites.
venv: $(VENV)/.created
$(VENV)/.created:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	touch $@

run: run-broker

deps: venv $(DEPS_TARGETS)

build:
	$(CARGO) build --release --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# `cargo test` also builds every binary (the packages have integration tests), with the same
# feature set as the tests; a separate `cargo build` would compile much of the tree again.
# `deps` installed Apache ZooKeeper: the broker's side-by-side tests must run, not skip.
test-rust:
	RIVULET_REQUIRE_ZOOKEEPER=1 $(CARGO) test --release --workspace --all-targets

test: deps lint test-rust $(TEST_TARGETS)
	@echo "make test: all suites passed"

bench: deps build $(BENCH_TARGETS)
