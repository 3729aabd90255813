"""Consumer-group benchmark for rivulet-broker (`make bench-groups`). Prints figures, asserts nothing.

1. Rebalance time: 10 confluent-kafka consumers subscribe to a 10-partition topic at once; the
   time from the first subscribe until every member holds exactly one partition (median of --runs runs, default 5,
   a new group each run), with group.initial.rebalance.delay.ms 0 and the default 3000, and with
   librdkafka's default heartbeat interval (3 s) and a 100 ms one.
2. OffsetCommit cost: synchronous commits (confluent-kafka commit(asynchronous=False)) in a tight
   loop from one consumer and from several consumer processes: commits/s and p50/p99 latency;
   plus raw OffsetCommit v7 round trips on one connection (no client library overhead).
3. Broker RSS and CPU seconds, and the size of __consumer_offsets on disk afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "clients"))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402

import harness  # noqa: E402
import rawgroups as rg  # noqa: E402
from kafka_helpers import create_topic  # noqa: E402


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process, from /proc."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    return rss, cpu


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def rebalance_once(bootstrap: str, topic: str, members: int, partitions: int, heartbeat_ms: int | None) -> float:
    group = f"bench-rb-{uuid.uuid4().hex[:8]}"
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    if heartbeat_ms is not None:
        conf["heartbeat.interval.ms"] = heartbeat_ms
    t0 = time.monotonic()
    cs = [Consumer(conf) for _ in range(members)]
    try:
        for c in cs:
            c.subscribe([topic])
        deadline = t0 + 120
        while time.monotonic() < deadline:
            for c in cs:
                c.poll(0)
            parts = [len(c.assignment()) for c in cs]
            # Stable: every member holds a share and together they hold every partition.
            if all(parts) and sum(parts) == partitions:
                return time.monotonic() - t0
            time.sleep(0.005)
        raise RuntimeError(f"group of {members} not stable within 120 s")
    finally:
        for c in cs:
            c.close()


def bench_rebalance(runs: int, members: int, work: Path) -> None:
    print(f"\n## Rebalance: {members} confluent-kafka consumers joining a {members}-partition topic "
          f"(median of {runs} runs, new group each run)")
    print(f"{'initial delay':>14} {'heartbeat':>10} {'median s':>9} {'min s':>7} {'max s':>7}")
    for delay in (0, 3000):
        b = harness.Broker(work / f"rb-{delay}", work / f"rb-{delay}.log", group_initial_rebalance_delay_ms=delay)
        b.start()
        try:
            topic = f"bench-rb-{uuid.uuid4().hex[:6]}"
            create_topic(b.bootstrap, topic, members)
            rebalance_once(b.bootstrap, topic, 1, members, None)  # creates __consumer_offsets, warms up
            for hb in (None, 100):
                times = [rebalance_once(b.bootstrap, topic, members, members, hb) for _ in range(runs)]
                print(f"{delay:>12}ms {('3000' if hb is None else str(hb)) + 'ms':>10} "
                      f"{statistics.median(times):>9.2f} {min(times):>7.2f} {max(times):>7.2f}", flush=True)
        finally:
            b.stop()


def commit_loop(bootstrap: str, topic: str, partition: int, group: str, seconds: float, out) -> None:
    """One consumer, member of `group` owning `partition` (manual assign), committing synchronously."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    lat: list[float] = []
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        c.commit(offsets=[TopicPartition(topic, partition, 0)], asynchronous=False)  # warm-up
        off = 1
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            c.commit(offsets=[TopicPartition(topic, partition, off, metadata="bench")], asynchronous=False)
            lat.append(time.perf_counter() - t)
            off += 1
    finally:
        c.close()
    out.put(lat)


