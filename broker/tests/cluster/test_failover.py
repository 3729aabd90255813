"""Failover under an acks=all idempotent load on a 3-broker cluster (racks zone-a/b/c): the
checker (checker.py) verifies after every fault that nothing acknowledged was lost, duplicated
or reordered."""

from __future__ import annotations

import time

import pytest

from checker import Load, verify
from cluster import unique_topic
from harness import RACKS, SESSION_TIMEOUT_MS, wait_until

PARTITIONS = 3


def start_load(cluster, prefix: str, rate: float = 300.0) -> Load:
    topic = unique_topic(prefix)
    cluster.create_topic(topic, partitions=PARTITIONS, rf=3, min_insync=2)
    load = Load(cluster.bootstrap, topic, PARTITIONS, rate=rate).start()
    load.wait_acks(100, 20, "before the fault")
    return load


def test_rf3_replicas_land_in_three_racks(cluster):
    racks = cluster.racks()
    assert racks == {b.broker_id: b.rack for b in cluster.brokers}, racks
    assert sorted(racks.values()) == sorted(RACKS)
    topic = unique_topic("racks")
    cluster.create_topic(topic, partitions=6, rf=3, min_insync=2)
    parts = cluster.partitions(topic)
    assert len(parts) == 6
    leaders = {}
    for pid, p in parts.items():
        assert len(p.replicas) == 3, (pid, p.replicas)
        assert {racks[r] for r in p.replicas} == set(RACKS), f"partition {pid} replicas {p.replicas} not in 3 racks"
        assert sorted(p.isrs) == sorted(p.replicas)
        leaders[p.leader] = leaders.get(p.leader, 0) + 1
    # Leaders spread evenly: 6 partitions over 3 brokers, 2 each.
    assert sorted(leaders.values()) == [2, 2, 2], f"leaders per broker {leaders}"


def test_kill9_leader_under_acks_all_load(cluster):
    load = start_load(cluster, "kill-leader")
    victim = cluster.leader(load.topic, 0)
    cluster.broker(victim).kill9()
    t0 = time.monotonic()
    new = cluster.wait_leader(load.topic, 0, not_in={victim}, timeout=SESSION_TIMEOUT_MS / 1000 + 20)
    print(f"leader of p0 moved {victim} -> {new} in {time.monotonic() - t0:.1f} s")
    load.wait_acks(300, 30, "after the leader was killed")
    isr = cluster.isr(load.topic, 0)
    assert victim not in isr, f"dead broker {victim} still in ISR {isr}"
    load.stop()
    verify(load, cluster.bootstrap)


def test_kill9_controller_under_acks_all_load(cluster):
    load = start_load(cluster, "kill-controller")
    ctl = cluster.controller_id()
    assert ctl in {b.broker_id for b in cluster.brokers}
    cluster.broker(ctl).kill9()
    # (id,) tuples: broker id 0 is a valid answer but falsy.
    (new_ctl,) = wait_until(lambda: (c := cluster.controller_id()) >= 0 and c != ctl and (c,), 30,
                            what=f"a new controller after {ctl} was killed")
    print(f"controller moved {ctl} -> {new_ctl}")
    for p in range(PARTITIONS):
        cluster.wait_leader(load.topic, p, not_in={ctl}, timeout=30)
    load.wait_acks(300, 30, "after the controller was killed")
    load.stop()
    verify(load, cluster.bootstrap)


def test_sigstopped_leader_is_replaced_and_rejoins_as_follower(cluster):
    """A hung leader (SIGSTOP: alive, silent) loses its session; a new leader takes over. When
    it resumes it must not act as leader (stale epoch): it rejoins as a follower, truncating
    whatever it had that was not committed."""
    load = start_load(cluster, "sigstop")
    victim = cluster.leader(load.topic, 0)
    cluster.broker(victim).pause()
    try:
        new = cluster.wait_leader(load.topic, 0, not_in={victim}, timeout=SESSION_TIMEOUT_MS / 1000 + 20)
        print(f"leader of p0 moved {victim} -> {new} while {victim} was stopped")
        load.wait_acks(300, 30, f"with the old leader {victim} stopped")
    finally:
        cluster.broker(victim).resume()
    cluster.wait_isr(load.topic, 0, lambda isr: victim in isr, timeout=40,
                     what=f"resumed broker {victim} back in the ISR")
    load.wait_acks(200, 30, "after the old leader resumed")
    load.stop()
    verify(load, cluster.bootstrap)


