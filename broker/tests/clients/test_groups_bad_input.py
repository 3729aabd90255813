"""Consumer-group requests no well-behaved client sends, over raw sockets: each gets Kafka's
error code, and none of them disturbs the broker or the other groups."""

from __future__ import annotations

import time
import uuid

import pytest

import rawgroups as rg
from kafka_helpers import create_topic, unique_topic

GROUP_FLAGS = {"group_initial_rebalance_delay_ms": 100, "group_min_session_timeout_ms": 1000,
               "group_max_session_timeout_ms": 60000}


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(**GROUP_FLAGS)


def gid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_join_with_inconsistent_protocol(gbroker):
    group = gid("proto")
    with rg.Conn(gbroker.bootstrap) as a, rg.Conn(gbroker.bootstrap) as b:
        j = rg.stable_member(a, group, ["t"])
        # Another protocol type than the members have.
        other = b.join(group, protocol_type="connect", protocols=(("range", b""),))
        assert other["error"] == rg.INCONSISTENT_GROUP_PROTOCOL, other
        # Same type, but no protocol (assignor) in common with the members.
        other = b.join(group, protocols=(("no-such-assignor", rg.consumer_subscription(["t"])),))
        assert other["error"] == rg.INCONSISTENT_GROUP_PROTOCOL, other
        # No protocols at all, and an empty protocol type, also for a new group.
        assert b.join(gid("empty"), protocols=())["error"] == rg.INCONSISTENT_GROUP_PROTOCOL
        assert b.join(gid("empty"), protocol_type="")["error"] == rg.INCONSISTENT_GROUP_PROTOCOL
        # The group was not disturbed: the member still heartbeats in its generation.
        assert a.heartbeat(group, j["generation"], j["member_id"]) == rg.NONE


def test_sync_with_wrong_generation(gbroker):
    group = gid("gen")
    with rg.Conn(gbroker.bootstrap) as a:
        j = rg.stable_member(a, group, ["t"])
        err, _ = a.sync(group, j["generation"] + 7, j["member_id"], {})
        assert err == rg.ILLEGAL_GENERATION
        assert a.heartbeat(group, j["generation"] - 1, j["member_id"]) == rg.ILLEGAL_GENERATION
        assert a.heartbeat(group, j["generation"], j["member_id"]) == rg.NONE


def test_unknown_member(gbroker):
    group = gid("unknown")
    topic = unique_topic("unk")
    create_topic(gbroker.bootstrap, topic, 2)
    with rg.Conn(gbroker.bootstrap) as a, rg.Conn(gbroker.bootstrap) as b:
        j = rg.stable_member(a, group, [topic])
        gen = j["generation"]
        # OffsetCommit from a non-member that claims the current generation.
        res = b.commit(group, {(topic, 0): (5, None)}, generation=gen, member_id="not-a-member")
        assert res == {(topic, 0): rg.UNKNOWN_MEMBER_ID}
        assert b.heartbeat(group, gen, "not-a-member") == rg.UNKNOWN_MEMBER_ID
        err, _ = b.sync(group, gen, "not-a-member", {})
        assert err == rg.UNKNOWN_MEMBER_ID
        err, members = b.leave(group, "not-a-member")
        assert err == rg.NONE and members == [("not-a-member", None, rg.UNKNOWN_MEMBER_ID)], (err, members)
        # Nothing was committed by the refused request; the member's own commit works.
        assert b.fetch_offsets(group, {topic: [0]})[1][(topic, 0)][0] == -1
        assert a.commit(group, {(topic, 0): (5, "m")}, generation=gen, member_id=j["member_id"]) == {(topic, 0): 0}
        assert b.fetch_offsets(group, {topic: [0]})[1][(topic, 0)] == (5, "m", 0)
        # A member that left is unknown afterwards.
        assert a.leave(group, j["member_id"]) == (0, [(j["member_id"], None, 0)])
        assert a.heartbeat(group, gen, j["member_id"]) == rg.UNKNOWN_MEMBER_ID


