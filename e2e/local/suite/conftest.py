"""Fixtures of the local-Kubernetes suite. It runs inside `.k8s/exec` (the cluster's DNS view),
with `.k8s/env` sourced (kubectl and helm first on PATH, KUBECONFIG set): see ../run-e2e.sh."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "broker" / "tests" / "cluster"))

from kube import NS, REPO, helm, kubectl, run  # noqa: E402

OPERATOR_NS = "rivulet-system"
RELEASE = "rivulet"
CHART = str(REPO / "charts" / "rivulet-operator")


@pytest.fixture(scope="session")
def operator():
    """The chart installed with the real helm CLI and its defaults (CRDs from the chart's crds/)."""
    helm("install", RELEASE, CHART, "-n", OPERATOR_NS, "--create-namespace", "--wait", "--timeout", "5m")
    yield RELEASE
    # Whatever the tests left: the suite's own objects go first, so the operator can run finalizers.
    kubectl("delete", "kafkatopics,kafkaclusters", "--all", "-n", NS, "--wait=true", "--timeout=300s", check=False)
    run(["helm", "uninstall", RELEASE, "-n", OPERATOR_NS, "--wait"], check=False)


@pytest.fixture(scope="session")
def namespace(operator):
    kubectl("create", "namespace", NS, check=False)
    return NS
