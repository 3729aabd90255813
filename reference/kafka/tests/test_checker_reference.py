"""A check of the checker: the cluster fault suite's produce / kill -9 / verify scenarios
(broker/tests/cluster: checker.Load under acks=all idempotent load, checker.verify reads every
partition back) run against Apache Kafka's 3-node KRaft cluster. Kafka is the reference, so the
checker must pass there; a failure here is a checker bug (or a harness one), not a Rivulet one."""

from __future__ import annotations

import time

from checker import Load, verify
from cluster import unique_topic
from harness import SESSION_TIMEOUT_MS

PARTITIONS = 3


def start_load(cluster, prefix: str, rate: float = 300.0) -> Load:
    topic = unique_topic(prefix)
    cluster.create_topic(topic, partitions=PARTITIONS, rf=3, min_insync=2)
    load = Load(cluster.bootstrap, topic, PARTITIONS, rate=rate).start()
    load.wait_acks(100, 30, "before the fault")
    return load


def test_checker_passes_on_kafka_kill9_leader(kafka_factory):
    cluster = kafka_factory()
    load = start_load(cluster, "ref-kill-leader")
    victim = cluster.leader(load.topic, 0)
    cluster.broker(victim).kill9()
    t0 = time.monotonic()
    new = cluster.wait_leader(load.topic, 0, not_in={victim}, timeout=SESSION_TIMEOUT_MS / 1000 + 30)
    print(f"Kafka: leader of p0 moved {victim} -> {new} in {time.monotonic() - t0:.1f} s")
    load.wait_acks(300, 40, "after the leader was killed")
    isr = cluster.isr(load.topic, 0)
    assert victim not in isr, f"dead node {victim} still in ISR {isr}"
    load.stop()
    print(verify(load, cluster.bootstrap))


def test_checker_passes_on_kafka_killed_follower_rejoins(kafka_factory):
    cluster = kafka_factory()
    load = start_load(cluster, "ref-rejoin")
    leader = cluster.leader(load.topic, 0)
    follower = next(r for r in cluster.partitions(load.topic)[0].replicas if r != leader)
    cluster.broker(follower).kill9()
    cluster.wait_isr(load.topic, 0, lambda isr: follower not in isr, timeout=40,
                     what=f"killed follower {follower} removed from the ISR")
    load.wait_acks(600, 40, "with the follower down")
    cluster.broker(follower).restart(120)
    cluster.wait_isr(load.topic, 0, lambda isr: follower in isr, timeout=90,
                     what=f"returned node {follower} back in the ISR")
    load.wait_acks(200, 40, "after the follower rejoined")
    load.stop()
    print(verify(load, cluster.bootstrap))


def test_checker_catches_a_lost_write(kafka_factory):
    """The checker must also fail when it should: DeleteRecords removes acknowledged records
    from the front of partition 0 (a loss as far as the checker knows), and verify() must say
    LOST rather than pass."""
    from confluent_kafka import TopicPartition

    cluster = kafka_factory()
    load = start_load(cluster, "ref-loss")
    load.stop()
    cut = TopicPartition(load.topic, 0, 10)
    futs = cluster.admin().delete_records([cut], request_timeout=30)
    for f in futs.values():
        f.result(40)
    try:
        verify(load, cluster.bootstrap)
    except AssertionError as e:
        assert "LOST" in str(e), e
    else:
        raise AssertionError("verify() passed although 10 acknowledged records of p0 were deleted")
