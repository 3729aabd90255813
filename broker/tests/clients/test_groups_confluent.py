"""Consumer groups with confluent-kafka (librdkafka) against a real broker: sharing partitions,
members leaving and dying, independent groups, committed offsets across restarts, static
membership and cooperative-sticky rebalancing."""

from __future__ import annotations

import time
from collections import Counter

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from groups_helpers import GROUP_FLAGS, ChildMember, Member, gid, partition_of_each, pump, values
from kafka_helpers import admin, create_topic, produce_all, producer, unique_topic, watermarks


def produce_phase(bootstrap: str, topic: str, phase: str, n: int, partitions: int) -> list[bytes]:
    vals = [f"{phase}-{i}".encode() for i in range(n)]
    produce_all(producer(bootstrap, linger_ms=5), [(topic, i % partitions, None, v, None) for i, v in enumerate(vals)])
    return vals


def all_msgs(members) -> list:
    return [m for mem in members for m in mem.msgs]


def assert_exactly_once(members, want: list[bytes], what: str) -> None:
    got = Counter(values(all_msgs(members)))
    dup = {v: n for v, n in got.items() if n > 1}
    assert not dup, f"{what}: {len(dup)} messages consumed more than once, e.g. {list(dup.items())[:5]}"
    missing = set(want) - set(got)
    assert not missing, f"{what}: {len(missing)} messages never consumed, e.g. {sorted(missing)[:5]}"
    assert set(got) == set(want), f"{what}: unexpected messages {sorted(set(got) - set(want))[:5]}"


def settle(members, seconds: float = 1.0) -> None:
    """Keeps polling a little after the last expected message, so that duplicates would show."""
    end = time.monotonic() + seconds
    pump(members, lambda: time.monotonic() > end, seconds + 5, "settle")


def test_three_members_share_then_leave_then_die(broker_factory):
    b = broker_factory(**GROUP_FLAGS)
    topic, group = unique_topic("share"), gid("share")
    create_topic(b.bootstrap, topic, 6)
    # b has a long session: only its LeaveGroup (not a session expiry) can move its partitions fast.
    ma = Member(b.bootstrap, group, [topic], "a")
    mb = Member(b.bootstrap, group, [topic], "b", **{"session.timeout.ms": 30000})
    mc = ChildMember(b.bootstrap, group, topic, "c")
    members = [ma, mb, mc]
    try:
        pump(members, lambda: partition_of_each(members, 6) and all(len(m.assignment()) == 2 for m in members),
             60, "three members owning two partitions each")
        owned = {m.name: m.assignment() for m in members}

        want1 = produce_phase(b.bootstrap, topic, "one", 600, 6)
        pump(members, lambda: len(all_msgs(members)) >= 600, 60, "phase one consumed")
        settle(members)
        assert_exactly_once(members, want1, "three members")
        for m in members:
            assert {p for p, _, _ in m.msgs} <= owned[m.name], f"{m.name} read a partition it does not own"
        ma.commit()
        mb.commit()

        # b closes: LeaveGroup, so its two partitions move to a and c at once (not after 30 s).
        t0 = time.monotonic()
        mb.close()
        live = [ma, mc]
        pump(live, lambda: partition_of_each(live, 6) and all(m.assignment() for m in live), 20,
             "b's partitions to move after LeaveGroup")
        print(f"rebalance after LeaveGroup took {time.monotonic() - t0:.2f} s")
        assert owned["b"] <= ma.assignment() | mc.assignment()

        want2 = produce_phase(b.bootstrap, topic, "two", 600, 6)
        pump(live, lambda: len(all_msgs(members)) >= 1200, 60, "phase two consumed")
        settle(live)
        assert_exactly_once(members, want1 + want2, "after a member left")
        ma.commit()

        # c dies without LeaveGroup: after its 3 s session timeout a owns everything.
        t0 = time.monotonic()
        mc.kill()
        pump([ma], lambda: ma.assignment() == set(range(6)), 40, "a to own all partitions after c died")
        took = time.monotonic() - t0
        print(f"rebalance after SIGKILL took {took:.2f} s (session timeout 3 s)")
        # The coordinator waits for the session timeout (c's last heartbeat was < 0.3 s before the kill).
        assert took >= 2.0, f"member evicted {took:.2f} s after its death, before its 3 s session timeout"

        want3 = produce_phase(b.bootstrap, topic, "three", 600, 6)
        pump([ma], lambda: len(all_msgs(members)) >= 1800, 60, "phase three consumed")
        settle([ma])
        assert_exactly_once(members, want1 + want2 + want3, "after a member died")
    finally:
        mc.stop()
        for m in (ma, mb):
            m.close()


