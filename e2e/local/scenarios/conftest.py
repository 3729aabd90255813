"""The scenarios need the operator: the chart is installed once with the real helm CLI (as the
main suite does) unless a release is already there, and uninstalled afterwards if we installed it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CHART = str(Path(__file__).resolve().parents[3] / "charts" / "rivulet-operator")


@pytest.fixture(scope="session", autouse=True)
def operator():
    present = subprocess.run(["helm", "status", "rivulet", "-n", "rivulet-system"], capture_output=True).returncode == 0
    if not present:
        subprocess.run(["helm", "install", "rivulet", CHART, "-n", "rivulet-system", "--create-namespace",
                        "--wait", "--timeout", "5m"], check=True, capture_output=True, text=True)
    yield
    if not present:
        subprocess.run(["helm", "uninstall", "rivulet", "-n", "rivulet-system", "--wait"], capture_output=True)
