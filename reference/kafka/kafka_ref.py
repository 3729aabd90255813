"""Apache Kafka as a reference: KRaft-mode nodes on loopback, from the jars that install.sh put
into ~/.cache/rivulet-kafka/<version>/libs. Standard library only, so that both the launcher
(`python3 reference/kafka/kafka_ref.py run cluster`) and the test suites can use it.

Port layout, next to `make run` (Rivulet brokers 127.0.0.1:9092-9094, admin 8092-8094,
coordinator 2181/8081) so both can run at once: Kafka brokers 127.0.0.1:19092-19094, KRaft
controllers 127.0.0.1:19192-19194. Each node is a combined broker+controller (process.roles =
broker,controller), racks zone-a/b/c as in `make run`.

Durability, the same on both sides: neither fsyncs per message or per interval by default.
Kafka's log.flush.interval.messages / log.flush.interval.ms are unset (Long.MAX_VALUE), Rivulet's
--log-flush-interval-messages / --log-flush-interval-ms default to i64::MAX; both fsync a segment
when it rolls and rely on replication plus the page cache for acknowledged writes (a process
crash loses nothing, a machine crash can lose the unflushed tail). `flush_messages=1` sets
log.flush.interval.messages=1 on Kafka (fsync before acknowledging), like
--log-flush-interval-messages 1 on Rivulet."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RACKS = ("zone-a", "zone-b", "zone-c")
BROKER_BASE_PORT = 19092
CONTROLLER_BASE_PORT = 19192
# kafka-run-class.sh's defaults (KAFKA_JVM_PERFORMANCE_OPTS); the heap is kafka-server-start.sh's
# 1 GiB unless the caller says otherwise.
JVM_OPTS = ["-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"]
DEFAULT_HEAP = ["-Xmx1g", "-Xms1g"]


def version() -> str:
    m = re.search(r"<kafka.version>(.*?)</kafka.version>", (HERE / "pom.xml").read_text())
    assert m, "no kafka.version in pom.xml"
    return m.group(1)


def cache_dir() -> Path:
    base = os.environ.get("RIVULET_KAFKA_CACHE") or str(Path.home() / ".cache" / "rivulet-kafka")
    return Path(base) / version()


def classpath(with_suite: bool = False) -> str:
    libs = cache_dir() / "libs"
    if not (libs / ".stamp").exists():
        raise FileNotFoundError(f"Apache Kafka is not installed in {libs}: run reference/kafka/install.sh "
                                "(make deps-kafka-reference)")
    parts = [str(libs / "*")]
    if with_suite:
        parts.insert(0, str(cache_dir() / "classes"))
    return os.pathsep.join(parts)


# Short-lived tools: the C1 compiler only and the serial collector start a JVM in about half the
# CPU time on a busy 2-core machine; the suites launch dozens of them.
FAST_START_OPTS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]


def java_argv(main: str, args: list[str], heap: list[str] | None = None, log4j: Path | None = None,
              with_suite: bool = False, fast_start: bool = False) -> list[str]:
    """`java ... main args` with the Kafka jars on the classpath, as kafka-run-class.sh would."""
    log4j = log4j or HERE / "log4j2-tools.properties"
    opts = FAST_START_OPTS if fast_start else JVM_OPTS
    return ["java", *(heap or ["-Xmx256m"]), *opts, f"-Dlog4j2.configurationFile={log4j}",
            "-cp", classpath(with_suite), main, *args]


def node_properties(node_id: int, host: str, port: int, controller_port: int, voters: str, log_dir: Path,
                    nodes: int, rack: str | None = None, flush_messages: int | None = None,
                    extra: dict[str, str] | None = None) -> dict[str, str]:
    """server.properties of one combined KRaft node. With 3 nodes the topic defaults match
    `make run` (RF 3, min.insync.replicas 2); with one, RF 1."""
    rf = min(3, nodes)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "default.replication.factor": str(rf),
        "min.insync.replicas": str(min(2, rf)),
        "offsets.topic.replication.factor": str(rf),
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(min(2, rf)),
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": str(min(2, rf)),
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    }
    if rack:
        props["broker.rack"] = rack
    if flush_messages is not None:
        props["log.flush.interval.messages"] = str(flush_messages)
    props.update(extra or {})
    return props


def write_properties(path: Path, props: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))


def format_storage(config: Path, cluster_id: str, log: Path) -> None:
    """kafka-storage.sh format: writes meta.properties and the bootstrap checkpoint."""
    argv = java_argv("kafka.tools.StorageTool", ["format", "-t", cluster_id, "-c", str(config), "--ignore-formatted"])
    with open(log, "ab") as f:
        subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True, timeout=120)


def new_cluster_id() -> str:
    # Kafka's Uuid.randomUuid().toString(): URL-safe base64 of 16 bytes, no padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class NodeSpec:
    """One node's files and ports; `argv()` starts it in the foreground."""

    def __init__(self, workdir: Path, node_id: int, host: str, port: int, controller_port: int,
                 heap: list[str] | None = None):
        self.workdir = Path(workdir)
        self.node_id = node_id
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.heap = heap or DEFAULT_HEAP
        self.config = self.workdir / "server.properties"
        self.data_dir = self.workdir / "data"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def prepare(self, props: dict[str, str], cluster_id: str, log: Path) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_properties(self.config, props)
        format_storage(self.config, cluster_id, log)

    def argv(self) -> list[str]:
        return java_argv("kafka.Kafka", [str(self.config)], heap=self.heap, log4j=HERE / "log4j2-server.properties")


