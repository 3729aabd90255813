#!/usr/bin/env python3
"""Rivulet and Apache Kafka side by side, in one run on one machine with the same clients: the
project's librdkafka load generator (rivulet-loadgen) and Kafka's own ProducerPerformance,
ConsumerPerformance and EndToEndLatency. Prints figures and writes PNG plots; asserts nothing
about speed.

Standalone: one rivulet-broker (no coordinator) and one Kafka KRaft node, both running for the
whole standalone part, runs interleaved case by case (Rivulet, then Kafka, then the next case).
Cluster: three rivulet-brokers + rivulet-coordinator, and three Kafka nodes, RF=3, acks=all,
min.insync.replicas=2, one system at a time (six JVMs and brokers do not fit two cores together).
Durability on both: no fsync by count or time (both defaults; docs/kafka-reference.md); the run
prints each side's flush settings as started. Before anything is measured each system gets a
warm-up that is discarded (a produce and consume of --warmup-mib, and a fixed-rate latency run of
--warmup-secs), so neither is measured cold (a fresh JVM runs interpreted and C1-compiled code for
its first seconds). On a loaded machine Kafka's fixed-rate latency can still come out in seconds
after it: a growing backlog, not a cold start (docs/benchmarks.md). Every latency cell
is also run twice on its own topic and only the second run counts (the first pays the new
topic's and the new client's start-up).
CPU-seconds are the broker processes' (utime+stime from /proc) over the bytes moved; RSS is VmHWM.

Usage (the venv of `make deps`, for confluent-kafka and matplotlib):
  .venv/bin/python reference/kafka/bench/side_by_side.py --bin-dir target/release [--quick]
      [--cells throughput,java,latency,e2e-tool,cluster]
Plots are written only from a run of every cell (or with --plots-anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(REPO / "broker" / "tests" / "cluster"))
sys.path.insert(0, str(REPO / "loadgen" / "bench"))

import kafka_ref  # noqa: E402
from bench_broker import Broker, cpu_seconds, loadavg, machine, proc_status_kib  # noqa: E402


class KafkaSingle:
    """One Kafka KRaft node with Kafka's default 1 GiB heap, on free ports."""

    def __init__(self, workdir: Path):
        from harness import free_port

        self.port, cport = free_port(), free_port()
        (spec, props), = kafka_ref.plan(workdir / "kafka-single", 1, ports=[self.port], controller_ports=[cport])
        self.log = workdir / "kafka-single.log"
        self.props = props
        spec.prepare(props, kafka_ref.new_cluster_id(), self.log)
        self.proc = subprocess.Popen(spec.argv(), stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.bootstrap = spec.bootstrap
        deadline = time.monotonic() + 120
        while not kafka_ref.port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Kafka did not start; log {self.log}")
            time.sleep(0.2)
        time.sleep(3)  # the broker unfences shortly after its listener opens

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def create_topic(bootstrap: str, topic: str, partitions: int, rf: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, partitions, rf, config={"min.insync.replicas": str(min(2, rf))})])[topic].result(60)
    deadline = time.monotonic() + 60
    while True:
        t = a.list_topics(topic, timeout=10).topics.get(topic)
        if t and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 and len(p.isrs) == rf for p in t.partitions.values()) and all_brokers_know(
                    bootstrap, topic, partitions):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topic} not ready")
        time.sleep(0.2)


def all_brokers_know(bootstrap: str, topic: str, partitions: int) -> bool:
    """Every broker's own Metadata lists the topic with leaders: Kafka's brokers learn a new topic
    from the controller one by one, and a client asking a broker that has not yet gets
    UNKNOWN_TOPIC_OR_PART."""
    from harness import raw_metadata

    try:
        return all(len(md := raw_metadata(b, topic)) == partitions and all(ld >= 0 for ld, _ in md.values())
                   for b in bootstrap.split(","))
    except (OSError, ValueError, IndexError):
        return False


