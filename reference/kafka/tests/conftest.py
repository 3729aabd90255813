"""Fixtures for the Kafka-reference suites: one Rivulet cluster (coordinator + 3 brokers, from the
cluster fault suite's harness) and one Apache Kafka 3-node KRaft cluster (kafka_ref), each shared
by the whole session (every test uses its own topics and groups) and torn down after it; node log
tails are attached to failures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "broker" / "tests" / "cluster"))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from cluster import Cluster  # noqa: E402
from reference import KafkaCluster  # noqa: E402


SHARED: list = []


@pytest.fixture(scope="session")
def rivulet(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("rivulet"), coordinator="rivulet")
    SHARED.append(c)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    c = KafkaCluster(tmp_path_factory.mktemp("kafka"))
    SHARED.append(c)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def kafka_factory(tmp_path, request):
    """A fresh Apache Kafka cluster per test (for tests that kill nodes)."""
    made: list[KafkaCluster] = []

    def make(**kw) -> KafkaCluster:
        c = KafkaCluster(tmp_path / f"kafka-{len(made)}", **kw)
        made.append(c)
        request.node._clusters = made
        c.start()
        return c

    yield make
    for c in made:
        c.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        clusters = getattr(item, "_clusters", []) + [c for c in SHARED if c.brokers and c.brokers[0].proc]
        for c in clusters:
            for n in c.nodes():
                rep.sections.append((f"{n.name} log tail ({n.log_path})", n.log_tail(30)))
