"""A live consumer group across coordinator failures: the group's coordinator (the leader of its
__consumer_offsets partition) is killed with SIGKILL while a member consumes and commits
synchronously, then the restarted broker rejoins and the next coordinator leaves by controlled
shutdown (SIGTERM). Checked, not eyeballed: every produced message is consumed, nothing
acknowledged as committed goes backwards, and the final committed offsets are the log ends."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from cluster import unique_topic
from harness import SESSION_TIMEOUT_MS, wait_until

OFFSETS_TOPIC = "__consumer_offsets"
PARTITIONS = 3
MESSAGES = 300


def java_hash(s: str) -> int:
    h = 0
    for unit in s.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def coordinator_of(cluster, group: str) -> int:
    """The leader of the group's __consumer_offsets partition (Kafka's abs(hash) % partitions),
    from Metadata. Not through AdminClient.describe_consumer_groups: librdkafka 2.x can abort
    the process (rd_kafka_enq_once_del_source_return assertion) when the coordinator it asked
    dies, which this test does on purpose."""
    partitions = len(cluster.partitions(OFFSETS_TOPIC))
    assert partitions > 0, f"no {OFFSETS_TOPIC}"
    h = java_hash(group)
    p = 0 if h == -(1 << 31) else abs(h) % partitions
    return cluster.leader(OFFSETS_TOPIC, p)


def commit_retrying(c: Consumer, offsets: list[TopicPartition], deadline_s: float) -> int:
    """Synchronous commit, retried while the coordinator moves; returns the failed attempts."""
    end = time.monotonic() + deadline_s
    failures = 0
    while True:
        try:
            c.commit(offsets=offsets, asynchronous=False)
            return failures
        except KafkaException as e:
            failures += 1
            if time.monotonic() > end:
                raise AssertionError(f"commit kept failing for {deadline_s} s: {e}") from e
            time.sleep(0.2)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "socket.timeout.ms": 3000})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=5)
        return {t.partition: t.offset for t in got}
    finally:
        c.close()


def test_a_consuming_group_survives_losing_its_coordinator_twice(cluster):
    topic = unique_topic("grpfail")
    cluster.create_topic(topic, partitions=PARTITIONS, rf=3, min_insync=2)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(MESSAGES):
        p.produce(topic, f"m{i}".encode(), partition=i % PARTITIONS)
    assert p.flush(30) == 0
    ends = {i: cluster.watermarks(topic, i)[1] for i in range(PARTITIONS)}
    assert sum(ends.values()) == MESSAGES

    group = f"g-{uuid.uuid4().hex[:8]}"
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500, "socket.timeout.ms": 3000,
                  "reconnect.backoff.max.ms": 500, "topic.metadata.refresh.interval.ms": 1000})
    c.subscribe([topic])
    seen: set[tuple[int, int]] = set()
    acked: dict[int, int] = {}  # partition -> offset acknowledged as committed
    killed: list[int] = []
    failed_commits = 0
    deadline = time.monotonic() + 90
    try:
        while len(seen) < MESSAGES:
            assert time.monotonic() < deadline, f"consumed {len(seen)}/{MESSAGES}; acked {acked}"
            batch = c.consume(num_messages=20, timeout=1.0)
            positions: dict[int, int] = {}
            for m in batch:
                if m.error():
                    continue
                seen.add((m.partition(), m.offset()))
                positions[m.partition()] = max(positions.get(m.partition(), 0), m.offset() + 1)
            if positions:
                offs = [TopicPartition(topic, q, o) for q, o in sorted(positions.items())]
                failed_commits += commit_retrying(c, offs, SESSION_TIMEOUT_MS / 1000 + 30)
                for q, o in positions.items():
                    acked[q] = max(acked.get(q, 0), o)
            if not killed and len(seen) >= MESSAGES // 3:
                coord = coordinator_of(cluster, group)
                cluster.broker(coord).kill9()
                killed.append(coord)
        # Everything consumed and its commit acknowledged; the log ends are committed.
        assert acked == ends, f"acked {acked} != log ends {ends}"
    finally:
        c.close()

    # The killed broker returns and catches up (its replicas of the group's partition too).
    first = killed[0]
    cluster.broker(first).restart()
    cluster.wait_full_isr(OFFSETS_TOPIC)
    got = wait_until(lambda: committed_offsets(cluster.bootstrap, group, topic) == ends and ends,
                     30, interval=0.5, what=f"committed offsets {ends} after the coordinator was killed")

    # Controlled shutdown of the current coordinator: leadership (and the group) moves first.
    # (Preferred-leader balancing may have handed it back to the returned broker.)
    second = coordinator_of(cluster, group)
    assert cluster.broker(second).term() == 0
    got = wait_until(lambda: committed_offsets(cluster.bootstrap, group, topic) == ends and ends,
                     SESSION_TIMEOUT_MS / 1000 + 30, interval=0.5,
                     what=f"committed offsets {ends} after the coordinator {second} shut down")
    # (Broker ids start at 0, so the id is wrapped: wait_until wants a truthy value.)
    (third,) = wait_until(lambda: (lambda x: (x,) if x != second else None)(coordinator_of(cluster, group)),
                          30, interval=0.5, what="a new coordinator")
    print(f"coordinator {first} killed, {second} shut down, now {third}; {failed_commits} commit "
          f"attempts failed and were retried; offsets {got}")
