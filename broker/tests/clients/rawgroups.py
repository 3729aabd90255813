"""Hand-built consumer-group requests (non-flexible versions, request header v1) on top of
rawkafka's framing, for input a well-behaved client never sends: FindCoordinator v1,
JoinGroup v5, SyncGroup v3, Heartbeat v3, LeaveGroup v3, OffsetCommit v7, OffsetFetch v5,
OffsetDelete v0. Each call returns the decoded response as plain tuples/dicts."""

from __future__ import annotations

import struct
import time

import rawkafka as raw

# Kafka error codes used by the group tests.
NONE = 0
OFFSET_METADATA_TOO_LARGE = 12
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
GROUP_SUBSCRIBED_TO_TOPIC = 86
MEMBER_ID_REQUIRED = 79


def _str(s: str | None) -> bytes:
    return raw._str(s)


def _bytes(b: bytes | None) -> bytes:
    return struct.pack(">i", -1) if b is None else struct.pack(">i", len(b)) + b


class Reader:
    def __init__(self, data: bytes):
        self.d = data
        self.o = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        v = struct.unpack(fmt, self.d[self.o : self.o + size])
        self.o += size
        return v if len(v) > 1 else v[0]

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.d[self.o : self.o + n].decode()
        self.o += n
        return s

    def bytes_(self) -> bytes | None:
        n = self.take(">i")
        if n < 0:
            return None
        b = self.d[self.o : self.o + n]
        self.o += n
        return b


def consumer_subscription(topics: list[str], user_data: bytes = b"") -> bytes:
    """ConsumerProtocolSubscription v0: the metadata a Kafka consumer puts in JoinGroup."""
    out = struct.pack(">hi", 0, len(topics)) + b"".join(_str(t) for t in topics)
    return out + _bytes(user_data)


def consumer_assignment(parts: dict[str, list[int]], user_data: bytes = b"") -> bytes:
    """ConsumerProtocolAssignment v0."""
    out = struct.pack(">hi", 0, len(parts))
    for t, ps in parts.items():
        out += _str(t) + struct.pack(">i", len(ps)) + b"".join(struct.pack(">i", p) for p in ps)
    return out + _bytes(user_data)