def loadgen(binary: str, bootstrap: str, *args: str) -> dict:
    r = subprocess.run([binary, "-b", bootstrap, *args], capture_output=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"rivulet-loadgen {' '.join(args)} failed: {r.stderr.decode()[-1000:]}")
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def java_tool(main: str, args: list[str]) -> str:
    r = subprocess.run(kafka_ref.java_argv(main, args, heap=["-Xmx512m"]), capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"{main} failed: {r.stdout[-1000:]} {r.stderr[-1000:]}")
    return r.stdout


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def hwm_of(pids: list[int]) -> int:
    return sum(proc_status_kib(p, "VmHWM") for p in pids)


def throughput_case(system: str, bootstrap: str, pids: list[int], lg: str, size: int, parts: int, acks: str, rf: int,
                    mib: int, tag: str) -> dict:
    topic = f"bench-{tag}-{size}-{parts}-{acks.replace('-', 'm')}"
    create_topic(bootstrap, topic, parts, rf)
    count = mib * 2**20 // size // (2 if size == 100 else 1)
    c0 = cpu_of(pids)
    prod = loadgen(lg, bootstrap, "produce", "--topic", topic, "--messages", str(count), "--size", str(size),
                   "--partitions", str(parts), "--acks", acks)
    c1 = cpu_of(pids)
    cons = loadgen(lg, bootstrap, "consume", "--topic", topic)
    c2 = cpu_of(pids)
    row = {"system": system, "client": "loadgen", "rf": rf, "size": size, "partitions": parts, "acks": acks,
           "messages": prod["messages"], "produce_mb_s": prod["mb_per_s"], "produce_msgs_s": prod["msgs_per_s"],
           "consume_mb_s": cons["mb_per_s"], "produce_cpu_s_per_gb": (c1 - c0) / (prod["bytes"] / 1e9),
           "consume_cpu_s_per_gb": (c2 - c1) / (cons["bytes"] / 1e9), "rss_hwm_mib": hwm_of(pids) / 1024}
    print(f"  {system:8} loadgen RF{rf} {size:>5} B {parts} part acks={acks:>2}: produce {row['produce_mb_s']:8.1f} MB/s "
          f"{row['produce_msgs_s']:>10.0f} msg/s {row['produce_cpu_s_per_gb']:6.2f} cpu-s/GB | consume "
          f"{row['consume_mb_s']:8.1f} MB/s {row['consume_cpu_s_per_gb']:6.2f} cpu-s/GB | RSS {row['rss_hwm_mib']:.0f} MiB",
          flush=True)
    return row


