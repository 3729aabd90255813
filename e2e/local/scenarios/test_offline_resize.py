"""Offline volume growth on the local Kubernetes bed (issue 12): with a StorageClass whose volumes
grow only when their pod restarts (`rivulet-local-offline`: the node agent grows the PV and sets
the claim's FileSystemResizePending), raising `spec.storage.size` makes the roller restart each
broker once, one at a time and gated on in-sync replicas, under an idempotent acks=all load on an
RF=3, min.insync.replicas=2 topic. Every claim ends at the new capacity, each broker sees it, no
send fails and the checker finds everything acknowledged.

Bed interface as in test_storage_autoscaling.py (docs/e2e.md).
"""

from __future__ import annotations

import time

from test_rolling_restart import broker_pods, is_ready, operation, roll_events
from test_storage_autoscaling import (  # noqa: F401
    MI, apply, bytes_of, checker, claims, cluster_manifest, create_topic, fast_policy, get, ns, ready, wait_for,
)

# Autoscaling on only so that the operator measures each broker's filesystem (DescribeLogDirs,
# `status.brokers[].storageTotalBytes`); the load stays far below the target.
POLICY = fast_policy(targetUtilizationPercent=80, criticalUtilizationPercent=90)


def test_offline_resize_restarts_each_broker_once_and_the_filesystems_grow(ns):
    name = "offline"
    apply(ns, cluster_manifest(name, storage_class="rivulet-local-offline", autoscaling=POLICY))
    ready(ns, name)
    bootstrap = f"{name}-bootstrap.{ns}.svc:9092"
    create_topic(ns, name, "offline")
    load = checker.Load(bootstrap, "offline", 3, rate=200).start()
    try:
        load.wait_acks(300, 120, "before the resize")
        before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in broker_pods(ns, name)}
        assert len(before) == 3, before
        t0 = time.monotonic()
        apply(ns, cluster_manifest(name, size="96Mi", storage_class="rivulet-local-offline", autoscaling=POLICY))
        max_down = 0

        def done():
            nonlocal max_down
            pods = broker_pods(ns, name)
            down = sum(1 for p in pods if not is_ready(p) or p["metadata"].get("deletionTimestamp")) + (3 - len(pods))
            max_down = max(max_down, down)
            grown = all(bytes_of(c.get("status", {}).get("capacity", {}).get("storage", "0")) >= 96 * MI
                        for c in claims(ns, name).values())
            replaced = len(pods) == 3 and all(p["metadata"]["uid"] != before.get(p["metadata"]["name"]) for p in pods)
            brokers = get("kafkacluster", name, ns).get("status", {}).get("brokers", [])
            seen = len(brokers) == 3 and all((b.get("storageTotalBytes") or 0) >= 96 * MI * 0.95 for b in brokers)
            return (grown and replaced and all(is_ready(p) for p in pods) and seen
                    and operation(ns, name).get("state") == "Active")
        wait_for("every claim grown, every broker restarted once and seeing it", done, timeout=900, every=1.0)
        duration = time.monotonic() - t0
        load.wait_acks(300, 120, "after the resize")
    finally:
        load.stop()
    print("\n" + checker.verify(load, bootstrap, strict=True))
    assert not load.failed, f"failed sends: {load.failed[:3]}"
    assert max_down <= 1, f"{max_down} brokers were down at once"
    # The finished roll leaves no stale progress behind (status is patched from the old value).
    op = operation(ns, name)
    assert op.get("state") == "Active" and not op.get("reason") and not op.get("currentBroker"), op
    evs = roll_events(ns)
    assert len(evs) == 3, [e.get("note") for e in evs]
    assert all("offline filesystem resize" in e.get("note", "") for e in evs), [e.get("note") for e in evs]
    print(f"BENCH offline resize of 3 brokers (64Mi -> 96Mi, one restart each): {duration:.1f} s")