def test_session_timeout_out_of_range(gbroker):
    with rg.Conn(gbroker.bootstrap) as a:
        group = gid("session")
        a.wait_coordinator(group)
        for timeout_ms in (999, 60001, 0, -1):
            res = a.join(group, session_timeout_ms=timeout_ms)
            assert res["error"] == rg.INVALID_SESSION_TIMEOUT, (timeout_ms, res)
        # The bounds themselves are accepted.
        assert a.join(group, session_timeout_ms=1000)["error"] == rg.NONE


def test_empty_group_id_join(gbroker):
    with rg.Conn(gbroker.bootstrap) as a:
        a.wait_coordinator("any")
        assert a.join("")["error"] == rg.INVALID_GROUP_ID


def test_empty_group_id_sync_heartbeat_leave(gbroker):
    with rg.Conn(gbroker.bootstrap) as a:
        a.wait_coordinator("any")
        assert a.sync("", 1, "m", {})[0] == rg.INVALID_GROUP_ID
        assert a.heartbeat("", 1, "m") == rg.INVALID_GROUP_ID
        assert a.leave("", "m")[0] == rg.INVALID_GROUP_ID


def test_commit_metadata_too_large(gbroker):
    group = gid("meta")
    topic = unique_topic("meta")
    create_topic(gbroker.bootstrap, topic, 2)
    with rg.Conn(gbroker.bootstrap) as a:
        a.wait_coordinator(group)
        # Simple (non-member) commits to an unused group, as Kafka allows: one partition over the
        # 4096-byte limit is refused, the other, exactly at the limit, is committed.
        res = a.commit(group, {(topic, 0): (3, "x" * 4097), (topic, 1): (4, "y" * 4096)})
        assert res == {(topic, 0): rg.OFFSET_METADATA_TOO_LARGE, (topic, 1): rg.NONE}
        err, offsets = a.fetch_offsets(group, {topic: [0, 1]})
        assert err == 0
        assert offsets[(topic, 0)][0] == -1
        assert offsets[(topic, 1)] == (4, "y" * 4096, 0)


def test_oversized_member_metadata(gbroker):
    """5 MB of subscription metadata (below the 100 MB frame limit). Kafka keeps it in memory and
    fails when the group record no longer fits a batch; what matters is that nothing breaks, also
    across a restart while the huge member is still in the group (its group record is replayed)."""
    group = gid("huge")
    topic = unique_topic("huge")
    create_topic(gbroker.bootstrap, topic, 1)
    huge = rg.consumer_subscription([topic], user_data=b"\xab" * (5 * 1024 * 1024))
    outcome = {}
    with rg.Conn(gbroker.bootstrap) as a:
        a.wait_coordinator(group)
        try:
            j = a.join(group, protocols=(("range", huge),), session_timeout_ms=2000, rebalance_timeout_ms=2000)
            outcome["join"] = j["error"]
            if j["error"] == rg.NONE:
                outcome["sync"] = a.sync(group, j["generation"], j["member_id"],
                                         {j["member_id"]: rg.consumer_assignment({topic: [0]})})[0]
        except (ConnectionError, OSError) as e:
            outcome["connection"] = repr(e)
    print(f"oversized member metadata outcome: {outcome}")
    # As in Kafka: the group record cannot be stored (it exceeds the offsets topic's
    # max.message.bytes), so the leader's SyncGroup fails with UNKNOWN_SERVER_ERROR (-1) rather
    # than acknowledging an assignment that would not survive a restart.
    if outcome.get("join") == rg.NONE:
        assert outcome.get("sync") == -1, outcome
    assert gbroker.alive()
    assert gbroker.stop() == 0
    gbroker.restart()
    # The same group id (once the silent huge member's 2 s session has expired) and another group
    # both work afterwards for a normal member.
    for g in (group, gid("after-huge")):
        with rg.Conn(gbroker.bootstrap) as b:
            j = rg.stable_member(b, g, [topic], session_timeout_ms=5000)
            assert b.commit(g, {(topic, 0): (1, "ok")}, generation=j["generation"], member_id=j["member_id"]) \
                == {(topic, 0): 0}
            assert b.fetch_offsets(g, {topic: [0]})[1][(topic, 0)] == (1, "ok", 0)


