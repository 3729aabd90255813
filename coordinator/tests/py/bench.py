"""bench-coordinator: the same Rust load generator (zookeeper-client crate) against
Apache ZooKeeper 3.8 and rivulet-coordinator on this machine, both fsyncing their
transaction logs; prints throughput, latency percentiles and server RSS."""
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from servers import ApacheZK, Rivulet

CLIENTS = int(os.environ.get("COORD_BENCH_CLIENTS", "16"))
OPS = int(os.environ.get("COORD_BENCH_OPS", "500"))
SIZE = int(os.environ.get("COORD_BENCH_VALUE_BYTES", "128"))


def run(cls, tmp, bench_bin):
    srv = cls(Path(tmp) / cls.name, **({"tick_ms": 2000} if cls is ApacheZK else {})).start()
    try:
        out = subprocess.run([bench_bin, srv.hosts, str(CLIENTS), str(OPS), str(SIZE)],
                             capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            sys.exit(f"zkbench against {cls.name} failed: {out.stderr}")
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        return rows, srv.rss_kib()
    finally:
        srv.stop()


def main():
    bench_bin = os.environ["COORD_BENCH_BIN"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}")
    print(f"load: {CLIENTS} concurrent sessions x {OPS} ops per phase, {SIZE}-byte values, "
          "one request in flight per session; fsync on for both servers")
    results = {}
    with tempfile.TemporaryDirectory(prefix="coord-bench-") as tmp:
        for cls in (ApacheZK, Rivulet):
            results[cls.name] = run(cls, tmp, bench_bin)
    print(f"{'phase':<9} {'server':<10} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>6}")
    for i, phase in enumerate(["create", "getData", "setData", "exists"]):
        for name in ("zookeeper", "rivulet"):
            r = results[name][0][i]
            print(f"{phase:<9} {name:<10} {r['ops_per_sec']:>9.0f} {r['p50_ms']:>8.3f} "
                  f"{r['p99_ms']:>8.3f} {r['p999_ms']:>9.3f} {r['errors']:>6}")
    for name in ("zookeeper", "rivulet"):
        print(f"RSS after run: {name:<10} {results[name][1] / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