class Conn:
    """One connection to the (single) broker, which is every group's coordinator."""

    def __init__(self, bootstrap: str, timeout: float = 30.0):
        self.s = raw.connect(bootstrap, timeout)
        self.corr = 0

    def close(self) -> None:
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, api_key: int, version: int, body: bytes) -> Reader:
        self.corr += 1
        self.s.sendall(raw.request(api_key, version, self.corr, body))
        corr, resp = raw.recv_response(self.s)
        assert corr == self.corr, f"correlation id {corr}, expected {self.corr}"
        return Reader(resp)

    # FindCoordinator v1 -> (error, node_id, host, port)
    def find_coordinator(self, group: str) -> tuple[int, int, str, int]:
        r = self.call(10, 1, _str(group) + struct.pack(">b", 0))
        r.take(">i")
        err = r.take(">h")
        r.string()
        node = r.take(">i")
        host = r.string()
        port = r.take(">i")
        return err, node, host, port

    def wait_coordinator(self, group: str, timeout: float = 20.0) -> None:
        """The offsets topic is created on first use: retry while the coordinator is loading."""
        deadline = time.monotonic() + timeout
        while True:
            err = self.find_coordinator(group)[0]
            if err == NONE:
                return
            assert err in (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS), f"FindCoordinator error {err}"
            assert time.monotonic() < deadline, f"no coordinator for {group} within {timeout} s (last error {err})"
            time.sleep(0.1)

    # JoinGroup v5 -> dict
    def join_once(self, group: str, member_id: str = "", protocols=(("range", b""),), protocol_type: str = "consumer",
                  session_timeout_ms: int = 10000, rebalance_timeout_ms: int = 10000,
                  instance_id: str | None = None) -> dict:
        body = (_str(group) + struct.pack(">ii", session_timeout_ms, rebalance_timeout_ms) + _str(member_id)
                + _str(instance_id) + _str(protocol_type) + struct.pack(">i", len(protocols)))
        for name, meta in protocols:
            body += _str(name) + _bytes(meta)
        r = self.call(11, 5, body)
        r.take(">i")
        res = {"error": r.take(">h"), "generation": r.take(">i"), "protocol": r.string(), "leader": r.string(),
               "member_id": r.string(), "members": []}
        for _ in range(r.take(">i")):
            res["members"].append((r.string(), r.string(), r.bytes_()))
        return res

    def join(self, group: str, **kw) -> dict:
        """JoinGroup as a v4+ client does it: an empty member id gets MEMBER_ID_REQUIRED with an id,
        then the join is repeated with that id."""
        res = self.join_once(group, **kw)
        if res["error"] == MEMBER_ID_REQUIRED:
            kw["member_id"] = res["member_id"]
            res = self.join_once(group, **kw)
        return res

    # SyncGroup v3 -> (error, assignment)
    def sync(self, group: str, generation: int, member_id: str, assignments: dict[str, bytes] | None = None,
             instance_id: str | None = None) -> tuple[int, bytes | None]:
        assignments = assignments or {}
        body = _str(group) + struct.pack(">i", generation) + _str(member_id) + _str(instance_id)
        body += struct.pack(">i", len(assignments))
        for m, a in assignments.items():
            body += _str(m) + _bytes(a)
        r = self.call(14, 3, body)
        r.take(">i")
        return r.take(">h"), r.bytes_()

    # Heartbeat v3 -> error
    def heartbeat(self, group: str, generation: int, member_id: str, instance_id: str | None = None) -> int:
        r = self.call(12, 3, _str(group) + struct.pack(">i", generation) + _str(member_id) + _str(instance_id))
        r.take(">i")
        return r.take(">h")

    # LeaveGroup v3 -> (error, [(member, instance, error)])
    def leave(self, group: str, member_id: str) -> tuple[int, list]:
        r = self.call(13, 3, _str(group) + struct.pack(">i", 1) + _str(member_id) + _str(None))
        r.take(">i")
        err = r.take(">h")
        members = [(r.string(), r.string(), r.take(">h")) for _ in range(r.take(">i"))]
        return err, members

    # OffsetCommit v7 -> {(topic, partition): error}
    def commit(self, group: str, offsets: dict[tuple[str, int], tuple[int, str | None]], generation: int = -1,
               member_id: str = "", instance_id: str | None = None) -> dict[tuple[str, int], int]:
        by_topic: dict[str, list] = {}
        for (t, p), (off, meta) in offsets.items():
            by_topic.setdefault(t, []).append((p, off, meta))
        body = _str(group) + struct.pack(">i", generation) + _str(member_id) + _str(instance_id)
        body += struct.pack(">i", len(by_topic))
        for t, parts in by_topic.items():
            body += _str(t) + struct.pack(">i", len(parts))
            for p, off, meta in parts:
                body += struct.pack(">iqi", p, off, -1) + _str(meta)
        r = self.call(8, 7, body)
        r.take(">i")
        out = {}
        for _ in range(r.take(">i")):
            t = r.string()
            for _ in range(r.take(">i")):
                p, err = r.take(">ih")
                out[(t, p)] = err
        return out

    # OffsetFetch v5 -> (error, {(topic, partition): (offset, metadata, error)})
    def fetch_offsets(self, group: str, topics: dict[str, list[int]] | None) -> tuple[int, dict]:
        body = _str(group)
        if topics is None:
            body += struct.pack(">i", -1)
        else:
            body += struct.pack(">i", len(topics))
            for t, ps in topics.items():
                body += _str(t) + struct.pack(">i", len(ps)) + b"".join(struct.pack(">i", p) for p in ps)
        r = self.call(9, 5, body)
        r.take(">i")
        out = {}
        for _ in range(r.take(">i")):
            t = r.string()
            for _ in range(r.take(">i")):
                p, off, _epoch = r.take(">iqi")
                meta = r.string()
                out[(t, p)] = (off, meta, r.take(">h"))
        return r.take(">h"), out

    # OffsetDelete v0 -> (error, {(topic, partition): error})
    def offset_delete(self, group: str, parts: dict[str, list[int]]) -> tuple[int, dict]:
        body = _str(group) + struct.pack(">i", len(parts))
        for t, ps in parts.items():
            body += _str(t) + struct.pack(">i", len(ps)) + b"".join(struct.pack(">i", p) for p in ps)
        r = self.call(47, 0, body)
        err = r.take(">h")
        r.take(">i")
        out = {}
        for _ in range(r.take(">i")):
            t = r.string()
            for _ in range(r.take(">i")):
                p, e = r.take(">ih")
                out[(t, p)] = e
        return err, out


def stable_member(c: Conn, group: str, topics: list[str], assignment: dict[str, list[int]] | None = None,
                  **kw) -> dict:
    """Joins `group` alone as a consumer and completes SyncGroup as its leader; returns the
    join result (generation, member_id) once the member is in a Stable group."""
    c.wait_coordinator(group)
    j = c.join(group, protocols=(("range", consumer_subscription(topics)),), **kw)
    assert j["error"] == NONE, f"JoinGroup error {j['error']}"
    assert j["leader"] == j["member_id"]
    err, _ = c.sync(group, j["generation"], j["member_id"], {j["member_id"]: consumer_assignment(assignment or {})},
                    instance_id=kw.get("instance_id"))
    assert err == NONE, f"SyncGroup error {err}"
    return j
