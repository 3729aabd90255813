"""Group administration with confluent-kafka's AdminClient (plus raw OffsetDelete, which the
pinned Python client does not expose): list, describe, committed offsets, lag, deletion."""

from __future__ import annotations

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

import rawgroups as rg
from groups_helpers import GROUP_FLAGS, Member, committed, gid, partition_of_each, pump
from kafka_helpers import admin, create_topic, produce_all, producer, unique_topic, watermarks


def listed(a, group: str):
    res = a.list_consumer_groups(request_timeout=15).result(timeout=20)
    assert not res.errors, res.errors
    return {g.group_id: g for g in res.valid}.get(group)


def test_admin_list_describe_offsets_lag_delete(broker_factory):
    b = broker_factory(**GROUP_FLAGS)
    topic, group = unique_topic("adm"), gid("adm")
    create_topic(b.bootstrap, topic, 3)
    p = producer(b.bootstrap)
    ms = [Member(b.bootstrap, group, [topic], f"adm-{i}") for i in range(2)]
    a = admin(b.bootstrap)
    try:
        pump(ms, lambda: partition_of_each(ms, 3) and all(m.assignment() for m in ms), 60, "two members")
        # Produced once the group is stable, so that no partition is read twice across a rebalance.
        produce_all(p, [(topic, i % 3, None, f"v{i}".encode(), None) for i in range(300)])
        pump(ms, lambda: sum(len(m.msgs) for m in ms) >= 300, 60, "all consumed")
        for m in ms:
            m.commit()
        # More data after the commit: the lag is what was produced since.
        produce_all(p, [(topic, i % 3, None, b"late", None) for i in range(30)])

        g = listed(a, group)
        assert g is not None and not g.is_simple_consumer_group and str(g.state).endswith("STABLE"), g
        d = a.describe_consumer_groups([group])[group].result(timeout=15)
        assert str(d.state).endswith("STABLE") and d.partition_assignor == "range" and d.coordinator.id == 0
        assert sorted(mem.client_id for mem in d.members) == ["adm-0", "adm-1"]
        owned = sorted(tp.partition for mem in d.members for tp in mem.assignment.topic_partitions)
        assert owned == [0, 1, 2]

        offs = committed(a, group, topic, 3)
        assert offs == {0: 100, 1: 100, 2: 100}
        lag = {q: watermarks(b.bootstrap, topic, q)[1] - offs[q] for q in range(3)}
        assert lag == {0: 10, 1: 10, 2: 10}

        # Not while members are active.
        with pytest.raises(KafkaException) as e:
            a.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
        assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, e.value
        with rg.Conn(b.bootstrap) as c:
            err, parts = c.offset_delete(group, {topic: [1]})
            assert err == 0 and parts == {(topic, 1): rg.GROUP_SUBSCRIBED_TO_TOPIC}, (err, parts)
        assert committed(a, group, topic, 3) == {0: 100, 1: 100, 2: 100}

        for m in ms:
            m.close()
        g = listed(a, group)
        assert g is not None and str(g.state).endswith("EMPTY"), g
        d = a.describe_consumer_groups([group])[group].result(timeout=15)
        assert str(d.state).endswith("EMPTY") and d.members == []

        # Offsets of an empty group can be changed and deleted.
        res = a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 50)])])
        res[group].result(timeout=15)
        with rg.Conn(b.bootstrap) as c:
            err, parts = c.offset_delete(group, {topic: [1]})
            assert err == 0 and parts == {(topic, 1): 0}, (err, parts)
        assert committed(a, group, topic, 3) == {0: 50, 1: -1001, 2: 100}
        # A second group with offsets, kept, to tell "deleted" from "everything lost" after restarts.
        keep = gid("keep")
        a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(keep, [TopicPartition(topic, 2, 77)])])[keep] \
            .result(timeout=15)

        # The altered and deleted offsets are durable.
        assert b.stop() == 0
        b.restart()
        a = admin(b.bootstrap)
        assert committed(a, group, topic, 3) == {0: 50, 1: -1001, 2: 100}

        a.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
        assert listed(a, group) is None
        assert committed(a, group, topic, 3) == {0: -1001, 1: -1001, 2: -1001}

        # And so is the deletion: the group does not come back when the offsets topic is replayed.
        assert b.stop() == 0
        b.restart()
        a = admin(b.bootstrap)
        assert listed(a, group) is None
        assert committed(a, group, topic, 3) == {0: -1001, 1: -1001, 2: -1001}
        assert committed(a, keep, topic, 3) == {0: -1001, 1: -1001, 2: 77}
    finally:
        for m in ms:
            m.close()


def test_offset_delete_unknown_group(broker_factory):
    b = broker_factory(**GROUP_FLAGS)
    with rg.Conn(b.bootstrap) as c:
        c.wait_coordinator("nobody")
        err, _ = c.offset_delete(gid("nobody"), {"t": [0]})
        assert err == 69  # GROUP_ID_NOT_FOUND


def test_lag_metric(broker_factory):
    b = broker_factory(**GROUP_FLAGS)
    topic, group = unique_topic("lagm"), gid("lagm")
    create_topic(b.bootstrap, topic, 1)
    produce_all(producer(b.bootstrap), [(topic, 0, None, b"x", None) for _ in range(25)])
    a = admin(b.bootstrap)
    a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 5)])])[group] \
        .result(timeout=15)
    status, text = b.http_get("/metrics")
    assert status == 200
    # Any metric family with "lag" in its name, labelled with the group and topic, valued 20.
    lines = [ln for ln in text.splitlines() if not ln.startswith("#") and "lag" in ln.split("{")[0]
             and group in ln and topic in ln]
    assert lines, "no consumer lag series for the group in /metrics"
    assert any(float(ln.rsplit(" ", 1)[1]) == 20 for ln in lines), lines
