"""Apache Kafka 3.9.2 (ZooKeeper mode, pinned in ../pom-3.9.xml) with zookeeper.connect at
rivulet-coordinator, and the same run against Apache ZooKeeper 3.8: three brokers register, one
is elected controller, a topic is created with RF=3, an idempotent acks=all producer writes, the
controller broker is stopped and a new one elected, more is written, the stopped broker restarts
and rejoins every ISR, and a consumer group reads everything back."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Coordinator, ZooKeeper, free_port, loopback_hosts, wait_until

HERE = Path(__file__).resolve().parent
VERSION = "3.9.2"


def libs() -> Path:
    base = os.environ.get("RIVULET_KAFKA_CACHE") or str(Path.home() / ".cache" / "rivulet-kafka")
    d = Path(base) / VERSION / "libs"
    if not (d / ".stamp").exists():
        raise FileNotFoundError(f"Kafka {VERSION} is not installed in {d}: run reference/kafka/install.sh")
    return d


class ZkModeBroker:
    def __init__(self, workdir: Path, broker_id: int, host: str, zk_connect: str):
        self.workdir = workdir
        self.broker_id = broker_id
        self.name = f"kafka39-{broker_id}"
        self.host, self.port = host, free_port(host)
        self.log_path = workdir / f"{self.name}.log"
        self.config = workdir / f"{self.name}.properties"
        self.config.write_text(
            f"broker.id={broker_id}\nlisteners=PLAINTEXT://{host}:{self.port}\nlog.dirs={workdir / self.name}\n"
            f"zookeeper.connect={zk_connect}/kafka39\nzookeeper.session.timeout.ms=6000\n"
            "offsets.topic.replication.factor=3\noffsets.topic.num.partitions=3\n"
            "default.replication.factor=3\nmin.insync.replicas=2\n"
            f"group.initial.rebalance.delay.ms=0\nbroker.rack=zone-{broker_id}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["java", "-Xmx384m", "-XX:+UseG1GC", f"-Dlog4j.configuration=file:{HERE.parent / 'log4j-zk-mode.properties'}",
             "-cp", f"{libs()}/*", "kafka.Kafka", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return None if self.proc is None else self.proc.returncode

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def scenario(workdir: Path, coord_cls) -> list[str]:
    notes: list[str] = []
    coord = coord_cls(workdir / "coordinator").start(60)
    hosts = loopback_hosts(3)
    brokers = [ZkModeBroker(workdir, i, hosts[i], coord.connect) for i in range(3)]
    t0 = time.monotonic()
    try:
        for b in brokers:
            b.start()
        bs = ",".join(f"{b.host}:{b.port}" for b in brokers)
        adm = AdminClient({"bootstrap.servers": bs})

        def registered():
            d = adm.describe_cluster(request_timeout=5).result(10)
            return len(d.nodes) == 3 and d.controller is not None and (d.controller.id,)

        (ctl,) = wait_until(registered, 120, what="three brokers registered and a controller elected")
        notes.append(f"3 brokers registered, controller {ctl}, {time.monotonic() - t0:.1f} s")
        adm.create_topics([NewTopic("zkmode", 3, 3)])["zkmode"].result(30)

        def full_isr():
            ps = adm.list_topics("zkmode", timeout=5).topics["zkmode"].partitions.values()
            return len(ps) == 3 and all(p.leader >= 0 and len(p.isrs) == 3 for p in ps)

        wait_until(full_isr, 60, what="zkmode: a leader and a full ISR everywhere")
        errors: list[str] = []
        acked: list[int] = []

        def on_delivery(err, msg):
            (errors.append(str(err)) if err else acked.append(1))

        def produce(first: int, last: int) -> None:
            before = len(acked)
            for n in range(first, last):
                p.produce("zkmode", value=f"m{n}".encode(), partition=n % 3, on_delivery=on_delivery)
            p.flush(60)
            done = len(acked) - before
            assert done == last - first, (f"{last - first - done} of {last - first} idempotent acks=all writes "
                                          f"unacknowledged; errors {errors[-3:]}")

        p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True,
                      "message.timeout.ms": 45000, "error_cb": lambda e: errors.append(str(e))})
        produce(0, 3000)
        notes.append("3000 idempotent acks=all writes acknowledged")
        victim = brokers[ctl]
        victim.stop()

        def new_controller():
            c = adm.describe_cluster(request_timeout=5).result(10).controller
            return c is not None and c.id != ctl and (c.id,)

        (ctl2,) = wait_until(new_controller, 60, what=f"a controller other than the stopped broker {ctl}")
        notes.append(f"controller {ctl} stopped, {ctl2} elected")
        produce(3000, 4500)
        victim.start()
        wait_until(full_isr, 120, what=f"broker {ctl} back in every ISR")
        notes.append(f"broker {ctl} restarted and back in every ISR")
        c = Consumer({"bootstrap.servers": bs, "group.id": "zkmode-g", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe(["zkmode"])
        got: list[bytes] = []
        deadline = time.monotonic() + 120
        while len(got) < 4500 and time.monotonic() < deadline:
            got += [m.value() for m in c.consume(500, 1.0) if not m.error()]
        if got:
            c.commit(asynchronous=False)
        c.close()
        assert sorted(got) == sorted(f"m{n}".encode() for n in range(4500)), f"read back {len(got)} of 4500"
        notes.append(f"4500 read back by a consumer group, {time.monotonic() - t0:.1f} s in all")
        return notes
    except BaseException as e:
        tails = "\n".join(f"--- {b.name}\n{b.log_tail()}" for b in brokers)
        raise AssertionError(f"{e}\nsteps done: {notes}\n{tails}") from e
    finally:
        for b in brokers:
            b.stop()
        coord.cleanup()


def test_kafka39_on_apache_zookeeper(tmp_path):
    print(scenario(tmp_path, ZooKeeper))


# Known coordinator defect: rivulet-coordinator stores a node created with null data as empty data
# and returns b'' where Apache ZooKeeper returns null. Kafka 3.9 creates /latest_producer_id_block
# with null data, takes the empty data for a producer-id block, fails to parse it, and answers
# every AllocateProducerIds with UNKNOWN_SERVER_ERROR: idempotent producers never get a producer
# id. This test reports exactly that failure as xfail; any other failure fails it, and once the
# coordinator keeps null data it passes.
def test_kafka39_on_rivulet_coordinator(tmp_path):
    try:
        notes = scenario(tmp_path, Coordinator)
    except AssertionError as e:
        text = str(e)
        if "unacknowledged" in text and "RPCProducerIdManager" in text and "UNKNOWN_SERVER_ERROR" in text:
            pytest.xfail("rivulet-coordinator returns b'' for znodes created with null data: Kafka 3.9's "
                         "AllocateProducerIds fails (steps done before: " + text.split("steps done: ")[1].split("\n")[0] + ")")
        raise
    print(notes)
