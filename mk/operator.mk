# The operator: CRDs, chart, images, kind suite. Cargo tests (builders, reconcile, topic
# controller, pod contract) run in the root test-rust target; here live the non-cargo suites.
.PHONY: deps-operator test-operator bench-operator crds images e2e

DEPS_TARGETS += deps-operator
TEST_TARGETS += test-operator
BENCH_TARGETS += bench-operator

deps-operator: venv
	$(PIP) install --quiet -r operator/tests/requirements.txt

# Chart rendered and linted with Helm's SDK, manifests/CRDs validated, examples checked.
test-operator:
	cd operator/tests/chart && $(PY) -m pytest -q -p no:cacheprovider

# Prints RSS and reconcile latency figures against the in-memory API.
bench-operator:
	$(CARGO) run --release -p rivulet-operator --example bench-operator

# Regenerates crds/, the chart's crds/ and docs/crd-reference.md from the Rust types.
crds:
	$(CARGO) run --quiet -p rivulet-operator --bin crdgen -- $(CURDIR)

IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
images:
	docker build -f docker/broker.Dockerfile -t rivulet-broker:$(IMAGE_TAG) .
	docker build -f docker/operator.Dockerfile -t rivulet-operator:$(IMAGE_TAG) .

e2e:
	IMAGE_TAG=$(IMAGE_TAG) e2e/run.sh
