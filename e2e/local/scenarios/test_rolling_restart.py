"""Rolling restarts on the local Kubernetes bed (issue 13, the roller): a broker config change in
the KafkaCluster spec restarts every broker one at a time, each restart gated on in-sync
replicas, under an idempotent acks=all load on an RF=3, min.insync.replicas=2 topic; the
producer sees no failed send and the checker finds everything acknowledged; the pause
annotation holds the roll. Prints BENCH lines: the roll's duration and the producer's p99.

Bed interface as in test_storage_autoscaling.py (docs/e2e.md).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from confluent_kafka.admin import AdminClient

from test_storage_autoscaling import apply, checker, cluster_manifest, create_topic, get, kubectl, ns, ready, wait_for  # noqa: F401

PAUSE = "rivulet.dev/pause-roll"


def broker_pods(ns, name) -> list[dict]:
    out = json.loads(kubectl("get", "pods", "-n", ns, "-l",
                             f"rivulet.dev/cluster={name},app.kubernetes.io/component=broker", "-o", "json"))
    return out["items"]


def is_ready(p) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))


def ready_at(p) -> str:
    return next(c["lastTransitionTime"] for c in p["status"]["conditions"] if c["type"] == "Ready")


def operation(ns, name) -> dict:
    return get("kafkacluster", name, ns).get("status", {}).get("operation", {})


def roll_events(ns) -> list[dict]:
    out = json.loads(kubectl("get", "events.events.k8s.io", "-n", ns, "-o", "json"))
    evs = [e for e in out["items"] if e.get("reason") == "RestartingBroker"]
    return sorted(evs, key=lambda e: e.get("eventTime") or e["metadata"]["creationTimestamp"])


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else float("nan")


def _wall(ts: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def stall_report(load, lat_from, t0, t0_wall, ns, name, slow=0.5) -> str:
    """Where the producer waited: windows of acks slower than `slow` seconds (by send time, in
    seconds since the roll began) next to the roll's own timeline (Events, new pods' creation and
    readiness), so a p99 figure comes with its cause."""
    lines = ["roll timeline (s since unpause):"]
    for e in roll_events(ns):
        at = _wall(e.get("eventTime") or e["metadata"]["creationTimestamp"]) - t0_wall
        lines.append(f"  {at:7.1f}  event {e.get('note')}")
    for p in sorted(broker_pods(ns, name), key=lambda p: p["metadata"]["creationTimestamp"]):
        lines.append(f"  {_wall(p['metadata']['creationTimestamp']) - t0_wall:7.1f}  created {p['metadata']['name']}"
                     f" (ready at {_wall(ready_at(p)) - t0_wall:.1f})")
    windows = []
    for sent, lat in zip(load.sent_at[lat_from:], load.latencies[lat_from:]):
        if lat < slow:
            continue
        at = sent - t0
        if windows and at - windows[-1][1] < 1.0:
            w = windows[-1]
            windows[-1] = (w[0], at, w[2] + 1, max(w[3], lat))
        else:
            windows.append((at, at, 1, lat))
    lines.append(f"acks slower than {slow * 1000:.0f} ms (send time window, count, max):")
    lines += [f"  {a:7.1f}..{b:.1f}  {n} acks, max {m * 1000:.0f} ms" for a, b, n, m in windows] or ["  none"]
    return "\n".join(lines)


def roll_under_load(ns, name, per_zone):
    m = cluster_manifest(name, per_zone=per_zone)
    apply(ns, m)
    ready(ns, name)
    wait_for("operation Active", lambda: operation(ns, name).get("state") == "Active")
    bootstrap = f"{name}-bootstrap.{ns}.svc:9092"
    create_topic(ns, name, "roll")
    total = 3 * per_zone
    load = checker.Load(bootstrap, "roll", 3, rate=200).start()
    try:
        load.wait_acks(300, 120, "before the roll")
        before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in broker_pods(ns, name)}
        assert len(before) == total, before

        # Paused: the config change is applied to the StatefulSets, but no broker restarts.
        kubectl("annotate", "kafkacluster", name, "-n", ns, f"{PAUSE}=true", "--overwrite")
        m["spec"]["config"]["log.retention.ms"] = "7200000"
        apply(ns, m)
        op = wait_for("operation Maintenance", lambda: (lambda o: o.get("state") == "Maintenance" and o)(operation(ns, name)))
        assert op["reason"] == "Paused" and op["progress"] == f"0/{total}", op
        time.sleep(20)
        assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in broker_pods(ns, name)} == before, "paused: no restart"
        assert not roll_events(ns)

        # Unpaused: one broker at a time, the controller last.
        # Keep the client referenced until the future resolves: a collected handle fails it.
        admin = AdminClient({"bootstrap.servers": bootstrap})
        controller = admin.describe_cluster().result(30).controller.id
        lat_from = len(load.latencies)
        t0, t0_wall = time.monotonic(), time.time()
        kubectl("annotate", "kafkacluster", name, "-n", ns, f"{PAUSE}-")
        max_down = 0
        seen_states = set()

        def rolled():
            nonlocal max_down
            pods = broker_pods(ns, name)
            down = sum(1 for p in pods if not is_ready(p) or p["metadata"].get("deletionTimestamp")) + (total - len(pods))
            max_down = max(max_down, down)
            op = operation(ns, name)
            seen_states.add(op.get("state"))
            new = all(p["metadata"]["uid"] != before.get(p["metadata"]["name"]) for p in pods)
            return len(pods) == total and new and all(is_ready(p) for p in pods) and op.get("state") == "Active" and op
        wait_for("every broker restarted and the roll Active again", rolled, timeout=900, every=1.0)
        duration = time.monotonic() - t0
        lat = load.latencies[lat_from:]
        load.wait_acks(300, 120, "after the roll")
    finally:
        load.stop()
    summary = checker.verify(load, bootstrap, strict=True)
    print("\n" + summary)
    print(stall_report(load, lat_from, t0, t0_wall, ns, name))
    assert not load.failed, f"failed sends: {load.failed[:3]}"
    assert max_down <= 1, f"{max_down} brokers were down at once"
    assert "Updating" in seen_states, seen_states

    # One at a time, from the pods themselves: each new pod was created after the previous one
    # was ready again.
    pods = sorted(broker_pods(ns, name), key=lambda p: p["metadata"]["creationTimestamp"])
    for a, b in zip(pods, pods[1:]):
        assert b["metadata"]["creationTimestamp"] >= ready_at(a), (a["metadata"]["name"], b["metadata"]["name"])
    evs = roll_events(ns)
    assert len(evs) == total, [e.get("note") for e in evs]
    assert f"broker {controller} " in evs[-1]["note"], ("controller last", controller, [e["note"] for e in evs])
    print(f"BENCH roll of {total} brokers: {duration:.1f} s; producer p99 during the roll "
          f"{p99(lat) * 1000:.0f} ms (max {max(lat, default=0) * 1000:.0f} ms, {len(lat)} acks), failed sends {len(load.failed)}")


def test_config_change_rolls_three_brokers_one_at_a_time_without_failed_sends(ns):
    roll_under_load(ns, "roll3", per_zone=1)


@pytest.mark.skipif(os.environ.get("RIVULET_E2E_BENCH") != "1",
                    reason="the six-broker roll is a benchmark (make bench-k8s-roll); make test rolls three")
def test_config_change_rolls_six_brokers_one_at_a_time_without_failed_sends(ns):
    roll_under_load(ns, "roll6", per_zone=2)
