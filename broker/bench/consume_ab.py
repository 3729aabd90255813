#!/usr/bin/env python3
"""Consume throughput, narrow and interleaved: the side-by-side bench's consume cell (rivulet-loadgen
consume, the same librdkafka settings) against two rivulet-broker binaries (A and B, e.g. before and
after a change) and optionally one Apache Kafka node, all up at once, each holding the same topic.
Round by round every system is read once (A, B, Kafka, A, B, Kafka, ...), so a shared machine's
load moves them alike; prints each run, then min / median / max MB/s and broker CPU-s/GB per system.
Asserts nothing about speed.

  .venv/bin/python broker/bench/consume_ab.py --a /tmp/before/rivulet-broker \\
      --b target/release/rivulet-broker --loadgen target/release/rivulet-loadgen [--kafka] \\
      [--size 1024] [--partitions 6] [--mib 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "loadgen" / "bench"))
sys.path.insert(0, str(REPO / "reference" / "kafka" / "bench"))

from bench_broker import Broker, cpu_seconds, loadavg, machine  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="rivulet-broker binary A")
    ap.add_argument("--b", help="rivulet-broker binary B")
    ap.add_argument("--loadgen", default=str(REPO / "target" / "release" / "rivulet-loadgen"))
    ap.add_argument("--kafka", action="store_true", help="also one Apache Kafka KRaft node (1 GiB heap)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()

    from side_by_side import KafkaSingle, create_topic, loadgen

    work = Path(tempfile.mkdtemp(prefix="consume-ab-"))
    systems: list[tuple[str, object]] = []
    try:
        systems.append(("A", Broker(a.a, work)))
        if a.b:
            systems.append(("B", Broker(a.b, work)))
        if a.kafka:
            systems.append(("kafka", KafkaSingle(work)))
        topic = f"ab-{a.size}-{a.partitions}"
        count = a.mib * 2**20 // a.size
        print(f"machine: {machine()}; load average {loadavg()}", flush=True)
        for name, s in systems:
            create_topic(s.bootstrap, topic, a.partitions, 1)
            p = loadgen(a.loadgen, s.bootstrap, "produce", "--topic", topic, "--messages", str(count), "--size",
                        str(a.size), "--partitions", str(a.partitions), "--acks", a.acks)
            print(f"{name:6} produced {p['messages']} x {a.size} B over {a.partitions} partition(s): "
                  f"{p['mb_per_s']:.1f} MB/s", flush=True)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in systems}
        for rnd in range(a.rounds):
            for name, s in systems:
                c0 = cpu_seconds(s.pid)
                r = loadgen(a.loadgen, s.bootstrap, "consume", "--topic", topic)
                cpu = (cpu_seconds(s.pid) - c0) / (r["bytes"] / 1e9)
                runs[name].append((r["mb_per_s"], cpu))
                print(f"round {rnd + 1} {name:6} consume {r['mb_per_s']:8.1f} MB/s  {cpu:5.2f} broker cpu-s/GB  "
                      f"(load {loadavg()})", flush=True)
        print(f"\nconsume, {a.size} B, {a.partitions} partition(s), {a.mib} MiB, {a.rounds} interleaved rounds "
              f"(load average at the end {loadavg()}):")
        print(f"{'system':8} {'MB/s min':>9} {'median':>9} {'max':>9} | {'cpu-s/GB min':>12} {'median':>7} {'max':>7}")
        for name, rs in runs.items():
            mb = [x for x, _ in rs]
            cpu = [y for _, y in rs]
            print(f"{name:8} {min(mb):9.1f} {statistics.median(mb):9.1f} {max(mb):9.1f} | {min(cpu):12.2f} "
                  f"{statistics.median(cpu):7.2f} {max(cpu):7.2f}")
    finally:
        for _, s in systems:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
