#!/usr/bin/env python3
"""Cluster benchmark: a local 3-broker cluster (racks zone-a/b/c, one rivulet-coordinator), the
same processes as the fault suite (broker/tests/cluster/harness.py). Prints, asserts nothing:

- produce throughput (rivulet-loadgen, librdkafka, 1 KiB messages, 3 partitions) with RF=3
  acks=all (min.insync.replicas=2) versus RF=1 acks=1;
- end-to-end latency p50/p99 (rivulet-loadgen latency: produce at a fixed rate, consumer reads at
  the high watermark) for the same two settings;
- produce-acknowledgement latency p50/p99 at a fixed rate (confluent-kafka delivery callbacks);
- acks=all end-to-end latency p50/p99 on an RF=3 partition at several rates (--acks-all-rates,
  default 2000, 5000 and 20000 msg/s): a producer's pipelined writes must be committed together,
  not one replication round per request (issue 10);
- synchronous offset-commit latency p50/p99 (confluent-kafka `commit(asynchronous=False)`, one
  consumer, RF=3 __consumer_offsets): the group coordinator's appends must wake the followers'
  parked fetches rather than wait for replica.fetch.wait.max.ms (issue 10);
- failover time: the leader of a partition is killed (SIGKILL) with nothing in flight, then a
  producer sends every 5 ms; the figure is kill -> first acknowledged produce (necessarily by the
  new leader). Median of several runs. It is dominated by the coordinator session timeout the
  brokers run with (printed), as in Kafka's ZooKeeper mode.

Usage: bench_cluster.py --bin-dir target/release [--mib 200] [--failovers 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "cluster"))


def loadgen(binary: Path, bootstrap: str, *args: str, timeout: float = 600) -> dict:
    r = subprocess.run([str(binary), "-b", bootstrap, *args], capture_output=True, timeout=timeout)
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-2000:])
        raise RuntimeError(f"rivulet-loadgen {' '.join(args)} failed ({r.returncode})")
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def create_topic(cluster, topic: str, partitions: int, rf: int, min_insync: int) -> None:
    """Creates a topic and waits until its leaders serve it: the metadata can name a leader a
    moment before that broker has opened the partition, and a watermark query there (the
    loadgen's first step, which librdkafka does not retry) would fail."""
    from confluent_kafka import Consumer, TopicPartition
    from harness import wait_until

    cluster.create_topic(topic, partitions=partitions, rf=rf, min_insync=min_insync)
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "bench-watermarks"})
    try:
        for p in range(partitions):
            wait_until(lambda: c.get_watermark_offsets(TopicPartition(topic, p), timeout=5) is not None, 30,
                       what=f"{topic}-{p} served by its leader")
    finally:
        c.close()


def ack_latency(bootstrap: str, topic: str, acks: str, rate: int, secs: float) -> dict:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 0,
                  "enable.idempotence": acks == "all"})
    lats: list[float] = []
    errors = 0

    def cb(sent):
        def done(err, _msg):
            nonlocal errors
            if err is None:
                lats.append(time.monotonic() - sent)
            else:
                errors += 1
        return done

    # Warm-up: a fresh idempotent producer's first ack takes ~0.5 s (InitProducerId), standalone too.
    p.produce(topic, b"warm-up", partition=0)
    p.flush(30)
    interval = 1.0 / rate
    end = time.monotonic() + secs
    nxt = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now < nxt:
            p.poll(nxt - now)
            continue
        nxt += interval
        p.produce(topic, b"x" * 100, partition=0, on_delivery=cb(time.monotonic()))
        p.poll(0)
    p.flush(30)
    lats.sort()
    q = lambda f: lats[min(len(lats) - 1, int(f * len(lats)))] * 1000 if lats else float("nan")  # noqa: E731
    return {"samples": len(lats), "errors": errors, "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)}


def sync_commit_latency(bootstrap: str, topic: str, commits: int) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-commit-{time.time_ns()}",
                  "enable.auto.commit": False})
    lats: list[float] = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        # Warm-up: the first commit finds the coordinator (and may create __consumer_offsets).
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        for i in range(1, commits + 1):
            t0 = time.monotonic()
            c.commit(offsets=[TopicPartition(topic, 0, i)], asynchronous=False)
            lats.append(time.monotonic() - t0)
    finally:
        c.close()
    lats.sort()
    q = lambda f: lats[min(len(lats) - 1, int(f * len(lats)))] * 1000  # noqa: E731
    return {"samples": len(lats), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)}


