"""Storage autoscaling on the local Kubernetes bed (issue 12), written against the bed interface
(docs/e2e.md): `make k8s-up` has run, `.k8s/env` is sourced (KUBECONFIG,
kubectl and helm on PATH), the chart is installed, and this file runs under `.k8s/exec` so the
cluster's Service and pod names resolve:

    . .k8s/env && .k8s/exec .venv/bin/python -m pytest e2e/local/scenarios/test_storage_autoscaling.py -q

StorageClasses: `rivulet-local` (tmpfs, expandable live) and `rivulet-local-fixed` (no expansion).
Each test uses its own namespace and deletes it at the end. The chart is installed by conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "broker", "tests", "cluster"))
import checker  # noqa: E402  (the cluster suite's acknowledged-write checker)

MI = 1 << 20


def kubectl(*args, input=None, check=True) -> str:
    r = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr}")
    return r.stdout


def get(kind, name, ns) -> dict:
    return json.loads(kubectl("get", kind, name, "-n", ns, "-o", "json"))


def wait_for(what, fn, timeout=300.0, every=2.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def bytes_of(q: str) -> int:
    for suffix, mult in (("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40)):
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * mult)
    return int(q)


def cluster_manifest(name, size="64Mi", autoscaling=None, storage_class="rivulet-local", per_zone=1):
    storage = {"size": size, "storageClassName": storage_class}
    if autoscaling is not None:
        storage["autoscaling"] = autoscaling
    return {
        "apiVersion": "rivulet.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": name},
        "spec": {
            "zones": ["zone-a", "zone-b", "zone-c"],
            "brokersPerZone": per_zone,
            "brokerType": "kafka.t3.small",
            "storage": storage,
            # Small segments so the fill is visible on a tmpfs of a few MiB.
            "config": {"log.segment.bytes": str(4 * MI), "default.replication.factor": "3"},
        },
    }


def fast_policy(**over):
    p = {
        "enabled": True,
        "targetUtilizationPercent": 50,
        "criticalUtilizationPercent": 85,
        "maxSize": "256Mi",
        "minIncrement": "16Mi",
        "incrementPercent": 10,
        "marginPercent": 5,
        "cooldown": "1h",
        "checkInterval": "5s",
        "predictionHorizon": "0s",
    }
    p.update(over)
    return p


@pytest.fixture
def ns():
    name = f"as-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(ns, manifest):
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def ready(ns, name):
    def check():
        kc = get("kafkacluster", name, ns)
        conds = {c["type"]: c for c in kc.get("status", {}).get("conditions", [])}
        return conds.get("Ready", {}).get("status") == "True" and kc
    return wait_for(f"{name} Ready", check, timeout=600)


def claims(ns, name) -> dict:
    """The brokers' claims (the coordinator's claim is not autoscaled)."""
    out = json.loads(kubectl("get", "pvc", "-n", ns, "-l", f"rivulet.dev/cluster={name}", "-o", "json"))
    return {p["metadata"]["name"]: p for p in out["items"] if p["metadata"]["name"].startswith(f"data-{name}-broker-")}


def pods(ns, name) -> dict:
    out = json.loads(kubectl("get", "pods", "-n", ns, "-l", f"rivulet.dev/cluster={name},app.kubernetes.io/component=broker", "-o", "json"))
    return {p["metadata"]["name"]: (p["metadata"]["uid"], sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses", []))) for p in out["items"]}


def events(ns, reason) -> list:
    out = json.loads(kubectl("get", "events.events.k8s.io", "-n", ns, "-o", "json"))
    return [e for e in out["items"] if e.get("reason") == reason]


def create_topic(ns, cluster, topic, partitions=3):
    apply(ns, {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": topic},
               "spec": {"clusterRef": {"name": cluster}, "partitions": partitions, "replicationFactor": 3,
                        "config": {"min.insync.replicas": "2"}}})
    wait_for(f"topic {topic}", lambda: any(c["type"] == "Ready" and c["status"] == "True"
             for c in get("kafkatopic", topic, ns).get("status", {}).get("conditions", [])))


def test_filling_brokers_grow_live_and_nothing_acknowledged_is_lost(ns):
    name = "fill"
    apply(ns, cluster_manifest(name, autoscaling=fast_policy()))
    kc = ready(ns, name)
    bootstrap = f"{name}-bootstrap.{ns}.svc:9092"
    create_topic(ns, name, "fill")
    before = {k: bytes_of(v["spec"]["resources"]["requests"]["storage"]) for k, v in claims(ns, name).items()}
    pods_before = pods(ns, name)
    crossed = None
    load = checker.Load(bootstrap, "fill", 3, rate=400, size=4096).start()
    try:
        def grown():
            nonlocal crossed
            st = get("kafkacluster", name, ns).get("status", {})
            if crossed is None and any((b.get("utilizationPercent") or 0) > 50 for b in st.get("brokers", [])):
                crossed = time.time()
            cl = claims(ns, name)
            resized = all(
                bytes_of(p["spec"]["resources"]["requests"]["storage"]) > before[k]
                and bytes_of(p.get("status", {}).get("capacity", {}).get("storage", "0")) >= bytes_of(p["spec"]["resources"]["requests"]["storage"])
                for k, p in cl.items()
            )
            # Usable: the broker itself (DescribeLogDirs total, as the operator last measured it)
            # sees a filesystem as large as the grown claim.
            brokers = st.get("brokers", [])
            usable = len(brokers) == len(cl) and all(
                (b.get("storageTotalBytes") or 0) >= bytes_of(b["requested"]) * 0.95 for b in brokers)
            return resized and usable and st
        wait_for("every claim grown, resized and seen by its broker", grown, timeout=600)
        usable_at = time.time()
        load.wait_acks(2000, 120, "producing continues after growth")
    finally:
        load.stop()
    print("\n" + checker.verify(load, bootstrap, strict=False))
    if crossed:
        print(f"BENCH target crossed -> capacity usable: {usable_at - crossed:.1f} s")
    assert pods(ns, name) == pods_before, "no broker pod restarted or replaced"
    assert events(ns, "StorageGrown"), "an Event per scale"


def test_fixed_storage_class_refuses_and_patches_nothing(ns):
    name = "fixed"
    apply(ns, cluster_manifest(name, storage_class="rivulet-local-fixed", autoscaling=fast_policy()))
    ready(ns, name)
    m = cluster_manifest(name, size="96Mi", storage_class="rivulet-local-fixed", autoscaling=fast_policy())
    apply(ns, m)

    def refused():
        c = {c["type"]: c for c in get("kafkacluster", name, ns)["status"].get("conditions", [])}
        s = c.get("StorageAutoscaling", {})
        return s.get("status") == "False" and s
    cond = wait_for("StorageAutoscaling=False", refused)
    assert cond["reason"] == "ExpansionNotAllowed", cond
    time.sleep(30)
    assert all(p["spec"]["resources"]["requests"]["storage"] == "64Mi" for p in claims(ns, name).values())
    assert len(events(ns, "ExpansionNotAllowed")) == 1, "one Event, not a retry storm"


def test_manual_increase_grows_every_claim_without_restart_and_reapply_never_shrinks(ns):
    name = "manual"
    apply(ns, cluster_manifest(name))
    ready(ns, name)
    pods_before = pods(ns, name)
    apply(ns, cluster_manifest(name, size="96Mi"))
    wait_for("claims at 96Mi", lambda: all(
        p.get("status", {}).get("capacity", {}).get("storage") == "96Mi" for p in claims(ns, name).values()))
    for i in range(3):
        sts = get("statefulset", f"{name}-broker-z{i}", ns)
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "96Mi"
    ready(ns, name)
    assert pods(ns, name) == pods_before, "same pods, no restarts (orphan recreate)"
    # The original (smaller) manifest is refused by CEL; the same manifest again changes nothing.
    r = subprocess.run(["kubectl", "apply", "-n", ns, "-f", "-"], input=json.dumps(cluster_manifest(name)),
                       capture_output=True, text=True)
    assert r.returncode != 0 and "can't decrease" in r.stderr, r.stderr
    apply(ns, cluster_manifest(name, size="96Mi"))
    time.sleep(20)
    assert all(p["spec"]["resources"]["requests"]["storage"] == "96Mi" for p in claims(ns, name).values())


def test_max_size_and_cooldown(ns):
    """maxSize stops growth with MaxSizeReached; within the cooldown only critical use grows."""
    name = "bounds"
    policy = fast_policy(maxSize="96Mi", minIncrement="32Mi", cooldown="1h")
    apply(ns, cluster_manifest(name, autoscaling=policy))
    ready(ns, name)
    bootstrap = f"{name}-bootstrap.{ns}.svc:9092"
    create_topic(ns, name, "bounds")
    load = checker.Load(bootstrap, "bounds", 3, rate=400, size=4096).start()
    try:
        wait_for("claims at maxSize", lambda: all(
            p["spec"]["resources"]["requests"]["storage"] == "96Mi" for p in claims(ns, name).values()))

        def refused():
            c = {c["type"]: c for c in get("kafkacluster", name, ns)["status"].get("conditions", [])}
            return c.get("StorageAutoscaling", {}).get("reason") == "MaxSizeReached"
        wait_for("MaxSizeReached", refused, timeout=600)
    finally:
        load.stop()
    assert all(bytes_of(p["spec"]["resources"]["requests"]["storage"]) <= 96 * MI for p in claims(ns, name).values())