def run_committers(bootstrap: str, topic: str, n: int, seconds: float, one_group: bool = True) -> list[list[float]]:
    """n processes, each committing offsets of its own partition, in one group or a group each."""
    q: mp.Queue = mp.Queue()
    group = f"bench-commit-{uuid.uuid4().hex[:8]}"
    ps = [mp.Process(target=commit_loop, args=(bootstrap, topic, i, group if one_group else f"{group}-{i}", seconds, q))
          for i in range(n)]
    for p in ps:
        p.start()
    res = [q.get(timeout=seconds + 60) for _ in ps]
    for p in ps:
        p.join(30)
    return res


def raw_commits(bootstrap: str, topic: str, seconds: float) -> list[float]:
    lat = []
    with rg.Conn(bootstrap) as c:
        group = f"bench-raw-{uuid.uuid4().hex[:8]}"
        c.wait_coordinator(group)
        off = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            res = c.commit(group, {(topic, 0): (off, "bench")})
            lat.append(time.perf_counter() - t)
            if res != {(topic, 0): 0}:
                raise RuntimeError(f"commit failed: {res}")
            off += 1
    return lat


def bench_commits(seconds: float, work: Path, several: int) -> None:
    b = harness.Broker(work / "commit", work / "commit.log", group_initial_rebalance_delay_ms=0)
    b.start()
    try:
        topic = f"bench-commit-{uuid.uuid4().hex[:6]}"
        create_topic(b.bootstrap, topic, max(several, 1))
        raw_commits(b.bootstrap, topic, 0.5)  # creates __consumer_offsets
        rss0, cpu0 = proc_stats(b.pid())
        print(f"\n## OffsetCommit: synchronous commits in a loop, {seconds:.0f} s per row")
        print(f"broker RSS before: {rss0:.1f} MiB")
        print(f"{'committers':>36} {'commits/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'broker CPU ms/1k commits':>25}")
        rows = [("raw OffsetCommit v7, 1 conn", lambda: [raw_commits(b.bootstrap, topic, seconds)]),
                ("confluent-kafka, 1 consumer", lambda: run_committers(b.bootstrap, topic, 1, seconds)),
                (f"confluent-kafka, {several} procs, 1 group", lambda: run_committers(b.bootstrap, topic, several, seconds)),
                (f"confluent-kafka, {several} procs, {several} groups",
                 lambda: run_committers(b.bootstrap, topic, several, seconds, one_group=False))]
        for name, fn in rows:
            _, c0 = proc_stats(b.pid())
            lats = fn()
            _, c1 = proc_stats(b.pid())
            allv = [x for ls in lats for x in ls]
            rate = sum(len(ls) for ls in lats) / seconds
            print(f"{name:>36} {rate:>10.0f} {pct(allv, 0.5) * 1e3:>7.2f} {pct(allv, 0.99) * 1e3:>7.2f} "
                  f"{(c1 - c0) / len(allv) * 1e6:>25.1f}", flush=True)
        rss1, cpu1 = proc_stats(b.pid())
        size = sum(f.stat().st_size for f in (work / "commit").glob("__consumer_offsets-*/*.log"))
        print(f"broker RSS after: {rss1:.1f} MiB; broker CPU during the commit runs: {cpu1 - cpu0:.1f} s")
        print(f"__consumer_offsets on disk after the runs: {size / 1e6:.1f} MB (before any cleaning of the compacted topic)")
    finally:
        b.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", default=str(harness.BROKER_BIN), help="rivulet-broker binary")
    ap.add_argument("--runs", type=int, default=5, help="rebalance runs per setting (median reported)")
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--commit-seconds", type=float, default=5.0)
    ap.add_argument("--committers", type=int, default=4, help="processes in the 'several consumers' row")
    args = ap.parse_args()
    harness.BROKER_BIN = Path(args.broker)
    print(f"rivulet-broker groups benchmark: {args.broker}; {os.cpu_count()} CPUs; "
          f"client librdkafka {__import__('confluent_kafka').libversion()[0]}")
    with tempfile.TemporaryDirectory(prefix="groups-bench-") as d:
        work = Path(d)
        bench_rebalance(args.runs, args.members, work)
        bench_commits(args.commit_seconds, work, args.committers)


if __name__ == "__main__":
    main()
