"""The Java Kafka client (kafka-clients, the version pinned in ../pom.xml) against Rivulet's
3-broker cluster, and the same cases against Apache Kafka's (so that the suite itself is checked
against the reference: a case that fails there is a wrong test). ClientSuite.java runs every case
in one JVM; each case is one pytest test here, so a failure names the case and shows the Java
stack trace."""

from __future__ import annotations

import re
import subprocess

import pytest

import kafka_ref

CASES = ["describe_cluster", "idempotent_producer", "compression_gzip", "compression_snappy", "compression_lz4",
         "compression_zstd", "group_cooperative_sticky", "admin_topics", "admin_configs", "create_partitions",
         "describe_log_dirs", "reassignment", "offsets_for_times", "delete_records", "acls"]


def run_suite(cluster) -> dict[str, tuple[str, str]]:
    argv = kafka_ref.java_argv("ClientSuite", [cluster.bootstrap, str(len(cluster.brokers))], heap=["-Xmx512m"],
                               with_suite=True)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=540)
    out = p.stdout
    print(out[-20000:])
    print(p.stderr[-5000:])
    found: dict[str, tuple[str, str]] = {}
    # Each case's own output runs from its status line to the next one.
    marks = list(re.finditer(r"^(PASS|FAIL|SKIP) (\w+)(.*)$", out, re.M))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(out)
        found[m.group(2)] = (m.group(1), out[m.start():end])
    assert re.search(r"^\d+ passed, \d+ failed, \d+ skipped$", out, re.M), f"ClientSuite did not finish:\n{out[-3000:]}\n{p.stderr[-3000:]}"
    assert set(found) == set(CASES), f"cases run {sorted(found)} differ from {sorted(CASES)}"
    return found


@pytest.fixture(scope="module")
def on_rivulet(rivulet):
    return run_suite(rivulet)


@pytest.fixture(scope="module")
def on_kafka(kafka):
    return run_suite(kafka)


@pytest.mark.parametrize("case", CASES)
def test_java_client_rivulet(on_rivulet, case):
    check(on_rivulet, case)


@pytest.mark.parametrize("case", CASES)
def test_java_client_kafka(on_kafka, case):
    check(on_kafka, case)


def check(results, case):
    status, text = results[case]
    if status == "SKIP":
        pytest.skip(text.strip())
    assert status == "PASS", text
