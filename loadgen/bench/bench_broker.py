#!/usr/bin/env python3
"""Broker benchmark: runs rivulet-loadgen (librdkafka) against fresh rivulet-broker processes and
prints a table. Measures produce/consume throughput for 100 B and 1 KiB messages, 1 and 6
partitions, acks=1 and acks=-1; end-to-end latency at a fixed rate; the broker's idle and peak RSS
and its CPU-seconds per GB moved. It asserts nothing about speed: it prints figures.

Standard library only. Usage:
  bench_broker.py --broker target/release/rivulet-broker --loadgen target/release/rivulet-loadgen
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all probes bound at once, so none is handed out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of stat(5); after the comm they are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_ready(argv: list[str], log, admin_port: int, limit: float = 30.0) -> subprocess.Popen:
    """Starts a broker with `argv` (output to the open file `log`) and waits for its /readyz on
    127.0.0.1:`admin_port`; kills it and raises if it exits or is not ready within `limit`."""
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}; log in {log.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"broker not ready within {limit:.0f} s; log in {log.name}")


class Broker:
    def __init__(self, binary: str, workdir: Path, extra: tuple[str, ...] = ()):
        self.data = Path(tempfile.mkdtemp(prefix="bench-broker-", dir=workdir))
        self.port, self.admin = free_ports(2)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = open(self.data.with_suffix(".log"), "wb")
        self.proc = start_ready(
            [binary, "--listen-addr", self.bootstrap, "--advertised-addr", self.bootstrap,
             "--admin-addr", f"127.0.0.1:{self.admin}", "--data-dir", str(self.data / "data"),
             "--log-level", "warn", *extra],
            self.log, self.admin)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def loadgen(binary: str, bootstrap: str, *args: str, timeout: float = 600) -> dict:
    r = subprocess.run([binary, "-b", bootstrap, *args], capture_output=True, timeout=timeout)
    sys.stderr.write(r.stderr.decode(errors="replace"))
    if r.returncode != 0:
        raise RuntimeError(f"rivulet-loadgen {' '.join(args)} failed ({r.returncode})")
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({model}), {mem_gib:.0f} GiB RAM, Linux {platform.release()}"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--mib-per-run", type=int, default=int(os.environ.get("BENCH_MIB_PER_RUN", "400")),
                    help="payload MiB produced per throughput run (1 KiB messages; 100 B runs send half)")
    ap.add_argument("--latency-secs", type=int, default=10)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--json-out", help="also write all results here")
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    a = ap.parse_args()
    for b in (a.broker, a.loadgen):
        if not os.access(b, os.X_OK):
            print(f"{b} is not an executable; run `make build` first", file=sys.stderr)
            return 2

    results = {"machine": machine(), "throughput": [], "latency": [], "rss": {}, "loadavg_start": loadavg()}
    print(f"machine: {results['machine']}, load average {results['loadavg_start']}", file=sys.stderr)

    # Idle RSS of a fresh broker, before any client has connected.
    b = Broker(a.broker, Path(a.workdir))
    try:
        time.sleep(1.0)
        results["rss"]["idle_kib"] = proc_status_kib(b.pid, "VmRSS")
    finally:
        b.stop()

    peak = 0
    failures: list[str] = []
    for size in (100, 1024):
        count = a.mib_per_run * 2**20 // size // (2 if size == 100 else 1)
        for parts in (1, 6):
            for acks in ("1", "-1"):
                b = Broker(a.broker, Path(a.workdir))
                try:
                    topic = f"bench-{size}-{parts}-{acks.replace('-', 'm')}"
                    loadgen(a.loadgen, b.bootstrap, "create-topic", "--topic", topic, "--partitions", str(parts))
                    c0 = cpu_seconds(b.pid)
                    prod = loadgen(a.loadgen, b.bootstrap, "produce", "--topic", topic, "--messages", str(count),
                                   "--size", str(size), "--partitions", str(parts), "--acks", acks)
                    c1 = cpu_seconds(b.pid)
                    cons = loadgen(a.loadgen, b.bootstrap, "consume", "--topic", topic)
                    c2 = cpu_seconds(b.pid)
                    hwm = proc_status_kib(b.pid, "VmHWM")
                    peak = max(peak, hwm)
                    results["throughput"].append({
                        "size": size, "partitions": parts, "acks": acks, "messages": prod["messages"],
                        "produce_mb_s": prod["mb_per_s"], "produce_msgs_s": prod["msgs_per_s"],
                        "consume_mb_s": cons["mb_per_s"], "consume_msgs_s": cons["msgs_per_s"],
                        "produce_cpu_s_per_gb": (c1 - c0) / (prod["bytes"] / 1e9),
                        "consume_cpu_s_per_gb": (c2 - c1) / (cons["bytes"] / 1e9),
                        "peak_rss_kib": hwm,
                    })
                except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as e:
                    failures.append(f"{size} B, {parts} partition(s), acks={acks}: {e}")
                finally:
                    b.stop()

    for acks in ("1", "-1"):
        b = Broker(a.broker, Path(a.workdir))
        try:
            topic = f"latency-{acks.replace('-', 'm')}"
            loadgen(a.loadgen, b.bootstrap, "create-topic", "--topic", topic, "--partitions", "1")
            lat = loadgen(a.loadgen, b.bootstrap, "latency", "--topic", topic, "--rate", str(a.rate),
                          "--duration-secs", str(a.latency_secs), "--size", "100", "--acks", acks)
            lat["peak_rss_kib"] = proc_status_kib(b.pid, "VmHWM")
            peak = max(peak, lat["peak_rss_kib"])
            results["latency"].append(lat)
        except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as e:
            failures.append(f"latency, acks={acks}: {e}")
        finally:
            b.stop()
    results["rss"]["peak_kib"] = peak
    results["loadavg_end"] = loadavg()
    results["failures"] = failures

    print()
    print(f"Broker benchmark ({results['machine']})")
    print(f"{'size':>6} {'parts':>5} {'acks':>4} {'messages':>9} | {'produce MB/s':>12} {'msgs/s':>10} "
          f"{'cpu-s/GB':>8} | {'consume MB/s':>12} {'msgs/s':>10} {'cpu-s/GB':>8} | {'peak RSS':>9}")
    for r in results["throughput"]:
        print(f"{r['size']:>6} {r['partitions']:>5} {r['acks']:>4} {r['messages']:>9} | "
              f"{r['produce_mb_s']:>12.1f} {r['produce_msgs_s']:>10.0f} {r['produce_cpu_s_per_gb']:>8.2f} | "
              f"{r['consume_mb_s']:>12.1f} {r['consume_msgs_s']:>10.0f} {r['consume_cpu_s_per_gb']:>8.2f} | "
              f"{r['peak_rss_kib'] / 1024:>7.1f}Mi")
    print()
    print(f"end-to-end latency, 100 B messages at {a.rate} msg/s for {a.latency_secs} s (after 2 s warm-up), 1 partition:")
    for lat in results["latency"]:
        print(f"  acks={lat['acks']:>2}: p50 {lat['p50_us'] / 1000:.2f} ms, p99 {lat['p99_us'] / 1000:.2f} ms, "
              f"p99.9 {lat['p999_us'] / 1000:.2f} ms, max {lat['max_us'] / 1000:.2f} ms ({lat['samples']} samples)")
    print()
    print(f"broker RSS: idle {results['rss']['idle_kib'] / 1024:.1f} MiB, peak (VmHWM) {peak / 1024:.1f} MiB")
    # Other work on the machine skews every figure above: say how busy it was.
    print(f"load average (1/5/15 min): {results['loadavg_start']} before, {results['loadavg_end']} after")
    for f in failures:
        print(f"FAILED: {f}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(results, indent=2))
    # A run that could not measure something is an error; slow figures are not.
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
