"""Fixtures: a shared broker for the suite, and fresh brokers (own data dir and ports) for tests
that kill, restart or configure one. Every process started here is stopped at teardown."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Broker  # noqa: E402


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """One broker for the tests that only need a working broker (they use unique topic names)."""
    d = tmp_path_factory.mktemp("shared-broker")
    b = Broker(d / "data", d / "broker.log", num_partitions=1)
    b.start()
    yield b
    b.stop()
    if b.proc is not None and b.proc.returncode not in (0, None):
        # A non-zero exit on SIGTERM is a broker bug worth seeing, not hiding.
        print(f"shared broker exited with {b.proc.returncode}:\n{b.log_tail()}", file=sys.stderr)


@pytest.fixture
def broker_factory(tmp_path):
    """Starts fresh brokers: broker_factory(log_segment_bytes=4096, ...)."""
    started: list[Broker] = []

    def make(start: bool = True, **flags) -> Broker:
        n = len(started)
        b = Broker(tmp_path / f"data-{n}", tmp_path / f"broker-{n}.log", **flags)
        started.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in started:
        try:
            b.stop()
        except RuntimeError:
            pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, Broker):
                rep.sections.append((f"broker log tail ({name})", value.log_tail(80)))
