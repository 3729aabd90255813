"""Consumer-group offsets move with leadership: the group's coordinator is the leader of its
__consumer_offsets partition; killing that broker must not lose committed offsets."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cluster import unique_topic
from harness import SESSION_TIMEOUT_MS, wait_until


def group_coordinator(cluster, group: str) -> int:
    admin: AdminClient = cluster.admin()
    d = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
    return d.coordinator.id


def test_committed_offsets_survive_killing_the_group_coordinator(cluster):
    topic = unique_topic("grp")
    cluster.create_topic(topic, partitions=3, rf=3, min_insync=2)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(30):
        p.produce(topic, f"m{i}".encode(), partition=i % 3)
    assert p.flush(30) == 0

    group = f"g-{uuid.uuid4().hex[:8]}"
    conf = {"bootstrap.servers": cluster.bootstrap, "group.id": group, "enable.auto.commit": False,
            "session.timeout.ms": 6000, "socket.timeout.ms": 3000, "reconnect.backoff.max.ms": 500}
    c = Consumer(conf)
    want = [TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 7), TopicPartition(topic, 2, 9)]
    try:
        c.assign(want)
        # A synchronous commit: acknowledged means stored by the coordinator (acks=all on its log).
        c.commit(offsets=want, asynchronous=False)
    finally:
        c.close()

    coord = group_coordinator(cluster, group)
    cluster.broker(coord).kill9()

    def committed():
        c2 = Consumer(conf)
        try:
            got = c2.committed([TopicPartition(topic, i) for i in range(3)], timeout=5)
            return {t.partition: t.offset for t in got}
        finally:
            c2.close()

    expect = {t.partition: t.offset for t in want}
    got = wait_until(lambda: committed() == expect and expect, SESSION_TIMEOUT_MS / 1000 + 30,
                     interval=0.5, what=f"committed offsets {expect} served after killing coordinator {coord}")
    new = group_coordinator(cluster, group)
    assert new != coord, f"group coordinator is still the killed broker {coord}"
    print(f"group coordinator moved {coord} -> {new}; committed offsets intact: {got}")
