"""Replication throttle (Kafka's KIP-73): the brokers' dynamic `leader.replication.throttled.rate`
/ `follower.replication.throttled.rate`, set with confluent-kafka's admin client on each BROKER
resource, and the topic's `leader.replication.throttled.replicas` /
`follower.replication.throttled.replicas`, cap the copy of a partition moved by a reassignment
(kafkajs's AlterPartitionReassignments). The move must take at least about (bytes - the
window's first burst) / rate; without a throttle the same move is a fraction of that. Bad values
are refused with INVALID_CONFIG, and in-sync replication of another topic is not held back."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                   ResourceType)

from cluster import unique_topic
from harness import wait_until
from test_reassignment import in_progress, kafkajs

RATE = 1 << 20              # 1 MiB/s
PAYLOAD = 8 << 20           # 8 MiB in the moved partition
WINDOW_NUM = 3              # samples of 1 s: a first burst of (3 - 1) s at the rate


def alter(cluster, resource: ConfigResource, entries: dict[str, str | None]) -> None:
    for k, v in entries.items():
        op = AlterConfigOpType.DELETE if v is None else AlterConfigOpType.SET
        resource.add_incremental_config(ConfigEntry(k, v, incremental_operation=op))
    fut = cluster.admin().incremental_alter_configs([resource], request_timeout=15)
    for f in fut.values():
        f.result(20)


def set_rates(cluster, rate: int | None) -> None:
    for b in cluster.brokers:
        value = None if rate is None else str(rate)
        alter(cluster, ConfigResource(ResourceType.BROKER, str(b.broker_id)),
              {"leader.replication.throttled.rate": value, "follower.replication.throttled.rate": value})


def fill(cluster, topic: str) -> None:
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5,
                  "message.max.bytes": 1_000_000})
    value = b"x" * 100_000
    for _ in range(PAYLOAD // len(value)):
        p.produce(topic, value, partition=0)
        p.poll(0)
    assert p.flush(60) == 0


def move(cluster, topic: str, target: str) -> float:
    t0 = time.monotonic()
    answer = kafkajs(cluster, "alter", topic, "0", target)
    assert answer["ok"], answer
    wait_until(lambda: not in_progress(cluster), 120, interval=0.2, what=f"{topic}-0 moved to {target}")
    return time.monotonic() - t0


def make_topic(cluster, topic: str) -> None:
    fut = cluster.admin().create_topics(
        [NewTopic(topic, num_partitions=1, replica_assignment=[[0]], config={"min.insync.replicas": "1"})],
        request_timeout=30)
    fut[topic].result(35)
    wait_until(lambda: cluster.partitions(topic).get(0) is not None and cluster.partitions(topic)[0].leader == 0,
               30, what=f"{topic}: leader 0")


@pytest.mark.parametrize("side", ["leader", "follower"])
def test_a_throttled_move_keeps_to_the_rate(cluster_factory, side):
    cluster = cluster_factory(replication_quota_window_num=WINDOW_NUM)
    topic = unique_topic(f"throttle-{side}")
    make_topic(cluster, topic)
    fill(cluster, topic)

    # Bad values are refused, naming the problem.
    with pytest.raises(KafkaException) as bad:
        alter(cluster, ConfigResource(ResourceType.BROKER, "0"), {"leader.replication.throttled.rate": "-5"})
    assert "INVALID_CONFIG" in str(bad.value) or "minimum" in str(bad.value), bad.value
    with pytest.raises(KafkaException) as bad:
        alter(cluster, ConfigResource(ResourceType.TOPIC, topic), {"follower.replication.throttled.replicas": "0-1"})
    assert "partition:broker" in str(bad.value), bad.value

    set_rates(cluster, RATE)
    described = cluster.admin().describe_configs([ConfigResource(ResourceType.BROKER, "1")])
    entries = list(described.values())[0].result(15)
    assert entries["follower.replication.throttled.rate"].value == str(RATE)
    # Only one side is throttled per case: the other side's list stays empty.
    key = f"{side}.replication.throttled.replicas"
    alter(cluster, ConfigResource(ResourceType.TOPIC, topic), {key: "0:0" if side == "leader" else "0:1"})

    took = move(cluster, topic, "1")
    burst = (WINDOW_NUM - 1) * RATE
    floor = (PAYLOAD - burst) / RATE
    print(f"BENCH throttle side={side} bytes={PAYLOAD} rate={RATE} B/s move={took:.2f} s "
          f"expected>={floor:.1f} s effective={PAYLOAD / took / 1e6:.2f} MB/s")
    # A lower bound only: a slow machine makes moves slower, never faster than the throttle.
    assert took >= floor * 0.8, f"the throttled move took {took:.2f} s, below {floor * 0.8:.2f} s"
    assert cluster.partitions(topic)[0].replicas == [1]

    # The same data moved back without the throttle is much faster.
    set_rates(cluster, None)
    alter(cluster, ConfigResource(ResourceType.TOPIC, topic), {key: None})
    free = move(cluster, topic, "2")
    print(f"BENCH throttle side=none bytes={PAYLOAD} move={free:.2f} s")
    assert free < took, (free, took)


def test_in_sync_replication_is_not_throttled(cluster_factory):
    """A throttle of `*` on a topic whose followers are in sync: produce with acks=all keeps its
    pace (its follower fetches are in-sync traffic), far above the 64 KiB/s throttle."""
    cluster = cluster_factory(replication_quota_window_num=WINDOW_NUM)
    topic = unique_topic("insync")
    fut = cluster.admin().create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=3, config={"min.insync.replicas": "3"})],
        request_timeout=30)
    fut[topic].result(35)
    cluster.wait_full_isr(topic)
    set_rates(cluster, 64 << 10)
    alter(cluster, ConfigResource(ResourceType.TOPIC, topic),
          {"leader.replication.throttled.replicas": "*", "follower.replication.throttled.replicas": "*"})
    t0 = time.monotonic()
    fill(cluster, topic)
    took = time.monotonic() - t0
    print(f"BENCH throttle in-sync acks=all bytes={PAYLOAD} produce={took:.2f} s "
          f"({PAYLOAD / took / 1e6:.2f} MB/s) under a 64 KiB/s throttle")
    # At 64 KiB/s 8 MiB would take 128 s: anything near that means in-sync traffic was held back.
    assert took < 60, took
    assert sorted(cluster.isr(topic, 0)) == [0, 1, 2]
