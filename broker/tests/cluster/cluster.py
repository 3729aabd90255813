"""The Cluster: a coordinator and three brokers, plus the questions the tests ask it (leader, ISR,
controller, racks) through confluent-kafka's AdminClient — the answers a real client sees."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import RACKS, BrokerNode, Coordinator, ZooKeeper, loopback_hosts, wait_until


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Cluster:
    def __init__(self, workdir: Path, coordinator: str = "rivulet", brokers: int = 3, hosts: list[str] | None = None,
                 coordinator_host: str = "127.0.0.1", netns: dict[str, str] | None = None,
                 fixed_ports: bool = False, chroot: str = "", **broker_flags):
        """hosts: one address per broker (default: distinct 127.0.0.x). netns: node name ->
        network namespace ("coordinator", "broker-0", ...) for the partition suite. chroot: a
        path appended to the brokers' --coordinator ("/rivulet"), as Kafka's zookeeper.connect."""
        self.workdir = Path(workdir)
        netns = netns or {}
        cls = Coordinator if coordinator == "rivulet" else ZooKeeper
        self.coord = cls(self.workdir / "coordinator", coordinator_host, netns.get("coordinator"),
                         port=2181 if fixed_ports else None)
        hosts = hosts or loopback_hosts(brokers)
        self.brokers = [
            BrokerNode(self.workdir / f"broker-{i}", i, RACKS[i % len(RACKS)], hosts[i], self.coord.connect + chroot,
                       netns.get(f"broker-{i}"), port=9092 if fixed_ports else None,
                       admin_port=8092 if fixed_ports else None, **broker_flags)
            for i in range(brokers)
        ]
        self._admin: AdminClient | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> "Cluster":
        self.coord.start(60.0)
        # Brokers start in parallel (each waits for its own registration), then the whole
        # cluster must agree: all brokers registered and a controller elected.
        for b in self.brokers:
            b.spawn()
        for b in self.brokers:
            b.wait_ready(timeout)
        wait_until(lambda: self.controller_id() >= 0 and len(self.live_broker_ids()) == len(self.brokers),
                   timeout, what="all brokers registered and a controller elected")
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin = None
        for b in self.brokers:
            b.cleanup()
        self.coord.cleanup()

    def broker(self, broker_id: int) -> BrokerNode:
        return next(b for b in self.brokers if b.broker_id == broker_id)

    def live(self) -> list[BrokerNode]:
        return [b for b in self.brokers if b.alive()]

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def nodes(self):
        return [self.coord, *self.brokers]

    # --- questions, through a real client ---------------------------------------------------

    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 3000,
                                       "topic.metadata.refresh.interval.ms": 500,
                                       "reconnect.backoff.max.ms": 500})
        return self._admin

    def describe_cluster(self):
        return self.admin().describe_cluster(request_timeout=5).result(10)

    def controller_id(self) -> int:
        c = self.describe_cluster().controller
        return -1 if c is None else c.id

    def live_broker_ids(self) -> list[int]:
        return sorted(n.id for n in self.describe_cluster().nodes)

    def racks(self) -> dict[int, str | None]:
        return {n.id: n.rack for n in self.describe_cluster().nodes}

    def create_topic(self, topic: str, partitions: int = 3, rf: int = 3, min_insync: int = 2,
                     timeout: float = 30.0, **config) -> None:
        cfg = {"min.insync.replicas": str(min_insync), **{k.replace("_", "."): str(v) for k, v in config.items()}}
        fut = self.admin().create_topics([NewTopic(topic, partitions, rf, config=cfg)], request_timeout=timeout)
        fut[topic].result(timeout + 5)
        wait_until(lambda: all(p.leader >= 0 and len(p.isrs) == rf for p in self.partitions(topic).values())
                   and len(self.partitions(topic)) == partitions,
                   timeout, what=f"{topic}: every partition has a leader and a full ISR")

    def partitions(self, topic: str) -> dict:
        """partition id -> PartitionMetadata (leader, replicas, isrs, error), from a fresh Metadata."""
        md = self.admin().list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return {}
        return dict(t.partitions)

    def leader(self, topic: str, partition: int) -> int:
        return self.partitions(topic)[partition].leader

    def isr(self, topic: str, partition: int) -> list[int]:
        return sorted(self.partitions(topic)[partition].isrs)

    def wait_leader(self, topic: str, partition: int, not_in=(), timeout: float = 30.0) -> int:
        """Waits for a live leader not in `not_in` (e.g. the broker just killed); returns its id."""
        return self._wait_leader(topic, partition, set(not_in), {b.broker_id for b in self.live()}, timeout)

    def _wait_leader(self, topic, partition, not_in, live, timeout) -> int:
        found = {}

        def ok():
            p = self.partitions(topic).get(partition)
            if p is not None and p.leader in live and p.leader not in not_in:
                found["id"] = p.leader
                return True
            return False

        wait_until(ok, timeout, what=f"{topic}-{partition}: a live leader outside {sorted(not_in)}")
        return found["id"]

    def wait_isr(self, topic: str, partition: int, want, timeout: float = 30.0, what: str | None = None) -> list[int]:
        """Waits until want(isr) is true; returns the ISR."""
        found = {}

        def ok():
            isr = self.isr(topic, partition)
            found["isr"] = isr
            return want(isr)

        wait_until(ok, timeout, what=what or f"{topic}-{partition}: ISR condition")
        return found["isr"]

    def wait_full_isr(self, topic: str, timeout: float = 60.0) -> None:
        n = len(self.brokers)
        wait_until(lambda: (ps := self.partitions(topic)) and all(len(p.isrs) == n and p.leader >= 0 for p in ps.values()),
                   timeout, interval=0.2, what=f"{topic}: every partition with a leader and all {n} replicas in its ISR")

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "watermarks", "enable.auto.commit": False})
        try:
            return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
        finally:
            c.close()

    def describe(self) -> str:
        """A one-line picture of the cluster for failure messages."""
        alive = [b.broker_id for b in self.live()]
        try:
            ctl = self.controller_id()
        except Exception as e:  # reporting only
            ctl = f"? ({e})"
        return f"alive brokers {alive}, controller {ctl}, at {time.strftime('%H:%M:%S')}"
