# Authenticated clients (issue 14): the cost of TLS, SASL SCRAM and the ACL authorizer.
# Prints TLS handshakes/s (full and resumed) and SCRAM-SHA-512 logins/s against a real broker's
# listeners, and produce/consume throughput over PLAINTEXT, SSL and SASL_SSL with the authorizer
# off and on (rivulet-loadgen on librdkafka for every row), with broker CPU-s per GB and RSS.
# Asserts nothing about speed; docs/benchmarks.md has the figures of a run.

BENCH_TARGETS += bench-security
.PHONY: bench-security
bench-security:
	$(PY) broker/bench/bench_security.py --broker $(BIN)/rivulet-broker --loadgen $(BIN)/rivulet-loadgen
