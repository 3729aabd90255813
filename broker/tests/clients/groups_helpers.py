"""confluent-kafka group members for the consumer-group suites: subscribed consumers that record
their assignments and messages, a polling loop over several of them, and a member in a child
process (so that it can be killed without a LeaveGroup)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition

# Flags for brokers in group tests: a short first-rebalance delay and short sessions allowed.
GROUP_FLAGS = {"group_initial_rebalance_delay_ms": 200, "group_min_session_timeout_ms": 1000}
# Client settings to match: failures are noticed within seconds, not the 45 s default.
FAST = {"session.timeout.ms": 3000, "heartbeat.interval.ms": 300, "topic.metadata.refresh.interval.ms": 2000}

CHILD = Path(__file__).with_name("group_member_child.py")


def gid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Member:
    """One subscribed confluent-kafka consumer. `events` logs ("assign"/"revoke"/"lost", parts)."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], name: str, **conf):
        self.name = name
        self.events: list[tuple[str, list[int]]] = []
        self.msgs: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.stats: dict = {}
        base = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **FAST,
        }
        base.update(conf)
        if "statistics.interval.ms" in base:
            base["stats_cb"] = self._on_stats
        self.c = Consumer(base)
        self.c.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self.closed = False

    def _on_stats(self, s: str) -> None:
        self.stats = json.loads(s)

    def _on_assign(self, c, parts):
        self.events.append(("assign", sorted(p.partition for p in parts)))

    def _on_revoke(self, c, parts):
        self.events.append(("revoke", sorted(p.partition for p in parts)))

    def _on_lost(self, c, parts):
        self.events.append(("lost", sorted(p.partition for p in parts)))

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.c.assignment()}

    def poll(self, timeout: float = 0.05) -> None:
        for m in self.c.consume(num_messages=500, timeout=timeout):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"{self.name}: consume error {m.error()}")
            self.msgs.append((m.partition(), m.offset(), m.value()))

    def commit(self) -> None:
        """Synchronously commits the positions of what was consumed (nothing if nothing new)."""
        try:
            self.c.commit(asynchronous=False)
        except Exception as e:  # noqa: BLE001 - librdkafka raises KafkaException(_NO_OFFSET) when idle
            if "NO_OFFSET" not in str(e):
                raise

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.c.close()


class ChildMember:
    """A group member in a child process (group_member_child.py) that reports assignments and
    messages as JSON lines; kill() sends SIGKILL, so it never sends LeaveGroup."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, conf: dict | None = None):
        self.name = name
        self.msgs: list[tuple[int, int, bytes]] = []
        self.assigned: set[int] = set()
        self.lines: queue.Queue = queue.Queue()
        env = {**os.environ, "BOOTSTRAP": bootstrap, "GROUP": group, "TOPIC": topic, "NAME": name,
               "CONF": json.dumps({**FAST, **(conf or {})})}
        self.proc = subprocess.Popen([sys.executable, str(CHILD)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def poll(self, timeout: float = 0.0) -> None:
        while True:
            try:
                ev = self.lines.get(timeout=timeout) if timeout else self.lines.get_nowait()
            except queue.Empty:
                return
            timeout = 0
            if ev["ev"] == "assign":
                self.assigned = set(ev["parts"])
            elif ev["ev"] == "msg":
                self.msgs.append((ev["p"], ev["o"], ev["v"].encode()))
            elif ev["ev"] == "error":
                raise AssertionError(f"{self.name}: {ev['error']}")

    def assignment(self) -> set[int]:
        return set(self.assigned)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.stderr:
            self.proc.stderr.close()


def pump(members, until, timeout: float, what: str, interval: float = 0.05):
    """Polls every live member until until() is truthy (returned) or timeout (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        for m in members:
            if not getattr(m, "closed", False):
                m.poll(interval)
        res = until()
        if res:
            return res
        if time.monotonic() > deadline:
            state = {m.name: sorted(m.assignment()) for m in members if not getattr(m, "closed", False)}
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; assignments {state}")


def partition_of_each(members, n: int) -> bool:
    """True when the members' assignments partition range(n): each partition owned exactly once."""
    owned = [p for m in members for p in m.assignment()]
    return sorted(owned) == list(range(n))


def values(msgs) -> list[bytes]:
    return [v for _, _, v in msgs]


def committed(a, group: str, topic: str, n: int) -> dict[int, int]:
    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(n)])])
    return {tp.partition: tp.offset for tp in res[group].result(timeout=15).topic_partitions}
