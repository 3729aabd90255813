"""Fixtures: fresh clusters (coordinator + 3 brokers) per test, torn down afterwards; node log
tails attached to failure reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster import Cluster  # noqa: E402
from harness import ClusterModeMissing  # noqa: E402


@pytest.fixture
def cluster_factory(tmp_path, request):
    """cluster_factory(coordinator="rivulet"|"zookeeper", **broker_flags) -> started Cluster."""
    made: list[Cluster] = []

    def make(coordinator: str = "rivulet", start: bool = True, **kw) -> Cluster:
        c = Cluster(tmp_path / f"cluster-{len(made)}", coordinator=coordinator, **kw)
        made.append(c)
        request.node._clusters = made
        if start:
            try:
                c.start()
            except ClusterModeMissing as e:
                pytest.fail(f"rivulet-broker refused cluster mode: {e}")
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def cluster(cluster_factory) -> Cluster:
    return cluster_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for c in getattr(item, "_clusters", []):
            for n in c.nodes():
                rep.sections.append((f"{n.name} log tail ({n.log_path})", n.log_tail(40)))