def failover_once(cluster, topic: str) -> float:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 0, "message.timeout.ms": 60000, "request.timeout.ms": 3000,
                  "retry.backoff.ms": 20, "retry.backoff.max.ms": 100, "reconnect.backoff.max.ms": 100,
                  "topic.metadata.refresh.interval.ms": 500, "socket.timeout.ms": 3000})
    for _ in range(20):
        p.produce(topic, b"warm", partition=0)
    assert p.flush(30) == 0, "warm-up produce did not complete"
    victim = cluster.leader(topic, 0)
    first: list[float] = []

    def done(err, _msg):
        if err is None and not first:
            first.append(time.monotonic())

    cluster.broker(victim).kill9()
    t0 = time.monotonic()
    while not first and time.monotonic() - t0 < 60:
        p.produce(topic, b"after-kill", partition=0, on_delivery=done)
        p.poll(0.005)
    p.flush(30)
    took = first[0] - t0 if first else float("nan")
    new = cluster.leader(topic, 0)
    cluster.broker(victim).restart()
    cluster.wait_full_isr(topic, timeout=60)
    print(f"  failover: leader {victim} killed -> first ack (new leader {new}) after {took * 1000:.0f} ms",
          file=sys.stderr)
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--mib", type=int, default=int(os.environ.get("BENCH_CLUSTER_MIB", "200")),
                    help="payload MiB per throughput run (1 KiB messages)")
    ap.add_argument("--rate", type=int, default=2000, help="messages/s for the latency runs")
    ap.add_argument("--latency-secs", type=int, default=10)
    ap.add_argument("--acks-all-rates", default="2000,5000,20000",
                    help="messages/s for the RF=3 acks=all end-to-end latency runs (comma-separated)")
    ap.add_argument("--commits", type=int, default=200, help="synchronous offset commits timed")
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    os.environ["RIVULET_BIN_DIR"] = str(Path(a.bin_dir).resolve())
    lg = Path(a.bin_dir) / "rivulet-loadgen"
    for b in ("rivulet-broker", "rivulet-coordinator", "rivulet-loadgen"):
        if not os.access(Path(a.bin_dir) / b, os.X_OK):
            print(f"{Path(a.bin_dir) / b} is missing; build the release binaries first", file=sys.stderr)
            return 2

    from cluster import Cluster
    from harness import SESSION_TIMEOUT_MS, ClusterModeMissing

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    c = Cluster(work, **{"log-level": "warn"})
    try:
        c.start()
    except ClusterModeMissing as e:
        print(f"bench-cluster: skipped, rivulet-broker has no cluster mode in this build ({e})")
        c.stop()
        return 0
    results: dict = {"throughput": [], "e2e_latency": [], "ack_latency": [], "acks_all_latency": [],
                     "sync_commit": None, "failover_ms": []}
    failures: list[str] = []
    try:
        count = a.mib * 2**20 // 1024
        for rf, acks, mis in ((3, "-1", 2), (1, "1", 1)):
            name = f"rf{rf}-acks{acks.replace('-', 'm')}"
            try:
                create_topic(c, f"tp-{name}", 3, rf, mis)
                r = loadgen(lg, c.bootstrap, "produce", "--topic", f"tp-{name}", "--messages", str(count),
                            "--size", "1024", "--partitions", "3", "--acks", acks)
                results["throughput"].append({"rf": rf, "acks": acks, **r})
                create_topic(c, f"lat-{name}", 1, rf, mis)
                lat = loadgen(lg, c.bootstrap, "latency", "--topic", f"lat-{name}", "--rate", str(a.rate),
                              "--duration-secs", str(a.latency_secs), "--size", "100", "--acks", acks)
                results["e2e_latency"].append({"rf": rf, **lat})
                create_topic(c, f"ack-{name}", 1, rf, mis)
                al = ack_latency(c.bootstrap, f"ack-{name}", "all" if acks == "-1" else "1", a.rate, a.latency_secs)
                results["ack_latency"].append({"rf": rf, "acks": acks, **al})
            except (RuntimeError, subprocess.TimeoutExpired, AssertionError, KeyError, ValueError) as e:
                failures.append(f"{name}: {e}")
        for rate in (int(r) for r in a.acks_all_rates.split(",") if r):
            try:
                create_topic(c, f"lat-all-{rate}", 1, 3, 2)
                lat = loadgen(lg, c.bootstrap, "latency", "--topic", f"lat-all-{rate}", "--rate", str(rate),
                              "--duration-secs", str(a.latency_secs), "--size", "100", "--acks", "-1")
                results["acks_all_latency"].append({"rate": rate, **lat})
            except (RuntimeError, subprocess.TimeoutExpired, AssertionError, KeyError, ValueError) as e:
                failures.append(f"acks=all latency at {rate}/s: {e}")
        try:
            create_topic(c, "commits", 1, 3, 2)
            results["sync_commit"] = sync_commit_latency(c.bootstrap, "commits", a.commits)
        except Exception as e:  # noqa: BLE001 (any client error is a failed figure, reported below)
            failures.append(f"sync commit: {e}")
        try:
            create_topic(c, "failover", 1, 3, 2)
            for _ in range(a.failovers):
                results["failover_ms"].append(failover_once(c, "failover") * 1000)
        except (RuntimeError, AssertionError) as e:
            failures.append(f"failover: {e}")
    finally:
        c.stop()

    print()
    print(f"Cluster benchmark: 3 brokers + coordinator on one machine ({os.cpu_count()} CPUs), "
          f"session timeout {SESSION_TIMEOUT_MS} ms")
    for r in results["throughput"]:
        print(f"  produce RF={r['rf']} acks={r['acks']:>2}: {r['mb_per_s']:.1f} MB/s, {r['msgs_per_s']:.0f} msgs/s "
              f"({r['messages']} x 1 KiB, 3 partitions)")
    for r in results["e2e_latency"]:
        print(f"  end-to-end RF={r['rf']} acks={r['acks']:>2} at {a.rate}/s: p50 {r['p50_us'] / 1000:.2f} ms, "
              f"p99 {r['p99_us'] / 1000:.2f} ms, max {r['max_us'] / 1000:.2f} ms ({r['samples']} samples)")
    for r in results["ack_latency"]:
        print(f"  produce ack RF={r['rf']} acks={r['acks']:>2} at {a.rate}/s: p50 {r['p50_ms']:.2f} ms, "
              f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms ({r['samples']} acks, {r['errors']} errors)")
    for r in results["acks_all_latency"]:
        print(f"  end-to-end RF=3 acks=-1 at {r['rate']}/s (1 partition, 100 B): p50 {r['p50_us'] / 1000:.2f} ms, "
              f"p99 {r['p99_us'] / 1000:.2f} ms, max {r['max_us'] / 1000:.2f} ms ({r['samples']} samples)")
    if results["sync_commit"]:
        r = results["sync_commit"]
        print(f"  synchronous offset commit (RF=3 __consumer_offsets): p50 {r['p50_ms']:.2f} ms, "
              f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms ({r['samples']} commits)")
    if results["failover_ms"]:
        f = results["failover_ms"]
        print(f"  failover (leader kill -9 -> first acked produce): median {statistics.median(f):.0f} ms "
              f"over {len(f)} runs (min {min(f):.0f}, max {max(f):.0f})")
    with open("/proc/loadavg") as fh:
        print(f"  load average now: {' '.join(fh.read().split()[:3])}")
    for f in failures:
        print(f"FAILED: {f}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(results, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