def java_perf_case(system: str, bootstrap: str, pids: list[int], size: int, parts: int, acks: str, rf: int, count: int,
                   tag: str) -> dict:
    topic = f"jbench-{tag}-{size}-{parts}-{acks}"
    create_topic(bootstrap, topic, parts, rf)
    c0 = cpu_of(pids)
    out = java_tool("org.apache.kafka.tools.ProducerPerformance",
                    ["--topic", topic, "--num-records", str(count), "--record-size", str(size), "--throughput", "-1",
                     "--producer-props", f"bootstrap.servers={bootstrap}", f"acks={acks}", "linger.ms=5",
                     "batch.size=65536"])
    c1 = cpu_of(pids)
    last = [ln for ln in out.splitlines() if "records sent" in ln][-1]
    m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\)", last)
    cout = java_tool("org.apache.kafka.tools.ConsumerPerformance",
                     ["--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(count), "--timeout", "60000"])
    c2 = cpu_of(pids)
    data = [ln for ln in cout.splitlines() if ln and ln[0].isdigit()][-1].split(",")
    row = {"system": system, "client": "java-perf", "rf": rf, "size": size, "partitions": parts, "acks": acks,
           "messages": count, "produce_msgs_s": float(m.group(1)), "produce_mb_s": float(m.group(2)) * 1.048576,
           "consume_mb_s": float(data[3]) * 1.048576,
           # ConsumerPerformance's MB.sec includes joining the group; its fetch.MB.sec does not.
           "consume_rebalance_ms": float(data[6]) if len(data) > 8 else None,
           "consume_fetch_mb_s": float(data[8]) * 1.048576 if len(data) > 8 else None,
           "produce_cpu_s_per_gb": (c1 - c0) / (count * size / 1e9),
           "consume_cpu_s_per_gb": (c2 - c1) / (count * size / 1e9), "rss_hwm_mib": hwm_of(pids) / 1024}
    print(f"  {system:8} Java perf RF{rf} {size:>5} B {parts} part acks={acks:>3}: produce {row['produce_mb_s']:8.1f} MB/s "
          f"| consume {row['consume_mb_s']:8.1f} MB/s (group join {row['consume_rebalance_ms']} ms, "
          f"fetching {row['consume_fetch_mb_s'] or 0:.1f} MB/s)", flush=True)
    return row


def latency_case(system: str, bootstrap: str, lg: str, acks: str, rate: int, secs: int, rf: int, tag: str) -> dict:
    topic = f"lat-{tag}-{acks.replace('-', 'm')}-{rate}"
    create_topic(bootstrap, topic, 1, rf)
    args = ["latency", "--topic", topic, "--rate", str(rate), "--size", "100", "--acks", acks]
    # The first run on a new topic (new producer and consumer, first fetches of the partition) is
    # a warm-up and discarded; the second is the figure.
    first = loadgen(lg, bootstrap, *args, "--duration-secs", str(max(2, secs // 2)))
    print(f"  {system:8} e2e RF{rf} acks={acks:>2} at {rate} msg/s: warm-up run (discarded) p50 "
          f"{first['p50_us'] / 1000:.2f} p99 {first['p99_us'] / 1000:.2f} ms", flush=True)
    lat = loadgen(lg, bootstrap, *args, "--duration-secs", str(secs))
    row = {"system": system, "client": "loadgen", "rf": rf, "acks": acks, "rate": rate,
           "p50_ms": lat["p50_us"] / 1000, "p99_ms": lat["p99_us"] / 1000, "p999_ms": lat["p999_us"] / 1000,
           "max_ms": lat["max_us"] / 1000, "samples": lat["samples"]}
    print(f"  {system:8} e2e RF{rf} acks={acks:>2} at {rate} msg/s: p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} "
          f"p99.9 {row['p999_ms']:.2f} ms", flush=True)
    return row


def e2e_tool_case(system: str, bootstrap: str, acks: str, count: int, rf: int, tag: str) -> dict:
    topic = f"e2e-{tag}-{acks}"
    create_topic(bootstrap, topic, 1, rf)
    out = java_tool("org.apache.kafka.tools.EndToEndLatency",
                    ["--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(count),
                     "--producer-acks", acks, "--record-size", "100"])
    pct = re.search(r"Percentiles: 50th = ([\d.]+), 99th = ([\d.]+), 99.9th = ([\d.]+)", out)
    avg = re.search(r"Avg latency: ([\d.]+) ms", out)
    if not pct:
        raise RuntimeError(f"EndToEndLatency output not understood: {out[-500:]}")
    row = {"system": system, "client": "EndToEndLatency", "rf": rf, "acks": acks, "avg_ms": float(avg.group(1)) if avg else None,
           "p50_ms": float(pct.group(1)), "p99_ms": float(pct.group(2)), "p999_ms": float(pct.group(3))}
    print(f"  {system:8} EndToEndLatency RF{rf} acks={acks}: p50 {row['p50_ms']} p99 {row['p99_ms']} p99.9 {row['p999_ms']} ms "
          "(one message at a time)", flush=True)
    return row


def warm_up(system: str, bootstrap: str, lg: str, rf: int, mib: int, secs: int, tag: str) -> None:
    """Discarded traffic before the first measured case: a produce and consume of `mib` MiB of
    1 KiB messages over 6 partitions and a fixed-rate latency run of `secs` seconds, so neither
    side is measured cold (JIT compilation, first segment files, first connections)."""
    if mib <= 0 and secs <= 0:
        return
    t0 = time.monotonic()
    if mib > 0:
        topic = f"warmup-{tag}-thr"
        create_topic(bootstrap, topic, 6, rf)
        loadgen(lg, bootstrap, "produce", "--topic", topic, "--messages", str(mib * 1024), "--size", "1024",
                "--partitions", "6", "--acks", "-1")
        loadgen(lg, bootstrap, "consume", "--topic", topic)
    if secs > 0:
        topic = f"warmup-{tag}-lat"
        create_topic(bootstrap, topic, 1, rf)
        loadgen(lg, bootstrap, "latency", "--topic", topic, "--rate", "5000", "--duration-secs", str(secs),
                "--size", "100", "--acks", "-1")
    print(f"  {system:8} warm-up RF{rf}: {mib} MiB produced and consumed, {secs} s at 5000 msg/s "
          f"(discarded; {time.monotonic() - t0:.0f} s)", flush=True)


def durability(rivulet_argv: list[str], kafka_props: dict[str, str]) -> dict[str, str]:
    """Each side's flush (fsync) policy as it was started: Rivulet's flags (absent = the
    defaults, never by count or time) and Kafka's server.properties (absent = never)."""

    def flag(name: str) -> str:
        return rivulet_argv[rivulet_argv.index(name) + 1] if name in rivulet_argv else "default (i64::MAX: never)"

    return {
        "rivulet": f"--log-flush-interval-messages {flag('--log-flush-interval-messages')}, "
                   f"--log-flush-interval-ms {flag('--log-flush-interval-ms')}; sealed segments fsynced on roll",
        "kafka": f"log.flush.interval.messages={kafka_props.get('log.flush.interval.messages', 'unset (never)')}, "
                 f"log.flush.interval.ms={kafka_props.get('log.flush.interval.ms', 'unset (never)')}; "
                 "the old segment flushed on roll",
    }


def plots(res: dict, outdir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plots", file=sys.stderr)
        return []
    made = []
    rows = [r for r in res["throughput"] if r["client"] == "loadgen"]
    labels = sorted({(r["rf"], r["size"], r["partitions"], r["acks"]) for r in rows})
    fig, axes = plt.subplots(2, 1, figsize=(12, 8))
    for ax, key, title in ((axes[0], "produce_mb_s", "produce MB/s"), (axes[1], "consume_mb_s", "consume MB/s")):
        for i, system in enumerate(("rivulet", "kafka")):
            vals = [next((r[key] for r in rows if r["system"] == system and (r["rf"], r["size"], r["partitions"], r["acks"]) == lb), 0)
                    for lb in labels]
            ax.bar([x + i * 0.4 for x in range(len(labels))], vals, width=0.4, label=system)
        ax.set_xticks([x + 0.2 for x in range(len(labels))])
        ax.set_xticklabels([f"RF{rf} {s}B p{p} a{a}" for rf, s, p, a in labels], rotation=30, fontsize=7)
        ax.set_title(f"{title} (rivulet-loadgen, librdkafka)")
        ax.legend()
    fig.tight_layout()
    p = outdir / "bench-kafka-throughput.png"
    fig.savefig(p, dpi=90)
    made.append(p)
    lat = res["latency"]
    fig, ax = plt.subplots(figsize=(max(8, len(lat) * 0.9), 4))
    names = [f"{r['system']} RF{r['rf']} acks={r['acks']} {r.get('rate', '?')}/s" for r in lat]
    for j, (k, lbl) in enumerate((("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))):
        ax.bar([x + j * 0.27 for x in range(len(lat))], [r[k] for r in lat], width=0.27, label=lbl)
    ax.set_xticks([x + 0.27 for x in range(len(lat))])
    ax.set_xticklabels(names, rotation=20, fontsize=7)
    ax.set_ylabel("ms (log scale)")
    ax.set_yscale("log")
    ax.set_title("end-to-end latency percentiles at a fixed rate (rivulet-loadgen, 100 B)")
    ax.legend()
    fig.tight_layout()
    p = outdir / "bench-kafka-latency.png"
    fig.savefig(p, dpi=90)
    made.append(p)
    return made


CELLS = ("throughput", "java", "latency", "e2e-tool", "cluster")


def read_properties(path: Path) -> dict[str, str]:
    return dict(ln.split("=", 1) for ln in path.read_text().splitlines() if "=" in ln and not ln.startswith("#"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=str(REPO / "target" / "release"))
    ap.add_argument("--mib-per-run", type=int, default=int(os.environ.get("BENCH_MIB_PER_RUN", "200")))
    ap.add_argument("--rates", default="1000,5000",
                    help="fixed rates (msg/s) of the standalone latency cells, comma-separated: a rate both "
                         "systems keep up with, and one that loads them")
    ap.add_argument("--latency-secs", type=int, default=10)
    ap.add_argument("--warmup-mib", type=int, default=50, help="discarded produce+consume per system first")
    ap.add_argument("--warmup-secs", type=int, default=5, help="discarded fixed-rate latency run per system first")
    ap.add_argument("--quick", action="store_true", help="fewer cases (1 KiB only, no Java tools)")
    ap.add_argument("--cells", default=",".join(CELLS),
                    help=f"comma-separated subset of {','.join(CELLS)} (default: all; plots need all)")
    ap.add_argument("--plots-anyway", action="store_true", help="write plots from a partial run too")
    ap.add_argument("--json-out")
    ap.add_argument("--plots-dir", default=str(REPO / "docs"))
    ap.add_argument("--replot", help="only redraw the plots from a --json-out file")
    a = ap.parse_args()
    if a.replot:
        for p in plots(json.loads(Path(a.replot).read_text()), Path(a.plots_dir)):
            print(f"plot: {p}")
        return 0
    cells = {c.strip() for c in a.cells.split(",") if c.strip()}
    try:
        rates = [int(x) for x in a.rates.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--rates takes comma-separated integers, not {a.rates!r}")
    if not rates or min(rates) <= 0:
        ap.error("--rates needs at least one rate above 0")
    if unknown := cells - set(CELLS):
        ap.error(f"unknown cells {sorted(unknown)}; choose from {','.join(CELLS)}")
    if a.quick:
        cells -= {"java", "e2e-tool"}
    bindir = Path(a.bin_dir)
    lg = str(bindir / "rivulet-loadgen")
    work = Path(tempfile.mkdtemp(prefix="bench-side-"))
    res = {"machine": machine(), "loadavg_start": loadavg(), "throughput": [], "latency": [], "e2e_tool": [], "rss": {},
           "kafka_version": kafka_ref.version(), "cells": sorted(cells), "warmup": {"mib": a.warmup_mib,
                                                                                 "secs": a.warmup_secs}}
    print(f"machine: {res['machine']}, load average {res['loadavg_start']}; Apache Kafka {res['kafka_version']}; "
          f"cells: {','.join(sorted(cells))}", flush=True)
    sizes = (1024,) if a.quick else (100, 1024)

    print("standalone (RF=1): rivulet-broker vs one Kafka KRaft node (1 GiB heap), interleaved case by case "
          "(Rivulet then Kafka)", flush=True)
    # Both sides start a new group's first generation at once: the reference's Kafka runs with
    # group.initial.rebalance.delay.ms=0 (kafka_ref.py), Rivulet's default is Kafka's 3 000 ms.
    r = Broker(str(bindir / "rivulet-broker"), work, extra=("--group-initial-rebalance-delay-ms", "0"))
    k = KafkaSingle(work)
    try:
        res["durability"] = durability(list(map(str, r.proc.args)), k.props)
        for side, policy in res["durability"].items():
            print(f"  fsync policy {side:8}: {policy}", flush=True)
        time.sleep(2)
        res["rss"]["rivulet_idle_mib"] = proc_status_kib(r.pid, "VmRSS") / 1024
        res["rss"]["kafka_idle_mib"] = proc_status_kib(k.pid, "VmRSS") / 1024
        for system, srv in (("rivulet", r), ("kafka", k)):
            warm_up(system, srv.bootstrap, lg, 1, a.warmup_mib, a.warmup_secs, "s")
        if "throughput" in cells:
            for size in sizes:
                for parts in (1, 6):
                    for acks in ("1", "-1"):
                        for system, srv in (("rivulet", r), ("kafka", k)):
                            res["throughput"].append(throughput_case(system, srv.bootstrap, [srv.pid], lg, size, parts,
                                                                     acks, 1, a.mib_per_run, "s"))
        if "java" in cells:
            for system, srv in (("rivulet", r), ("kafka", k)):
                res["throughput"].append(java_perf_case(system, srv.bootstrap, [srv.pid], 1024, 6, "all", 1, 200_000, "s"))
        if "latency" in cells:
            for rate in rates:
                for acks in ("1", "-1"):
                    for system, srv in (("rivulet", r), ("kafka", k)):
                        res["latency"].append(latency_case(system, srv.bootstrap, lg, acks, rate, a.latency_secs, 1, "s"))
        if "e2e-tool" in cells:
            for system, srv in (("rivulet", r), ("kafka", k)):
                res["e2e_tool"].append(e2e_tool_case(system, srv.bootstrap, "all", 5000, 1, "s"))
        res["rss"]["rivulet_peak_mib"] = proc_status_kib(r.pid, "VmHWM") / 1024
        res["rss"]["kafka_peak_mib"] = proc_status_kib(k.pid, "VmHWM") / 1024
    finally:
        r.stop()
        k.stop()

    if "cluster" in cells:
        print("three brokers, RF=3, acks=all, min.insync.replicas=2: Rivulet (rivulet-coordinator) then Kafka (KRaft, "
              "512 MiB heaps); six JVMs and brokers do not fit two cores together, so one system at a time", flush=True)
        from cluster import Cluster
        from reference import KafkaCluster

        for system in ("rivulet", "kafka"):
            c = Cluster(work / "rc", coordinator="rivulet") if system == "rivulet" else KafkaCluster(work / "kc")
            try:
                c.start()
                pids = [b.pid for b in c.brokers]
                if system == "rivulet":
                    policy = durability(list(map(str, c.brokers[0].argv())), {})["rivulet"]
                else:
                    policy = durability([], read_properties(c.brokers[0].spec.config))["kafka"]
                res.setdefault("durability_cluster", {})[system] = policy
                print(f"  fsync policy {system:8}: {policy}", flush=True)
                warm_up(system, c.bootstrap, lg, 3, a.warmup_mib // 2, a.warmup_secs, "c")
                res["throughput"].append(throughput_case(system, c.bootstrap, pids, lg, 1024, 6, "-1", 3,
                                                         a.mib_per_run // 2, "c"))
                res["latency"].append(latency_case(system, c.bootstrap, lg, "-1", 2000, a.latency_secs, 3, "c"))
                res["rss"][f"{system}_cluster_peak_mib_3_brokers"] = hwm_of(pids) / 1024
            finally:
                c.stop()

    res["loadavg_end"] = loadavg()
    print(f"\nRSS: Rivulet idle {res['rss']['rivulet_idle_mib']:.1f} MiB peak {res['rss']['rivulet_peak_mib']:.1f} MiB; "
          f"Kafka idle {res['rss']['kafka_idle_mib']:.1f} MiB peak {res['rss']['kafka_peak_mib']:.1f} MiB (standalone)")
    print(f"load average (1/5/15 min): {res['loadavg_start']} before, {res['loadavg_end']} after")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(res, indent=2))
    if cells == set(CELLS) or a.plots_anyway:
        for p in plots(res, Path(a.plots_dir)):
            print(f"plot: {p}")
    else:
        print("plots not written: not every cell ran (--plots-anyway to force)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