def test_killed_broker_returns_catches_up_and_rejoins_isr(cluster):
    load = start_load(cluster, "rejoin")
    leader = cluster.leader(load.topic, 0)
    follower = next(r for r in cluster.partitions(load.topic)[0].replicas if r != leader)
    cluster.broker(follower).kill9()
    cluster.wait_isr(load.topic, 0, lambda isr: follower not in isr, timeout=30,
                     what=f"killed follower {follower} removed from the ISR")
    load.wait_acks(600, 30, "with the follower down")  # it falls behind by these
    cluster.broker(follower).restart()
    cluster.wait_isr(load.topic, 0, lambda isr: follower in isr, timeout=40,
                     what=f"returned broker {follower} back in the ISR")
    load.wait_acks(200, 30, "after the follower rejoined")
    load.stop()
    verify(load, cluster.bootstrap)
    # Prove the returned replica caught up: make it the only broker left. It is in the ISR, so
    # it must be elected and serve everything acknowledged.
    others = [b for b in cluster.brokers if b.broker_id != follower]
    for b in others:
        b.kill9()
    cluster.wait_leader(load.topic, 0, timeout=40)
    assert cluster.leader(load.topic, 0) == follower
    # Only partition 0 is checked through the returned broker; the others may be offline now.
    verify_partition0(load, cluster)


def verify_partition0(load: Load, cluster) -> None:
    from checker import read_all

    acked = [a for a in load.acked if a.partition == 0]
    got = dict(read_all(cluster.bootstrap, load.topic, 1, min_end={0: max(a.offset for a in acked) + 1})[0])
    lost = [a for a in acked if got.get(a.offset) != a.payload]
    assert not lost, f"{len(lost)} acked messages of p0 missing on the returned broker, first {lost[:3]}"
    print(f"returned broker serves all {len(acked)} acked messages of p0")


def test_rolling_restart_under_load_loses_and_fails_nothing(cluster):
    load = start_load(cluster, "rolling", rate=200)
    for b in list(cluster.brokers):
        t0 = time.monotonic()
        code = b.term(timeout=40)
        assert code == 0, f"broker {b.broker_id} exited {code} on SIGTERM:\n{b.log_tail()}"
        stopped = time.monotonic() - t0
        # While it is down it leaves every ISR (controlled shutdown, or the leaders' lag check),
        # so that coming back really exercises catch-up and ISR expansion.
        for p in range(PARTITIONS):
            cluster.wait_isr(load.topic, p, lambda isr, i=b.broker_id: i not in isr, timeout=20,
                             what=f"stopped broker {b.broker_id} out of the ISR of p{p}")
        load.wait_acks(100, 30, f"with broker {b.broker_id} down")
        b.restart()
        cluster.wait_full_isr(load.topic, timeout=60)
        print(f"broker {b.broker_id}: controlled shutdown {stopped:.1f} s, back with full ISR after "
              f"{time.monotonic() - t0:.1f} s; acked so far {load.acked_count()}, failed {len(load.failed)}")
        load.wait_acks(100, 30, f"after restarting broker {b.broker_id}")
    load.stop()
    verify(load, cluster.bootstrap, strict=True)
    assert not load.failed


def test_coordinator_restart_under_load(cluster):
    load = start_load(cluster, "coord-restart")
    cluster.coord.term()
    # acks=all produce goes on while the coordinator is away (well within the session timeout).
    load.wait_acks(200, 3.0, "while the coordinator was down")
    cluster.coord.restart()
    load.wait_acks(200, 20, "after the coordinator came back")
    # Leadership changes resume: kill a leader, a new one is elected.
    victim = cluster.leader(load.topic, 1)
    cluster.broker(victim).kill9()
    cluster.wait_leader(load.topic, 1, not_in={victim}, timeout=SESSION_TIMEOUT_MS / 1000 + 25)
    load.wait_acks(300, 30, "after the post-restart failover")
    load.stop()
    verify(load, cluster.bootstrap)


@pytest.mark.zookeeper
def test_kill9_leader_with_apache_zookeeper(cluster_factory):
    """The core failover test against Apache ZooKeeper 3.8, the brokers under a chroot."""
    cluster = cluster_factory(coordinator="zookeeper", chroot="/rivulet")
    test_kill9_leader_under_acks_all_load(cluster)


@pytest.mark.zookeeper
def test_kill9_controller_with_apache_zookeeper(cluster_factory):
    """Controller failover (ephemeral /controller, epoch-checked writes) on Apache ZooKeeper 3.8."""
    cluster = cluster_factory(coordinator="zookeeper", chroot="/rivulet")
    test_kill9_controller_under_acks_all_load(cluster)


@pytest.mark.zookeeper
def test_rolling_restart_with_apache_zookeeper(cluster_factory):
    """Controlled shutdown and rejoin, one broker at a time, on Apache ZooKeeper 3.8."""
    cluster = cluster_factory(coordinator="zookeeper", chroot="/rivulet")
    test_rolling_restart_under_load_loses_and_fails_nothing(cluster)