def test_two_groups_read_independently(broker_factory):
    b = broker_factory(**GROUP_FLAGS)
    topic = unique_topic("twogroups")
    create_topic(b.bootstrap, topic, 3)
    want = produce_phase(b.bootstrap, topic, "x", 300, 3)
    g1, g2 = gid("g1"), gid("g2")
    m1 = Member(b.bootstrap, g1, [topic], "g1")
    m2 = Member(b.bootstrap, g2, [topic], "g2")
    try:
        pump([m1, m2], lambda: len(m1.msgs) >= 300 and len(m2.msgs) >= 300, 60, "both groups to read all")
        m1.commit()
        settle([m1, m2])
        assert_exactly_once([m1], want, "group 1")
        assert_exactly_once([m2], want, "group 2")
        # Group 1's commit is its own: group 2 has committed nothing.
        a = admin(b.bootstrap)
        for group, committed in ((g1, 100), (g2, -1001)):
            res = a.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])])
            offs = {tp.partition: tp.offset for tp in res[group].result(timeout=15).topic_partitions}
            assert offs == {p: committed for p in range(3)}, (group, offs)
    finally:
        m1.close()
        m2.close()


def test_commits_survive_restart_with_metadata(broker_factory):
    b = broker_factory(**GROUP_FLAGS)
    topic, group = unique_topic("restart"), gid("restart")
    create_topic(b.bootstrap, topic, 3)
    produce_phase(b.bootstrap, topic, "r", 300, 3)  # 100 per partition
    m1 = Member(b.bootstrap, group, [topic], "m1")
    try:
        pump([m1], lambda: len(m1.msgs) >= 300, 60, "first read")
        # Commit a prefix of each partition with metadata; the rest is the uncommitted tail.
        commits = {0: (40, "m0"), 1: (70, "meta-\u00fc-\u2603"), 2: (100, "")}
        res = m1.c.commit(offsets=[TopicPartition(topic, p, o, metadata=md) for p, (o, md) in commits.items()],
                          asynchronous=False)
        assert all(tp.error is None for tp in res), res
    finally:
        m1.close()

    assert b.stop() == 0
    b.restart()
    produce_phase(b.bootstrap, topic, "after", 30, 3)  # offsets 100..109 per partition

    m2 = Member(b.bootstrap, group, [topic], "m2")
    try:
        got = m2.c.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)
        assert {tp.partition: (tp.offset, tp.metadata) for tp in got} == \
            {p: (o, md) for p, (o, md) in commits.items()}
        want = {p: list(range(commits[p][0], 110)) for p in range(3)}
        pump([m2], lambda: len(m2.msgs) >= sum(map(len, want.values())), 60, "resume after restart")
        settle([m2])
        by_part = {p: [o for q, o, _ in m2.msgs if q == p] for p in range(3)}
        assert by_part == want, "resumed reads differ from committed offset .. end"
        m2.commit()
    finally:
        m2.close()

    # A crash (kill -9) right after the acknowledged commit loses nothing either.
    b.kill9()
    b.restart()
    c = Member(b.bootstrap, group, [topic], "m3")
    try:
        got = c.c.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)
        assert {tp.partition: tp.offset for tp in got} == {0: 110, 1: 110, 2: 110}
        assert all(watermarks(b.bootstrap, topic, p)[1] == 110 for p in range(3))
    finally:
        c.close()


def test_static_membership_restart_without_rebalance(broker_factory):
    b = broker_factory(**GROUP_FLAGS)
    topic, group = unique_topic("static"), gid("static")
    create_topic(b.bootstrap, topic, 6)
    conf = {"session.timeout.ms": 10000, "statistics.interval.ms": 200}
    ms = [Member(b.bootstrap, group, [topic], f"s{i}", **{"group.instance.id": f"inst-{i}"}, **conf) for i in range(3)]
    a = admin(b.bootstrap)

    def describe():
        d = a.describe_consumer_groups([group])[group].result(timeout=15)
        return d, {mem.group_instance_id: mem.member_id for mem in d.members}

    try:
        pump(ms, lambda: partition_of_each(ms, 6) and all(len(m.assignment()) == 2 for m in ms), 60, "stable group")
        settle(ms, 1.0)  # stats of the settled state
        before = {m.name: m.assignment() for m in ms}
        events_before = {m.name: list(m.events) for m in ms[:2]}
        rebalances_before = {m.name: m.stats["cgrp"]["rebalance_cnt"] for m in ms[:2]}
        d0, ids0 = describe()
        assert str(d0.state).endswith("STABLE") and set(ids0) == {"inst-0", "inst-1", "inst-2"}

        # A static member closes (librdkafka sends no LeaveGroup for it) and comes back at once.
        ms[2].close()
        back = Member(b.bootstrap, group, [topic], "s2-again", **{"group.instance.id": "inst-2"}, **conf)
        live = ms[:2] + [back]
        pump(live, lambda: back.assignment(), 30, "the restarted static member's assignment")
        settle(live, 2.0)  # several heartbeats: a rebalance of the others would show now
        assert back.assignment() == before["s2"], "the static member did not get its partitions back"
        for m in ms[:2]:
            assert m.events == events_before[m.name], f"{m.name} went through a rebalance: {m.events}"
            assert m.assignment() == before[m.name]
            assert m.stats["cgrp"]["rebalance_cnt"] == rebalances_before[m.name]
        d1, ids1 = describe()
        assert str(d1.state).endswith("STABLE")
        assert ids1["inst-0"] == ids0["inst-0"] and ids1["inst-1"] == ids0["inst-1"]
        assert ids1["inst-2"] != ids0["inst-2"], "the restarted instance should have a new member id"
        assert len(d1.members) == 3

        # And the group works with the replaced member.
        want = produce_phase(b.bootstrap, topic, "static", 120, 6)
        pump(live, lambda: len(all_msgs(live)) >= 120, 60, "messages after the static restart")
        settle(live)
        assert_exactly_once(live, want, "static group")
    finally:
        for m in ms + ([back] if "back" in locals() else []):
            m.close()


