"""Consumer groups of the other client libraries: kafka-python (KafkaConsumer with group_id) and
kafkajs (consumer.run with eachMessage, driven by ../kafkajs/group.mjs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer

from groups_helpers import GROUP_FLAGS, committed, gid
from kafka_helpers import admin, create_topic, produce_all, producer, unique_topic

KAFKAJS_DIR = Path(__file__).resolve().parents[1] / "kafkajs"


def test_kafka_python_group(broker_factory):
    b = broker_factory(**GROUP_FLAGS)
    topic, group = unique_topic("kp"), gid("kp")
    create_topic(b.bootstrap, topic, 4)
    cs = [KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group, client_id=f"kp-{i}",
                        auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=6000,
                        heartbeat_interval_ms=500, request_timeout_ms=20000)
          for i in range(2)]
    got: dict[int, list] = {0: [], 1: []}

    def poll_all(timeout: float, until, what: str):
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {[c.assignment() for c in cs]}"
            for i, c in enumerate(cs):
                for recs in c.poll(timeout_ms=50).values():
                    got[i].extend((r.partition, r.offset, r.value) for r in recs)

    def split():
        owned = sorted(tp.partition for c in cs for tp in c.assignment())
        return owned == [0, 1, 2, 3] and all(c.assignment() for c in cs)

    try:
        poll_all(60, split, "two kafka-python members sharing 4 partitions")
        owned = [{tp.partition for tp in c.assignment()} for c in cs]
        want = [f"kp-{i}".encode() for i in range(400)]
        produce_all(producer(b.bootstrap), [(topic, i % 4, None, v, None) for i, v in enumerate(want)])
        poll_all(60, lambda: len(got[0]) + len(got[1]) >= 400, "400 messages")
        end = time.monotonic() + 1.0
        poll_all(5, lambda: time.monotonic() > end, "settle")
        counts = Counter(v for i in got for _, _, v in got[i])
        assert set(counts) == set(want) and max(counts.values()) == 1
        for i in got:
            assert {p for p, _, _ in got[i]} <= owned[i]
        for c in cs:
            c.commit()
    finally:
        for c in cs:
            c.close(autocommit=False)
    assert committed(admin(b.bootstrap), group, topic, 4) == {p: 100 for p in range(4)}


def test_kafkajs_group(broker_factory):
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir(), "kafkajs not installed: run `make deps-broker`"
    b = broker_factory(**GROUP_FLAGS)
    topic, group = unique_topic("kjs"), gid("kjs")
    r = subprocess.run(
        [node, "group.mjs"],
        cwd=KAFKAJS_DIR,
        env={"PATH": "/usr/bin:/bin", "KAFKAJS_NO_PARTITIONER_WARNING": "1", "BOOTSTRAP": b.bootstrap,
             "TOPIC": topic, "GROUP": group, "PARTITIONS": "4", "COUNT": "400"},
        capture_output=True,
        timeout=150,
    )
    assert r.returncode == 0, f"kafkajs group script failed ({r.returncode}):\n{r.stderr.decode(errors='replace')[-4000:]}"
    report = json.loads(r.stdout.decode().strip().splitlines()[-1])

    owned = {m["name"]: set(m["assignment"]) for m in report["members"]}
    assert sorted(p for ps in owned.values() for p in ps) == [0, 1, 2, 3] and all(owned.values()), owned
    counts = Counter(c["value"] for c in report["consumed"])
    assert set(counts) == {f"js-{i}" for i in range(400)} and max(counts.values()) == 1
    for c in report["consumed"]:
        assert c["partition"] in owned[c["member"]], c
    # Per partition, offsets 0..99 in order.
    for p in range(4):
        offs = [c["offset"] for c in report["consumed"] if c["partition"] == p]
        assert offs == list(range(100)), (p, offs[:10])
    [t] = report["committed"]
    assert {int(x["partition"]): int(x["offset"]) for x in t["partitions"]} == {p: 100 for p in range(4)}
    [g] = report["described"]["groups"]
    assert g["groupId"] == group and g["state"] == "Empty" and g["members"] == []