def plan(workdir: Path, nodes: int, hosts: list[str] | None = None, ports: list[int] | None = None,
         controller_ports: list[int] | None = None, heap: list[str] | None = None,
         flush_messages: int | None = None, extra: dict[str, str] | None = None) -> list[tuple[NodeSpec, dict]]:
    hosts = hosts or ["127.0.0.1"] * nodes
    ports = ports or [BROKER_BASE_PORT + i for i in range(nodes)]
    controller_ports = controller_ports or [CONTROLLER_BASE_PORT + i for i in range(nodes)]
    voters = ",".join(f"{i}@{hosts[i]}:{controller_ports[i]}" for i in range(nodes))
    out = []
    for i in range(nodes):
        spec = NodeSpec(Path(workdir) / f"kafka-{i}", i, hosts[i], ports[i], controller_ports[i], heap)
        props = node_properties(i, hosts[i], ports[i], controller_ports[i], voters, spec.data_dir, nodes,
                                RACKS[i % len(RACKS)], flush_messages, extra)
        out.append((spec, props))
    return out


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def run(args) -> int:
    """The launcher: prepares and starts the nodes, waits for their listeners, then runs until
    Ctrl-C (SIGTERM to every node: Kafka's controlled shutdown)."""
    nodes = 1 if args.mode == "single" else 3
    workdir = Path(args.data).resolve()
    specs = plan(workdir, nodes, heap=args.heap.split() if args.heap else None, flush_messages=args.flush_messages)
    for spec, _ in specs:
        for p in (spec.port, spec.controller_port):
            if port_open(spec.host, p):
                print(f"kafka-ref: port {p} on {spec.host} is already in use; stop what holds it", file=sys.stderr)
                return 1
    cluster_id_file = workdir / "cluster-id"
    workdir.mkdir(parents=True, exist_ok=True)
    if not cluster_id_file.exists():
        cluster_id_file.write_text(new_cluster_id())
    cluster_id = cluster_id_file.read_text().strip()
    procs = []
    for spec, props in specs:
        log = workdir / f"kafka-{spec.node_id}.log"
        spec.prepare(props, cluster_id, log)
        f = open(log, "ab")
        procs.append(subprocess.Popen(spec.argv(), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def stop(*_):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        print("kafka-ref: stopped")
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    deadline = time.monotonic() + 120
    for (spec, _), p in zip(specs, procs):
        while not port_open(spec.host, spec.port):
            if p.poll() is not None or time.monotonic() > deadline:
                print(f"kafka-ref: node {spec.node_id} did not start; see {workdir}/kafka-{spec.node_id}.log",
                      file=sys.stderr)
                stop()
            time.sleep(0.2)
    bootstrap = ",".join(s.bootstrap for s, _ in specs)
    print(f"Apache Kafka {version()} ({args.mode}, KRaft, combined broker+controller nodes) on loopback\n"
          f"  bootstrap    {bootstrap}\n"
          f"  controllers  {specs[0][1]['controller.quorum.voters']}\n"
          f"  data, logs   {workdir}\n"
          f"  durability   log.flush.interval.messages={specs[0][1].get('log.flush.interval.messages', 'unset (never)')}"
          f", log.flush.interval.ms unset (never): page cache + replication, as Rivulet's default\n"
          f"  stop         Ctrl-C", flush=True)
    while True:
        for (spec, _), p in zip(specs, procs):
            if p.poll() is not None:
                print(f"kafka-ref: node {spec.node_id} exited with {p.returncode}; see "
                      f"{workdir}/kafka-{spec.node_id}.log", file=sys.stderr)
                stop()
        time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run Apache Kafka on loopback until Ctrl-C")
    r.add_argument("mode", choices=["single", "cluster"])
    r.add_argument("--data", default=str(REPO / "data-kafka"), help="data and log directory")
    r.add_argument("--heap", default=None, help='JVM heap flags (default "-Xmx1g -Xms1g", as kafka-server-start.sh)')
    r.add_argument("--flush-messages", type=int, default=None,
                   help="log.flush.interval.messages (default unset: never, as Kafka and Rivulet)")
    sub.add_parser("classpath", help="print the classpath of the cached jars")
    sub.add_parser("version", help="print the pinned Kafka version")
    tool = sub.add_parser("tool", help="run a Kafka main class with the cached jars (e.g. org.apache.kafka.tools.TopicCommand)")
    tool.add_argument("main")
    tool.add_argument("args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.cmd == "run":
        return run(args)
    if args.cmd == "classpath":
        print(classpath())
    elif args.cmd == "version":
        print(version())
    elif args.cmd == "tool":
        os.execvp("java", java_argv(args.main, args.args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