def test_cooperative_sticky_incremental_join(broker_factory):
    b = broker_factory(**GROUP_FLAGS)
    topic, group = unique_topic("coop"), gid("coop")
    create_topic(b.bootstrap, topic, 6)
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    c1 = Member(b.bootstrap, group, [topic], "c1", **conf)
    c2 = Member(b.bootstrap, group, [topic], "c2", **conf)
    two = [c1, c2]
    members = [c1, c2]
    try:
        pump(two, lambda: partition_of_each(two, 6) and all(len(m.assignment()) == 3 for m in two), 60,
             "two cooperative members with three partitions each")
        a = admin(b.bootstrap)  # kept referenced: a collected client fails its pending futures
        d = a.describe_consumer_groups([group])[group].result(timeout=15)
        assert d.partition_assignor == "cooperative-sticky"
        want1 = produce_phase(b.bootstrap, topic, "coop1", 300, 6)
        pump(two, lambda: len(all_msgs(two)) >= 300, 60, "phase one consumed")
        settle(two)
        assert_exactly_once(two, want1, "two cooperative members")
        for m in two:
            m.commit()
        before = {m.name: m.assignment() for m in two}
        n_events = {m.name: len(m.events) for m in two}

        c3 = Member(b.bootstrap, group, [topic], "c3", **conf)
        members.append(c3)
        pump(members, lambda: partition_of_each(members, 6) and all(len(m.assignment()) == 2 for m in members), 60,
             "the third member to get two partitions")
        for m in two:
            new = m.events[n_events[m.name]:]
            revoked = [p for kind, ps in new if kind == "revoke" for p in ps]
            # Incremental: only what moves to c3 is revoked, the rest is kept throughout (sticky).
            assert len(revoked) == 1 and set(revoked) <= before[m.name], f"{m.name}: {new}"
            assert m.assignment() == before[m.name] - set(revoked)
            assert not [e for e in new if e[0] == "lost"]
        assert c3.events and all(kind == "assign" for kind, _ in c3.events)

        want2 = produce_phase(b.bootstrap, topic, "coop2", 300, 6)
        pump(members, lambda: len(all_msgs(members)) >= 600, 60, "phase two consumed")
        settle(members)
        assert_exactly_once(members, want1 + want2, "after an incremental join")
    finally:
        for m in members:
            m.close()


def test_group_state_survives_restart(broker_factory):
    """The group itself (generation, members, assignment), not only its offsets, is reloaded from
    __consumer_offsets: members that reconnect after a broker restart carry on in their generation."""
    b = broker_factory(**GROUP_FLAGS)
    topic, group = unique_topic("gstate"), gid("gstate")
    create_topic(b.bootstrap, topic, 4)
    conf = {"session.timeout.ms": 15000}
    ms = [Member(b.bootstrap, group, [topic], f"r{i}", **conf) for i in range(2)]
    a = admin(b.bootstrap)
    try:
        pump(ms, lambda: partition_of_each(ms, 4) and all(len(m.assignment()) == 2 for m in ms), 60, "stable group")
        want1 = produce_phase(b.bootstrap, topic, "before", 200, 4)
        pump(ms, lambda: len(all_msgs(ms)) >= 200, 60, "phase one consumed")
        settle(ms)
        for m in ms:
            m.commit()
        d0 = a.describe_consumer_groups([group])[group].result(timeout=15)
        ids0 = sorted(mem.member_id for mem in d0.members)
        events0 = {m.name: list(m.events) for m in ms}
        assigned0 = {m.name: m.assignment() for m in ms}

        assert b.stop() == 0
        b.restart()
        a = admin(b.bootstrap)
        d1 = a.describe_consumer_groups([group])[group].result(timeout=15)
        assert str(d1.state).endswith("STABLE"), d1.state
        assert sorted(mem.member_id for mem in d1.members) == ids0
        assert sorted(tp.partition for mem in d1.members for tp in mem.assignment.topic_partitions) == [0, 1, 2, 3]

        want2 = produce_phase(b.bootstrap, topic, "after", 200, 4)
        pump(ms, lambda: len(all_msgs(ms)) >= 400, 60, "phase two consumed after the restart")
        settle(ms, 2.0)
        assert_exactly_once(ms, want1 + want2, "across a broker restart")
        for m in ms:
            assert m.events == events0[m.name], f"{m.name} rebalanced after the restart: {m.events[len(events0[m.name]):]}"
            assert m.assignment() == assigned0[m.name]
    finally:
        for m in ms:
            m.close()
