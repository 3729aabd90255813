"""Issue 10: synchronous offset commits in an RF=3 cluster do not wait for the followers' long
poll. The brokers run with replica.fetch.wait.max.ms = 30 s: a commit (or a group write on
rebalance) whose append does not wake the followers' parked fetches is not committed before
the group coordinator's own wait for the in-sync replicas (5 s) runs out, so librdkafka's
synchronous commit fails or is retried until the fetch timer fires, far past the limits below.

- One consumer committing every message synchronously: nothing else writes to the cluster, so
  each commit must wake the followers itself (the report: 501 ms per commit with the default
  500 ms wait).
- Three consumers in one group doing the same (the report: 546 of 6000 messages read in 90 s).
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from cluster import unique_topic
from harness import wait_until

FETCH_WAIT_MS = 30000
# Longer than the test: a follower parked on its long poll is not dropped from the ISR (which
# would let the leader commit alone and hide a missing wake-up).
LAG_MS = 60000
MESSAGES = 300
# Far below what one commit would take if it waited for the fetch timer (30 s each).
LIMIT_S = 120


def test_sync_commits_of_one_consumer_do_not_wait_for_the_fetch_timer(cluster_factory):
    cluster = cluster_factory(replica_fetch_wait_max_ms=FETCH_WAIT_MS, replica_lag_time_max_ms=LAG_MS)
    topic = unique_topic("commit1")
    cluster.create_topic(topic, partitions=1, rf=3, min_insync=2)
    n = 30
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(n):
        p.produce(topic, f"m{i}".encode(), partition=0)
    assert p.flush(30) == 0

    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "socket.timeout.ms": 10000})
    took: list[float] = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        # Each commit alone would take the whole fetch wait (30 s): 30 of them cannot fit.
        deadline = time.monotonic() + 60
        while len(took) < n and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            t0 = time.monotonic()
            c.commit(message=m, asynchronous=False)  # raises on a failed commit
            took.append(time.monotonic() - t0)
        assert len(took) == n, f"committed {len(took)} of {n} messages in 60 s"
        got = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert got[0].offset == n
    finally:
        c.close()
    # The first one also finds the coordinator (and creates __consumer_offsets).
    first, rest = took[0], sorted(took[1:])
    print(f"{n} synchronous commits, one consumer: first {first * 1000:.2f} ms, then median "
          f"{statistics.median(rest) * 1000:.2f} ms, max {rest[-1] * 1000:.2f} ms")


def test_sync_commits_by_a_group_of_three_do_not_wait_for_the_fetch_timer(cluster_factory):
    cluster = cluster_factory(replica_fetch_wait_max_ms=FETCH_WAIT_MS, replica_lag_time_max_ms=LAG_MS)
    topic = unique_topic("commits")
    cluster.create_topic(topic, partitions=3, rf=3, min_insync=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    conf = {"bootstrap.servers": cluster.bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
            "socket.timeout.ms": 10000, "reconnect.backoff.max.ms": 500}
    consumers = [Consumer(conf) for _ in range(3)]
    assigned: list[set[int]] = [set() for _ in consumers]

    def on_assign(i):
        def cb(_c, parts):
            assigned[i] = {p.partition for p in parts}
        return cb

    for i, c in enumerate(consumers):
        c.subscribe([topic], on_assign=on_assign(i))
    try:
        # The group settles first (its rebalances write the group record, which must commit
        # too), so that the commits below run in one stable generation.
        def settled():
            for c in consumers:
                c.poll(0.1)
            return all(len(a) == 1 for a in assigned) and set().union(*assigned) == {0, 1, 2}

        wait_until(settled, 60, interval=0, what="three consumers with one partition each")

        p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 0})
        for i in range(MESSAGES):
            p.produce(topic, f"m{i}".encode(), partition=i % 3)
        assert p.flush(30) == 0

        read = [0] * len(consumers)
        errors: list[str] = []
        took: list[float] = []
        lock = threading.Lock()
        deadline = time.monotonic() + LIMIT_S

        def consume(i: int, c: Consumer) -> None:
            while sum(read) < MESSAGES and time.monotonic() < deadline and not errors:
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                t0 = time.monotonic()
                try:
                    c.commit(message=m, asynchronous=False)
                except KafkaException as e:
                    errors.append(f"consumer {i}: commit of {m.partition()}@{m.offset()}: {e}")
                    return
                with lock:
                    took.append(time.monotonic() - t0)
                    read[i] += 1

        threads = [threading.Thread(target=consume, args=(i, c)) for i, c in enumerate(consumers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(LIMIT_S + 30)
        assert not errors, errors[:3]
        assert sum(read) == MESSAGES, f"read and committed {read} of {MESSAGES} in {LIMIT_S} s"

        # What was committed is what was read: every partition up to its end.
        got = consumers[0].committed([TopicPartition(topic, i) for i in range(3)], timeout=10)
        assert {t.partition: t.offset for t in got} == {i: MESSAGES // 3 for i in range(3)}
        took.sort()
        print(f"{len(took)} synchronous commits: median {statistics.median(took) * 1000:.2f} ms, "
              f"max {took[-1] * 1000:.2f} ms (replica.fetch.wait.max.ms {FETCH_WAIT_MS})")
    finally:
        for c in consumers:
            c.close()