def test_commit_unknown_topic_and_fetch_all(gbroker):
    group = gid("unknown-topic")
    topic = unique_topic("known")
    create_topic(gbroker.bootstrap, topic, 2)
    with rg.Conn(gbroker.bootstrap) as a:
        a.wait_coordinator(group)
        res = a.commit(group, {("no-such-topic-x", 0): (1, None), (topic, 5): (1, None), (topic, 1): (7, "seven")})
        assert res == {("no-such-topic-x", 0): 3, (topic, 5): 3, (topic, 1): 0}  # UNKNOWN_TOPIC_OR_PARTITION
        # OffsetFetch with a null topic list answers every committed partition of the group, only those.
        err, offsets = a.fetch_offsets(group, None)
        assert err == 0 and offsets == {(topic, 1): (7, "seven", 0)}, offsets


def test_static_member_replaced_and_old_instance_fenced(gbroker):
    group = gid("fence")
    topic = unique_topic("fence")
    create_topic(gbroker.bootstrap, topic, 2)
    with rg.Conn(gbroker.bootstrap) as a, rg.Conn(gbroker.bootstrap) as b:
        old = rg.stable_member(a, group, [topic], {topic: [0, 1]}, instance_id="inst-1")
        # The same instance comes back with no member id (a restarted process): it replaces the
        # old member in the current generation, without a rebalance.
        new = b.join(group, protocols=(("range", rg.consumer_subscription([topic])),), instance_id="inst-1")
        assert new["error"] == rg.NONE, new
        assert new["member_id"] != old["member_id"] and new["generation"] == old["generation"], (old, new)
        err, assignment = b.sync(group, new["generation"], new["member_id"], {}, instance_id="inst-1")
        assert err == rg.NONE and assignment == rg.consumer_assignment({topic: [0, 1]})
        assert b.heartbeat(group, new["generation"], new["member_id"], "inst-1") == rg.NONE
        # The old incarnation is fenced.
        assert a.heartbeat(group, old["generation"], old["member_id"], "inst-1") == 82  # FENCED_INSTANCE_ID
        res = a.commit(group, {(topic, 0): (1, None)}, generation=old["generation"], member_id=old["member_id"],
                       instance_id="inst-1")
        assert res == {(topic, 0): 82}


def test_member_that_misses_the_rebalance_is_removed(gbroker):
    """A member that does not rejoin within its rebalance timeout is dropped from the new
    generation even though its session has not expired."""
    group = gid("rbt")
    with rg.Conn(gbroker.bootstrap) as a, rg.Conn(gbroker.bootstrap) as b:
        old = rg.stable_member(a, group, ["t"], session_timeout_ms=30000, rebalance_timeout_ms=2000)
        t0 = time.monotonic()
        j = b.join(group, protocols=(("range", rg.consumer_subscription(["t"])),), session_timeout_ms=30000,
                   rebalance_timeout_ms=2000)
        took = time.monotonic() - t0
        assert j["error"] == rg.NONE and j["generation"] > old["generation"], j
        assert [m[0] for m in j["members"]] == [j["member_id"]] and j["leader"] == j["member_id"], j
        assert took >= 1.5, f"join completed after {took:.2f} s, before the old member's 2 s rebalance timeout"
        assert a.heartbeat(group, old["generation"], old["member_id"]) == rg.UNKNOWN_MEMBER_ID


def test_group_max_size(broker_factory):
    b = broker_factory(group_max_size=1, **GROUP_FLAGS)
    group = gid("max")
    with rg.Conn(b.bootstrap) as a, rg.Conn(b.bootstrap) as c:
        first = rg.stable_member(a, group, ["t"])
        res = c.join(group, protocols=(("range", rg.consumer_subscription(["t"])),))
        assert res["error"] == 81, res  # GROUP_MAX_SIZE_REACHED
        assert a.heartbeat(group, first["generation"], first["member_id"]) == rg.NONE
