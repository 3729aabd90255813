"""kafkajs (with its default, never-flexible protocol versions) round trip. kafkajs consumes only
through consumer groups, which this broker does not have yet (a later issue): the node script
produces and reads offsets/metadata with kafkajs, and confluent-kafka reads the data back here.
When the broker advertises the group APIs, the script also consumes with kafkajs itself."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import rawkafka as raw
from kafka_helpers import consume_partitions, unique_topic

KAFKAJS_DIR = Path(__file__).resolve().parents[1] / "kafkajs"
GROUP_APIS = {10, 11, 12, 13, 14}  # FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup


def b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode()


def test_kafkajs_round_trip(broker):
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir(), "kafkajs not installed: run `make deps-broker`"
    _, apis = raw.api_versions(broker.bootstrap)
    groups = GROUP_APIS <= set(apis)
    print(f"broker advertises the group APIs: {groups}; kafkajs consumes itself: {groups}")

    topic = unique_topic("kafkajs")
    r = subprocess.run(
        [node, "roundtrip.mjs"],
        cwd=KAFKAJS_DIR,
        env={"PATH": "/usr/bin:/bin", "KAFKAJS_NO_PARTITIONER_WARNING": "1", "BOOTSTRAP": broker.bootstrap, "TOPIC": topic, "PARTITIONS": "3",
             "COUNT": "300", "CONSUME": "1" if groups else "0"},
        capture_output=True,
        timeout=150,
    )
    assert r.returncode == 0, f"kafkajs script failed ({r.returncode}):\n{r.stderr.decode(errors='replace')[-4000:]}"
    report = json.loads(r.stdout.decode().strip().splitlines()[-1])

    sent = report["sent"]
    assert len(sent) == 600
    assert all(res["errorCode"] == 0 for res in report["produceResults"]), report["produceResults"][:3]
    per_part = {p: [s for s in sent if s["partition"] == p] for p in range(3)}
    highs = {o["partition"]: int(o["high"]) for o in report["offsets"]}
    lows = {o["partition"]: int(o["low"]) for o in report["offsets"]}
    assert highs == {p: len(per_part[p]) for p in range(3)}
    assert lows == {0: 0, 1: 0, 2: 0}
    [md] = report["metadata"]["topics"]
    assert md["name"] == topic and sorted(p["partitionId"] for p in md["partitions"]) == [0, 1, 2]
    assert all(p["leader"] == 0 and p["partitionErrorCode"] == 0 for p in md["partitions"])

    # Read back with a second client: byte-exact, in send order per partition, duplicate headers kept.
    got = consume_partitions(broker.bootstrap, topic, range(3))
    for p in range(3):
        have = [
            {"phase": None, "partition": p, "key": b64(m.key()), "value": b64(m.value()),
             "headers": [[k, b64(v)] for k, v in (m.headers() or [])]}
            for m in got[p]
        ]
        want = [{**s, "phase": None} for s in per_part[p]]
        assert [m.offset() for m in got[p]] == list(range(len(want)))
        assert have == want, f"partition {p} differs"

    if groups:
        consumed = report["consumed"]
        assert consumed is not None and len(consumed) == 600
        for p in range(3):
            mine = sorted((c for c in consumed if c["partition"] == p), key=lambda c: int(c["offset"]))
            assert [(c["key"], c["value"]) for c in mine] == [(s["key"], s["value"]) for s in per_part[p]]