def test_acks_all_refused_below_min_insync_replicas(cluster):
    """With only the leader left in the ISR of an RF=3 min.insync.replicas=2 topic, acks=all
    produce fails with NOT_ENOUGH_REPLICAS (nothing acknowledged), acks=1 still works, and
    acks=all resumes once a replica is back."""
    from confluent_kafka import KafkaError, Producer

    topic = unique_topic("min-isr")
    cluster.create_topic(topic, partitions=1, rf=3, min_insync=2)
    leader = cluster.leader(topic, 0)
    followers = [b for b in cluster.brokers if b.broker_id != leader]
    for b in followers:
        b.kill9()
    cluster.wait_isr(topic, 0, lambda isr: isr == [leader], timeout=30, what=f"ISR shrunk to the leader {leader}")

    def produce_one(acks: str, timeout_ms: int = 4000):
        p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": acks, "message.timeout.ms": timeout_ms,
                      "retries": 0 if acks == "all" else 2})
        out = []
        p.produce(topic, f"acks-{acks}".encode(), partition=0, on_delivery=lambda err, msg: out.append(err))
        p.flush(timeout_ms / 1000 + 5)
        return out[0] if out else "no delivery report"

    err = produce_one("all")
    assert err is not None and err.code() in (KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND), \
        f"acks=all with ISR [{leader}] and min.insync.replicas=2: {err}"
    assert produce_one("1") is None, "acks=1 must still be accepted by the leader"
    followers[0].restart()
    cluster.wait_isr(topic, 0, lambda isr: followers[0].broker_id in isr, timeout=40,
                     what=f"broker {followers[0].broker_id} back in the ISR")
    assert produce_one("all", 15000) is None, "acks=all must work again with 2 in-sync replicas"


def test_no_unclean_leader_election_by_default(cluster):
    """A partition whose whole ISR is dead stays offline rather than electing an out-of-sync
    replica; when the last in-sync replica returns, it leads again with everything acknowledged."""
    topic = unique_topic("unclean")
    cluster.create_topic(topic, partitions=1, rf=3, min_insync=1)
    load = Load(cluster.bootstrap, topic, 1, rate=200).start()
    load.wait_acks(100, 20, "at the start")
    leader = cluster.leader(topic, 0)
    a, b = [x for x in cluster.brokers if x.broker_id != leader]
    a.kill9()
    cluster.wait_isr(topic, 0, lambda isr: a.broker_id not in isr, timeout=30, what=f"{a.broker_id} out of the ISR")
    load.wait_acks(200, 20, f"without {a.broker_id}")
    b.kill9()
    cluster.wait_isr(topic, 0, lambda isr: isr == [leader], timeout=30, what=f"ISR shrunk to {leader}")
    load.wait_acks(200, 20, f"with only {leader} in the ISR")
    cluster.broker(leader).kill9()
    a.restart()  # out of sync, and the only live replica: it must not be elected
    time.sleep(SESSION_TIMEOUT_MS / 1000 + 3)
    p = cluster.partitions(topic)[0]
    assert p.leader == -1 or p.leader == leader, \
        f"out-of-sync broker {p.leader} was elected leader (ISR {sorted(p.isrs)}) with unclean election off"
    cluster.broker(leader).restart()
    assert cluster.wait_leader(topic, 0, timeout=40) == leader
    b.restart()
    load.wait_acks(200, 60, "after the last in-sync replica returned")
    load.stop()
    verify(load, cluster.bootstrap, strict=False)


def test_controller_killed_while_creating_a_topic(cluster):
    """The controller dies right after a 30-partition topic is requested: the next controller
    re-reads the tree and finishes the job (every partition gets a live leader from its replicas),
    and the topic takes acks=all writes on every partition."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    topic = unique_topic("mid-change")
    ctl = cluster.controller_id()
    cluster.admin().create_topics([NewTopic(topic, 30, 3, config={"min.insync.replicas": "2"})], request_timeout=15)
    time.sleep(0.05)
    cluster.broker(ctl).kill9()
    live = {b.broker_id for b in cluster.live()}
    wait_until(lambda: len(ps := cluster.partitions(topic)) == 30
               and all(p.leader in live and set(p.isrs) == set(p.replicas) & live for p in ps.values()), 40,
               interval=0.3, what=f"all 30 partitions led by live brokers {sorted(live)} after controller {ctl} died")
    cluster.broker(ctl).restart()
    cluster.wait_full_isr(topic, timeout=60)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 20000})
    errors = []
    for i in range(30):
        p.produce(topic, b"x", partition=i, on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0 and not errors, errors
