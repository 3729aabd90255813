"""Scale-in that drains and scale-out that rebalances on the local Kubernetes bed (issue 13),
written against the bed interface (docs/e2e.md), like test_storage_autoscaling.py:

    . .k8s/env && .k8s/exec .venv/bin/python -m pytest e2e/local/scenarios/test_scaling.py -q -s

Three zones, topics with replication factor 3 and min.insync.replicas=2, an idempotent acks=all
producer (the cluster suite's checker) running throughout:

- brokersPerZone 2→1: a topic of replication factor 4 makes the drain impossible first (the
  operator refuses: status.scaling.phase Refused, a DrainRefused Event, the StatefulSets keep two
  brokers); once it is deleted, the drain runs: the StatefulSets keep their replicas until no
  partition has a replica on the leaving brokers, no partition is ever without a leader, then
  they shrink; the checker finds every acknowledged message.
- brokersPerZone 1→2 with `spec.scaling.rebalanceOnScaleOut`: the new brokers take an even share of
  the replicas, zones kept, nothing acknowledged lost.

BENCH lines: drain duration, bytes moved (estimated from the moved partitions' record counts and
sizes), producer p99 during the drain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(__file__))
from test_storage_autoscaling import apply, events, get, kubectl, ns, ready, wait_for  # noqa: E402,F401

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "broker", "tests", "cluster"))
import checker  # noqa: E402

MI = 1 << 20
ZONES = ["zone-a", "zone-b", "zone-c"]
SIZE = 2048          # producer message size
THROTTLE = 4 * MI    # bytes/s during moves


def manifest(name: str, per_zone: int, rebalance: bool = False) -> dict:
    return {
        "apiVersion": "rivulet.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": name},
        "spec": {
            "zones": ZONES,
            "brokersPerZone": per_zone,
            "brokerType": "kafka.t3.small",
            "storage": {"size": "256Mi", "storageClassName": "rivulet-local"},
            "config": {"log.segment.bytes": str(4 * MI), "default.replication.factor": "3"},
            "scaling": {"rebalanceOnScaleOut": rebalance, "throttleBytesPerSecond": THROTTLE},
        },
    }


def create_topic(ns: str, cluster: str, topic: str, partitions: int) -> None:
    apply(ns, {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": topic},
               "spec": {"clusterRef": {"name": cluster}, "partitions": partitions, "replicationFactor": 3,
                        "config": {"min.insync.replicas": "2"}}})
    wait_for(f"topic {topic}", lambda: any(c["type"] == "Ready" and c["status"] == "True"
             for c in get("kafkatopic", topic, ns).get("status", {}).get("conditions", [])))


def sts_replicas(ns: str, name: str) -> list[int]:
    return [get("statefulset", f"{name}-broker-z{i}", ns)["spec"]["replicas"] for i in range(len(ZONES))]


def placement(admin: AdminClient) -> dict[tuple[str, int], tuple[int, list[int], list[int]]]:
    md = admin.list_topics(timeout=10)
    return {(t, p.id): (p.leader, list(p.replicas), list(p.isrs))
            for t, tm in md.topics.items() for p in tm.partitions.values()}


def scaling(ns: str, name: str) -> dict | None:
    return get("kafkacluster", name, ns).get("status", {}).get("scaling")


class Watch:
    """Samples Metadata and the StatefulSets every half second: partitions without a leader, and
    replicas still on brokers `leaving` while a StatefulSet already runs fewer pods."""

    def __init__(self, ns: str, name: str, bootstrap: str, leaving: set[int], keep: int):
        self.ns, self.name, self.leaving, self.keep = ns, name, leaving, keep
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.offline: list[tuple[float, tuple[str, int]]] = []
        self.hosted_after_shrink: list[tuple[float, tuple[str, int], list[int]]] = []
        self.samples = 0
        self.first_shrink: float | None = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                shrunk = any(r <= self.keep for r in sts_replicas(self.ns, self.name))
                if shrunk and self.first_shrink is None:
                    self.first_shrink = time.time()
                for key, (leader, replicas, _isr) in placement(self.admin).items():
                    if key[0].startswith("__"):
                        continue
                    if leader < 0:
                        self.offline.append((time.time(), key))
                    on_leaving = [r for r in replicas if r in self.leaving]
                    if shrunk and on_leaving:
                        self.hosted_after_shrink.append((time.time(), key, on_leaving))
                self.samples += 1
            except Exception:  # a sample lost to a moving leader is retried
                pass
            self._stop.wait(0.5)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(10)


class StatusWatch:
    """Every version of the KafkaCluster's status.scaling, from a `kubectl get -w` watch, with the
    time it arrived. A phase can last less than a poll interval (a small drain finishes in a
    couple of seconds, and the status write itself wakes the next reconcile), so polling alone
    can miss it; the watch sees every update."""

    def __init__(self, ns: str, name: str):
        self.seen: list[tuple[float, dict | None]] = []
        self._p = subprocess.Popen(["kubectl", "get", "kafkacluster", name, "-n", ns, "-w", "-o", "json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        decoder, buf = json.JSONDecoder(), ""
        for line in self._p.stdout:
            buf += line
            while buf.strip():
                try:
                    obj, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break  # an object spans more lines
                buf = buf.lstrip()[end:]
                self.seen.append((time.time(), obj.get("status", {}).get("scaling")))

    def first(self, phase: str) -> tuple[float, dict] | None:
        return next(((t, s) for t, s in self.seen if s and s.get("phase") == phase), None)

    def phases(self) -> list[str | None]:
        out: list[str | None] = []
        for _, s in self.seen:
            p = s and s.get("phase")
            if not out or out[-1] != p:
                out.append(p)
        return out

    def stop(self):
        self._p.kill()
        self._t.join(10)


def p99(values: list[float]) -> str:
    if not values:
        return "n/a"
    v = sorted(values)
    return f"{v[min(len(v) - 1, int(len(v) * 0.99))] * 1000:.0f} ms"


def test_scale_in_drains_first_and_refuses_the_impossible(ns):
    name = "drain"
    apply(ns, manifest(name, per_zone=2))
    ready(ns, name)
    bootstrap = f"{name}-bootstrap.{ns}.svc:9092"
    create_topic(ns, name, "drained", partitions=6)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    leaving = {z * 1000 + 1 for z in range(len(ZONES))}

    load = checker.Load(bootstrap, "drained", 6, rate=300, size=SIZE).start()
    try:
        load.wait_acks(3000, 120, "before the drain")

        # Impossible first: replication factor 4 on the three brokers that would remain.
        admin.create_topics([NewTopic("wide", 1, 4)], request_timeout=30)["wide"].result(40)
        apply(ns, manifest(name, per_zone=1))
        refused = wait_for("scaling Refused", lambda: (s := scaling(ns, name)) and s.get("phase") == "Refused" and s,
                           timeout=120)
        assert "replication factor 4" in refused["message"], refused
        assert wait_for("DrainRefused event", lambda: events(ns, "DrainRefused"), timeout=60)
        time.sleep(10)
        assert sts_replicas(ns, name) == [2, 2, 2], "nothing shrinks while the drain is refused"

        # Possible now: the drain runs and shrinks only when the leaving brokers are empty.
        before = placement(admin)
        moved = [k for k, (_, reps, _) in before.items() if not k[0].startswith("__") and set(reps) & leaving]
        status = StatusWatch(ns, name)  # before the delete, so no status version is missed
        admin.delete_topics(["wide"], request_timeout=30)["wide"].result(40)
        lat_from = len(load.latencies)
        t0 = time.time()
        try:
            with Watch(ns, name, bootstrap, leaving, keep=1) as watch:
                try:
                    draining = wait_for("scaling Draining", lambda: status.first("Draining"), timeout=180, every=1)
                except AssertionError as e:
                    raise AssertionError(f"{e}; status.scaling phases seen: {status.phases()}, "
                                         f"now: {scaling(ns, name)}, sts: {sts_replicas(ns, name)}") from None
                wait_for("StatefulSets at 1", lambda: sts_replicas(ns, name) == [1, 1, 1], timeout=900, every=1)
                took = time.time() - t0
                wait_for("leaving pods gone", lambda: all(
                    not kubectl("get", "pod", f"{name}-broker-z{z}-{z * 1000 + 1}", "-n", ns, "--ignore-not-found", "-o", "name").strip()
                    for z in range(len(ZONES))), timeout=300)
        finally:
            status.stop()
        at, draining = draining
        assert sorted(draining["brokers"]) == sorted(leaving), draining
        assert watch.first_shrink is not None, "the watch saw the StatefulSets shrink"
        assert at < watch.first_shrink, f"the StatefulSets shrank before the drain was reported: {status.phases()}"
        lat_to = len(load.latencies)
        load.wait_acks(2000, 120, "after the drain")
    finally:
        load.stop()
    ready(ns, name)
    after = placement(admin)
    assert all(not (set(reps) & leaving) for k, (_, reps, _) in after.items()), "nothing on the removed brokers"
    assert watch.samples > 10, watch.samples
    assert watch.offline == [], f"partitions without a leader during the drain: {watch.offline[:10]}"
    assert watch.hosted_after_shrink == [], f"replicas on removed brokers after the shrink: {watch.hosted_after_shrink[:10]}"
    assert scaling(ns, name) is None, "status.scaling is cleared when the drain is done"
    assert events(ns, "DrainStarted") and events(ns, "DrainFinished")
    # The throttle was removed again.
    from confluent_kafka.admin import ConfigResource, ResourceType
    cfg = admin.describe_configs([ConfigResource(ResourceType.TOPIC, "drained")])
    entries = list(cfg.values())[0].result(15)
    assert not entries["leader.replication.throttled.replicas"].value, entries["leader.replication.throttled.replicas"]
    print("\n" + checker.verify(load, bootstrap, strict=True))
    per_partition = load.sent / 6 * (SIZE + 70)
    print(f"BENCH drain 2->1 per zone: {took:.1f} s, {len(moved)} partition(s) moved, "
          f"~{len(moved) * per_partition / MI:.1f} MiB moved at throttle {THROTTLE / MI:.0f} MiB/s, "
          f"producer p99 during the drain {p99(load.latencies[lat_from:lat_to])} "
          f"(whole run {p99(load.latencies)})")


def test_scale_out_rebalances_when_asked(ns):
    name = "grow"
    apply(ns, manifest(name, per_zone=1, rebalance=True))
    ready(ns, name)
    bootstrap = f"{name}-bootstrap.{ns}.svc:9092"
    create_topic(ns, name, "spread", partitions=6)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    load = checker.Load(bootstrap, "spread", 6, rate=300, size=SIZE).start()
    try:
        load.wait_acks(2000, 120, "before the scale-out")
        lat_from = len(load.latencies)
        t0 = time.time()
        status = StatusWatch(ns, name)
        try:
            apply(ns, manifest(name, per_zone=2, rebalance=True))
            wait_for("scaling Rebalancing", lambda: status.first("Rebalancing"), timeout=180, every=1)
            wait_for("rebalance finished", lambda: scaling(ns, name) is None and events(ns, "RebalanceFinished"),
                     timeout=900, every=2)
        finally:
            status.stop()
        took = time.time() - t0
        lat_to = len(load.latencies)
        load.wait_acks(2000, 120, "after the rebalance")
    finally:
        load.stop()
    after = placement(admin)
    counts: dict[int, int] = {}
    for k, (_, reps, _) in after.items():
        if k[0] == "spread":
            for r in reps:
                counts[r] = counts.get(r, 0) + 1
            assert len({r // 1000 for r in reps}) == 3, (k, reps)
    assert sorted(counts) == [0, 1, 1000, 1001, 2000, 2001], counts
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    print("\n" + checker.verify(load, bootstrap, strict=True))
    print(f"BENCH rebalance 1->2 per zone: {took:.1f} s (includes the new pods starting), replicas per broker "
          f"{json.dumps(counts)}, producer p99 during it {p99(load.latencies[lat_from:lat_to])}")
