"""Partition reassignment (KIP-455) under an acks=all idempotent load: a partition moves from
brokers {0,1} to {2,1} through kafkajs's admin client (AlterPartitionReassignments, then
ListPartitionReassignments — which shows the move in progress while broker 2 is paused — until
nothing is in progress); the new replicas, leader and ISR show in Metadata, broker 0 deletes its
log, and the checker finds every acknowledged message exactly once and in order."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from confluent_kafka.admin import NewTopic

from checker import Load, verify
from cluster import unique_topic
from harness import REPO, wait_until

KAFKAJS_DIR = REPO / "broker" / "tests" / "kafkajs"


def kafkajs(cluster, *args: str) -> dict:
    """Runs reassign.mjs (kafkajs's admin client) and returns its JSON answer."""
    if shutil.which("node") is None or not (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.fail("node and kafkajs are needed (make deps installs them in broker/tests/kafkajs)")
    out = subprocess.run(["node", str(KAFKAJS_DIR / "reassign.mjs"), cluster.bootstrap, *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"reassign.mjs {args}: {out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_progress(cluster) -> list:
    answer = kafkajs(cluster, "list")
    assert answer["ok"], answer
    return answer["topics"]


def test_reassign_a_partition_to_another_broker_under_acks_all_load(cluster):
    # Broker 2 is paused below while it must catch up; it must not be the controller then.
    if cluster.controller_id() == 2:
        cluster.broker(2).term()
        cluster.broker(2).restart()
        wait_until(lambda: cluster.controller_id() not in (-1, 2) and len(cluster.live_broker_ids()) == 3,
                   30, what="a controller other than broker 2, and broker 2 back")
    topic = unique_topic("reassign")
    fut = cluster.admin().create_topics(
        [NewTopic(topic, num_partitions=2, replica_assignment=[[0, 1], [1, 0]],
                  config={"min.insync.replicas": "1"})],
        request_timeout=30)
    fut[topic].result(35)
    wait_until(lambda: len(ps := cluster.partitions(topic)) == 2
               and all(p.leader >= 0 and len(p.isrs) == 2 for p in ps.values()),
               30, what=f"{topic}: leaders and full ISRs")
    assert cluster.partitions(topic)[0].replicas == [0, 1]
    old_log = cluster.broker(0).data_dir / f"{topic}-0"
    wait_until(old_log.is_dir, 15, what=f"broker 0 opens {old_log}")

    load = Load(cluster.bootstrap, topic, 2, rate=300.0).start()
    load.wait_acks(100, 20, "before the reassignment")

    # Invalid targets are refused per partition, and nothing changes.
    bad = kafkajs(cluster, "alter", topic, "0", "2,7")
    assert not bad["ok"] and bad["errors"][0]["type"] == "INVALID_REPLICA_ASSIGNMENT", bad

    # Broker 2 is paused (still registered: well within the session timeout), so the move is
    # seen in progress: TRS then ORS−TRS, adding 2, removing 0.
    t0 = time.monotonic()
    cluster.broker(2).pause()
    try:
        answer = kafkajs(cluster, "alter", topic, "0", "2,1")
        assert answer["ok"], answer
        moving = in_progress(cluster)
    finally:
        cluster.broker(2).resume()
    assert moving == [{"name": topic, "partitions": [
        {"partition": 0, "replicas": [2, 1, 0], "addingReplicas": [2], "removingReplicas": [0]}]}], moving

    wait_until(lambda: not in_progress(cluster), 30, interval=0.3, what=f"{topic}-0: reassignment finished")
    print(f"reassignment {topic}-0 [0,1] -> [2,1] finished in {time.monotonic() - t0:.1f} s")

    p = cluster.partitions(topic)[0]
    assert p.replicas == [2, 1], p.replicas
    assert sorted(p.isrs) == [1, 2], p.isrs
    # The old leader (0) left: the first in-sync target replica leads.
    assert p.leader == 2, p.leader
    assert cluster.partitions(topic)[1].replicas == [1, 0]
    wait_until(lambda: not old_log.exists(), 15, what=f"broker 0 deletes {old_log}")
    assert (cluster.broker(2).data_dir / f"{topic}-0").is_dir()

    load.wait_acks(300, 30, "after the reassignment")
    load.stop()
    verify(load, cluster.bootstrap)
