"""Apache Kafka (kafka_ref) behind the cluster fault suite's interfaces: KafkaNode is a harness
Node (kill -9, SIGTERM, restart, log tail) and KafkaCluster a cluster.Cluster, so that the same
checker and the same questions (leader, ISR, controller) run against both."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kafka_ref
from cluster import Cluster
from harness import REPLICA_LAG_MS, SESSION_TIMEOUT_MS, Node, free_port, loopback_hosts, wait_until

# 512 MiB per node: three nodes run beside Rivulet and other suites on a shared machine.
TEST_HEAP = ["-Xmx512m", "-Xms512m"]


class KafkaNode(Node):
    def __init__(self, spec: kafka_ref.NodeSpec, props: dict[str, str], cluster_id: str):
        self.name = f"kafka-{spec.node_id}"
        super().__init__(spec.workdir, spec.host)
        self.spec = spec
        self.broker_id = spec.node_id
        self.rack = props.get("broker.rack")
        self.port = spec.port
        self.data_dir = spec.data_dir
        spec.prepare(props, cluster_id, self.log_path)

    @property
    def bootstrap(self) -> str:
        return self.spec.bootstrap

    def argv(self) -> list[str]:
        return self.spec.argv()

    def ready(self) -> bool:
        return kafka_ref.port_open(self.spec.host, self.spec.port)

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"


class KafkaCluster(Cluster):
    """Three combined broker+controller KRaft nodes on distinct 127.0.0.x addresses with free
    ports; failure detection tuned like the Rivulet harness (session 4 s, replica lag 2 s)."""

    def __init__(self, workdir: Path, nodes: int = 3, flush_messages: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        hosts = loopback_hosts(nodes)
        extra = {
            "broker.session.timeout.ms": str(SESSION_TIMEOUT_MS),
            "broker.heartbeat.interval.ms": "500",
            "replica.lag.time.max.ms": str(REPLICA_LAG_MS),
            "leader.imbalance.check.interval.seconds": "2",
            "controlled.shutdown.enable": "true",
        }
        specs = kafka_ref.plan(self.workdir, nodes, hosts=hosts, ports=[free_port(h) for h in hosts],
                               controller_ports=[free_port(h) for h in hosts], heap=TEST_HEAP,
                               flush_messages=flush_messages, extra=extra)
        cluster_id = kafka_ref.new_cluster_id()
        self.brokers = [KafkaNode(spec, props, cluster_id) for spec, props in specs]
        self._admin = None

    def start(self, timeout: float = 120.0) -> "KafkaCluster":
        for b in self.brokers:
            b.spawn()
        for b in self.brokers:
            b.wait_ready(timeout)
        wait_until(lambda: self.controller_id() >= 0 and len(self.live_broker_ids()) == len(self.brokers),
                   timeout, what="all Kafka nodes registered and unfenced")
        return self

    def stop(self) -> None:
        self._admin = None
        for b in self.brokers:
            b.cleanup()

    def nodes(self):
        return list(self.brokers)


def run_tool(main: str, args: list[str], timeout: float = 120.0, input: str | None = None) -> subprocess.CompletedProcess:
    """A Kafka command-line tool through its main class, as bin/kafka-*.sh would run it."""
    return subprocess.run(kafka_ref.java_argv(main, args, fast_start=True), capture_output=True, text=True, timeout=timeout,
                          input=input)
